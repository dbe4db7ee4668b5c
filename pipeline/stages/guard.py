"""The mass-delete guard: a mailbox whose side suddenly reports most of its linked items
deleted is paused (its changes parked, not applied) with an alert, until an operator resumes it.

Pure: the engine keeps one :class:`GuardState` per mailbox and asks :func:`check` per change.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, TypeAlias

from schemas.types import Side

Verdict: TypeAlias = Literal["apply", "pause", "parked"]


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    """Pause when more than ``ratio`` of the linked items (and at least ``min_count``) of one
    side are deleted within ``window_s`` seconds."""

    ratio: float = 0.5
    min_count: int = 10
    window_s: float = 300.0

    def __post_init__(self) -> None:
        if not 0 < self.ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {self.ratio}")
        if self.min_count < 1 or self.window_s <= 0:
            raise ValueError("min_count must be >= 1 and window_s > 0")


@dataclass(frozen=True, slots=True)
class GuardState:
    """Deletes counted per side in the current window, and whether the mailbox is paused."""

    paused: bool = False
    window_start: float = 0.0
    outlook_deletes: int = 0
    crm_deletes: int = 0


def check(
    policy: GuardPolicy, state: GuardState, side: Side, is_delete: bool, linked: int, now_s: float
) -> tuple[GuardState, Verdict]:
    """Count a change of ``side`` against a mailbox with ``linked`` live pairs."""
    if state.paused:
        return state, "parked"
    if not is_delete:
        return state, "apply"
    if now_s - state.window_start > policy.window_s:
        state = GuardState(window_start=now_s)
    if side == "outlook":
        state = replace(state, outlook_deletes=state.outlook_deletes + 1)
        count = state.outlook_deletes
    else:
        state = replace(state, crm_deletes=state.crm_deletes + 1)
        count = state.crm_deletes
    if count >= policy.min_count and count > policy.ratio * max(linked, 1):
        return replace(state, paused=True), "pause"
    return state, "apply"


def resume(state: GuardState) -> GuardState:
    """Lift a pause (the operator's decision); the window starts afresh."""
    return GuardState()
