"""Property: random edits on both sides, any interleaving of feeds, writes and outcomes,
converge through the planner: both sides agree on every synced field, no duplicates, and the
number of writes is bounded (no echo loop)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.plan import MailboxRules
from schemas.models import FieldDirections
from schemas.types import ConflictPolicy, Side
from tests.unit.plan.sim import World

USER = "11111111-2222-3333-4444-555555555555"
DIRECTIONS: dict[str, Any] = {"jobtitle": "to_outlook", "description": "to_crm", "nickname": "none"}
FIELDS = ("firstname", "lastname", "telephone1", "jobtitle", "description")
EDITABLE: dict[Side, tuple[str, ...]] = {
    "outlook": ("firstname", "lastname", "telephone1", "description"),
    "crm": ("firstname", "lastname", "telephone1", "jobtitle"),
}

values = st.sampled_from(["a", "b", "c", None])
user_op = st.tuples(
    st.sampled_from(["create", "edit", "edit", "edit", "serve"]),
    st.sampled_from(["outlook", "crm"]),
    st.integers(0, 5),
    st.dictionaries(st.sampled_from(FIELDS), values, min_size=1, max_size=3),
    st.sampled_from(["feed_outlook", "feed_crm", "command", "outcome"]),
)


def make_rules(policy: ConflictPolicy) -> MailboxRules:
    fd = FieldDirections(
        org_id="org", kind="contact", directions=DIRECTIONS, conflict_policy=policy
    )
    return MailboxRules("mbx", "org", USER, {"contact": fd})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(user_op, min_size=1, max_size=40),
    policy=st.sampled_from(["crm_wins", "outlook_wins", "newest"]),
)
def test_random_edits_converge(ops: list[Any], policy: ConflictPolicy) -> None:
    world = World(make_rules(policy))
    user_ops = 0
    for action, side, pick, fields, serve in ops:
        if action == "serve":
            if serve == "feed_outlook":
                world.serve_feed("outlook")
            elif serve == "feed_crm":
                world.serve_feed("crm")
            elif serve == "command":
                world.serve_command()
            else:
                world.serve_outcome()
            continue
        allowed = {k: v for k, v in fields.items() if k in EDITABLE[side]}
        if not allowed:
            continue
        store = world.store(side)
        ids = list(store.items)
        if action == "create" or not ids:
            world.user_put(side, allowed)
        else:
            world.user_put(side, allowed, item_id=ids[pick % len(ids)])
        user_ops += 1
    world.drain()

    # no duplicates: every item on each side is linked, one pair per correlation id
    assert len(world.outlook.items) == len(world.crm.items) == len(world.links)
    for link in world.links.values():
        assert not link.pending and not link.unlinked
        o = world.outlook.items[link.outlook_id or ""]
        c = world.crm.items[link.crm_id or ""]
        for name in FIELDS:
            if DIRECTIONS.get(name) == "none":
                continue
            assert o.projection.get(name) == c.projection.get(name), (name, o, c)
    # bounded writes: each user operation causes at most a few writes (no echo loop)
    assert world.writes <= 3 * user_ops + len(world.links)


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["outlook", "crm"]), values), max_size=12))
def test_quiet_world_makes_no_writes_after_sync(ops: list[tuple[Side, str | None]]) -> None:
    world = World(make_rules("crm_wins"))
    oid = world.user_put("outlook", {"firstname": "x"})
    world.drain()
    writes = world.writes
    for side, value in ops:
        store = world.store(side)
        (item_id,) = [i for i in store.items] if side == "crm" else [oid]
        world.user_put(side, {"telephone1": value}, item_id=item_id)
        world.drain()
        # re-delivery of everything already seen changes nothing
    link = next(iter(world.links.values()))
    before = world.writes
    for side in ("outlook", "crm"):
        item = world.store(side).items[link.side(side).item_id or ""]
        world.store(side).log.append((10_000 + item.version, item.item_id, False))
        world.observe(side)
    world.drain()
    assert world.writes == before
    assert world.writes - writes <= len(ops)
