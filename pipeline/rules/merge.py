"""Field-level 3-way merge of the two sides' projections against the last synced one.

A side's change to a field counts only if the field's direction lets it flow from that side.
When both sides changed a field to different values it is a conflict, resolved by the policy
(``manual`` leaves it unresolved: nothing is written and the base value is kept). A side that
is absent (``None``: not created yet, or deleted and to be recreated) receives a full create
body: every field that flows to it. A field missing from a present projection was not reported
and counts as unchanged, except fields that are absent when empty (``trackingtoken``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias

from pipeline.rules.directions import FieldDirections
from schemas.fields import ABSENT_IF_NONE
from schemas.types import CONFLICT_POLICIES, ConflictPolicy, Side

FieldDecision: TypeAlias = Literal["unchanged", "take_outlook", "take_crm", "conflict"]
Moment: TypeAlias = datetime | str | None

_MIRROR_POLICY: Final[Mapping[ConflictPolicy, ConflictPolicy]] = {
    "crm_wins": "outlook_wins",
    "outlook_wins": "crm_wins",
    "newest": "newest",
    "manual": "manual",
}


def mirror_policy(policy: ConflictPolicy) -> ConflictPolicy:
    """The policy with the sides swapped (crm_wins <-> outlook_wins)."""
    return _MIRROR_POLICY[policy]


@dataclass(frozen=True, slots=True)
class ConflictRecord:
    """A field both sides changed to different values; ``winner`` None means unresolved."""

    field: str
    base: Any
    outlook: Any
    crm: Any
    policy: ConflictPolicy
    winner: Side | None


@dataclass(frozen=True, slots=True)
class MergeResult:
    """The merge outcome: the new synced projection and the patches to send to each side."""

    merged: Mapping[str, Any]
    to_outlook: Mapping[str, Any]
    to_crm: Mapping[str, Any]
    decisions: Mapping[str, FieldDecision]
    conflicts: tuple[ConflictRecord, ...] = ()

    @property
    def unresolved(self) -> tuple[str, ...]:
        """Fields left for an operator (``manual`` policy)."""
        return tuple(c.field for c in self.conflicts if c.winner is None)

    def patch_to(self, side: Side) -> Mapping[str, Any]:
        """The fields to write to ``side``."""
        return self.to_outlook if side == "outlook" else self.to_crm


def _moment(value: Moment) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _winner(policy: ConflictPolicy, outlook_modified: Moment, crm_modified: Moment) -> Side | None:
    if policy == "manual":
        return None
    if policy == "outlook_wins":
        return "outlook"
    if policy == "newest":
        o, c = _moment(outlook_modified), _moment(crm_modified)
        if o is not None and c is not None and o > c:
            return "outlook"
    return "crm"


def _check(name: str, projection: Any) -> Mapping[str, Any] | None:
    if projection is not None and not isinstance(projection, Mapping):
        raise TypeError(f"{name} must be a mapping or None, got {type(projection).__name__}")
    return projection


def merge(
    base: Mapping[str, Any] | None,
    outlook: Mapping[str, Any] | None,
    crm: Mapping[str, Any] | None,
    directions: FieldDirections,
    policy: ConflictPolicy = "crm_wins",
    *,
    outlook_modified: Moment = None,
    crm_modified: Moment = None,
) -> MergeResult:
    """Merge ``outlook`` and ``crm`` against ``base`` (None: first sync), field by field.

    ``outlook_modified``/``crm_modified`` are used by the ``newest`` policy only; when either is
    missing or they are equal, ``newest`` falls back to the CRM side.
    """
    if policy not in CONFLICT_POLICIES:
        raise ValueError(f"unknown conflict policy {policy!r}; one of {CONFLICT_POLICIES}")
    base = _check("base", base)
    sides: dict[Side, Mapping[str, Any] | None] = {
        "outlook": _check("outlook", outlook),
        "crm": _check("crm", crm),
    }
    absent_if_none = ABSENT_IF_NONE[directions.kind]
    merged: dict[str, Any] = {}
    patches: dict[Side, dict[str, Any]] = {"outlook": {}, "crm": {}}
    decisions: dict[str, FieldDecision] = {}
    conflicts: list[ConflictRecord] = []

    for name in sorted(directions.synced()):
        b = base.get(name) if base is not None else None
        values: dict[Side, Any] = {}
        changed: dict[Side, bool] = {}
        for side, projection in sides.items():
            if projection is None:
                value = b
            elif name in projection:
                value = projection[name]
            else:
                value = None if name in absent_if_none else b
            values[side] = value
            changed[side] = value != b and directions.flows(name, side)
        o, c = values["outlook"], values["crm"]
        if changed["outlook"] and changed["crm"] and o != c:
            winner = _winner(policy, outlook_modified, crm_modified)
            conflicts.append(ConflictRecord(name, b, o, c, policy, winner))
            decisions[name] = "conflict"
            if winner is None:
                merged[name] = b
            else:
                merged[name] = values[winner]
                patches["crm" if winner == "outlook" else "outlook"][name] = values[winner]
        elif changed["outlook"] and changed["crm"]:
            decisions[name] = "unchanged"
            merged[name] = o
        elif changed["outlook"]:
            decisions[name] = "take_outlook"
            merged[name] = o
            patches["crm"][name] = o
        elif changed["crm"]:
            decisions[name] = "take_crm"
            merged[name] = c
            patches["outlook"][name] = c
        else:
            decisions[name] = "unchanged"
            merged[name] = b

    present = [side for side, projection in sides.items() if projection is not None]
    if len(present) == 1:
        missing: Side = "crm" if present[0] == "outlook" else "outlook"
        patches[missing] = {
            n: merged[n] for n in sorted(directions.fields_to(missing)) if n in merged
        }
    return MergeResult(
        merged=MappingProxyType(merged),
        to_outlook=MappingProxyType(patches["outlook"]),
        to_crm=MappingProxyType(patches["crm"]),
        decisions=MappingProxyType(decisions),
        conflicts=tuple(conflicts),
    )
