"""The mass-delete guard."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.stages.guard import GuardPolicy, GuardState, check, resume


def test_pauses_when_most_linked_items_deleted_in_window() -> None:
    policy = GuardPolicy(ratio=0.5, min_count=3, window_s=60)
    state = GuardState()
    verdicts = []
    for i in range(6):
        state, v = check(policy, state, "outlook", True, linked=10, now_s=100 + i)
        verdicts.append(v)
    assert verdicts == ["apply"] * 5 + ["pause"]
    state, v = check(policy, state, "crm", False, linked=10, now_s=107)
    assert v == "parked" and state.paused
    assert check(policy, resume(state), "crm", False, 10, 108)[1] == "apply"


def test_small_mailbox_needs_min_count_and_window_resets() -> None:
    policy = GuardPolicy(ratio=0.5, min_count=5, window_s=10)
    state = GuardState()
    for i in range(4):  # 4 of 4 deleted but below min_count
        state, v = check(policy, state, "crm", True, linked=4, now_s=float(i))
        assert v == "apply"
    state, v = check(policy, state, "crm", True, linked=100, now_s=100.0)
    assert v == "apply" and state.crm_deletes == 1  # new window


def test_sides_counted_separately() -> None:
    policy = GuardPolicy(ratio=0.5, min_count=2, window_s=60)
    state, _ = check(policy, GuardState(), "crm", True, linked=3, now_s=1)
    state, v = check(policy, state, "outlook", True, linked=3, now_s=2)
    assert v == "apply" and state.crm_deletes == 1 and state.outlook_deletes == 1


@pytest.mark.parametrize(
    "kwargs", [{"ratio": 0.0}, {"ratio": 1.5}, {"min_count": 0}, {"window_s": 0}]
)
def test_policy_rejects_garbage(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        GuardPolicy(**kwargs)


def test_state_codec_round_trip_and_resume_keeps_link_counts() -> None:
    state = GuardState(paused=True, crm_deletes=4, pause_id="p").count_links(3, -1)
    assert state.linked("outlook") == 3 and state.linked("crm") == 0
    assert GuardState.decode(state.encode()) == state
    lifted = resume(state)
    assert not lifted.paused and lifted.deletes("crm") == 0 and lifted.linked_outlook == 3
    assert GuardState.decode(None) == GuardState()


@pytest.mark.parametrize("raw", [b"{not json", b'{"bogus": 1}', b"[1, 2]"])
def test_state_codec_rejects_garbage(raw: bytes) -> None:
    with pytest.raises(ValueError, match="not a guard state"):
        GuardState.decode(raw)
