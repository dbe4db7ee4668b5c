"""StampInventory: listings per (mailbox, collection), kept current, aged out, forgotten."""

from __future__ import annotations

import pytest

from connectors.graph.inventory import StampInventory


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_listing_is_kept_current_with_creates_and_deletes() -> None:
    inv = StampInventory(clock=Clock())
    listing = inv.put("Ann@X.test", "/contacts", {"c1": ("id1", "v1")})
    assert inv.get("ann@x.test", "/contacts") is listing  # mailbox names ignore case
    inv.created("ann@x.test", "/contacts", "c2", ("id2", None))
    assert listing.holds("c1") and listing.holds("c2")
    inv.deleted("ANN@x.test", "/contacts", "id1")
    assert not listing.holds("c1") and listing.holds("c2")
    inv.created("ann@x.test", "/events", "e1", ("id3", None))  # no listing: nothing to keep
    assert inv.get("ann@x.test", "/events") is None


def test_a_listing_ages_out_and_the_least_recently_used_goes_first() -> None:
    clock = Clock()
    inv = StampInventory(max_age_s=60, max_listings=2, clock=clock)
    inv.put("a", "/contacts", {})
    inv.put("b", "/contacts", {})
    assert inv.get("a", "/contacts") is not None  # a used: b is now the oldest
    inv.put("c", "/contacts", {})
    assert inv.get("b", "/contacts") is None
    assert inv.get("a", "/contacts") is not None and len(inv) == 2
    clock.now += 61
    assert inv.get("a", "/contacts") is None and inv.get("c", "/contacts") is None


def test_forget_drops_every_listing_of_the_mailbox_only() -> None:
    inv = StampInventory(clock=Clock())
    inv.put("a", "/contacts", {})
    inv.put("a", "/events", {})
    inv.put("b", "/contacts", {})
    inv.forget("A")
    assert inv.get("a", "/contacts") is None and inv.get("a", "/events") is None
    assert inv.get("b", "/contacts") is not None


@pytest.mark.parametrize(("age", "size"), [(0.0, 5), (-1.0, 5), (60.0, 0)])
def test_bad_limits_are_refused(age: float, size: int) -> None:
    with pytest.raises(ValueError):
        StampInventory(max_age_s=age, max_listings=size)
