"""Per-field sync directions of one kind, built from plain config and validated.

Every catalogue field of the kind (with its enabled optional groups) syncs ``both`` ways unless
configured otherwise. Fixed fields always sync both ways. For a recurring series only subject,
description and location may change direction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from schemas.fields import FIELDS, GROUPS, fields_for
from schemas.models import FieldDirections as DirectionsRecord
from schemas.types import DIRECTIONS, KINDS, Direction, Kind, Side

#: Fields of a recurring series whose direction the admin may change.
RECURRING_ADJUSTABLE: Final = frozenset({"subject", "description", "location"})


class DirectionsError(ValueError):
    """Invalid field-direction configuration; the message names the field and the problem."""


def _flows(direction: Direction, from_side: Side) -> bool:
    return direction == "both" or direction == (
        "to_crm" if from_side == "outlook" else "to_outlook"
    )


@dataclass(frozen=True, slots=True)
class FieldDirections:
    """The direction of every synced field of one kind (build with :meth:`build`)."""

    kind: Kind
    groups: frozenset[str] = frozenset()
    recurring: bool = False
    directions: Mapping[str, Direction] = field(default_factory=lambda: MappingProxyType({}))
    #: worked out once: the planner asks for them with every change
    _synced: frozenset[str] = field(init=False, repr=False, compare=False)
    _to: Mapping[Side, frozenset[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        items = self.directions.items()
        object.__setattr__(self, "_synced", frozenset(n for n, d in items if d != "none"))
        to = {
            side: frozenset(
                n for n, d in items if _flows(d, "crm" if side == "outlook" else "outlook")
            )
            for side in ("outlook", "crm")
        }
        object.__setattr__(self, "_to", MappingProxyType(to))

    @classmethod
    def build(
        cls,
        kind: Kind,
        config: Mapping[str, Any] | None = None,
        *,
        groups: Iterable[str] = (),
        recurring: bool = False,
    ) -> FieldDirections:
        """Directions of ``kind``: ``config`` (field -> direction) over the ``both`` default.

        Raises :class:`DirectionsError` for an unknown kind, group, field or direction, a field
        of a group that is not enabled, a fixed field set to anything but ``both``, and, for a
        recurring series, a change to a field other than subject/description/location.
        """
        if kind not in KINDS:
            raise DirectionsError(f"unknown kind {kind!r}")
        enabled = frozenset(groups)
        unknown_groups = sorted(enabled - GROUPS)
        if unknown_groups:
            raise DirectionsError(f"unknown group(s) {unknown_groups}; known: {sorted(GROUPS)}")
        if recurring and kind != "appointment":
            raise DirectionsError(f"only appointments can be recurring, not {kind}")
        if config is not None and not isinstance(config, Mapping):
            raise DirectionsError(f"directions must be an object, got {type(config).__name__}")
        specs = {s.name: s for s in fields_for(kind, enabled)}
        every = {s.name: s for s in FIELDS[kind]}
        result: dict[str, Direction] = dict.fromkeys(specs, "both")
        for name, raw in (config or {}).items():
            if not isinstance(name, str) or name not in every:
                raise DirectionsError(f"{kind}.{name}: not a synced {kind} field")
            direction = next((d for d in DIRECTIONS if d == raw), None)
            if direction is None:
                raise DirectionsError(
                    f"{kind}.{name}: unknown direction {raw!r}; one of {', '.join(DIRECTIONS)}"
                )
            spec = specs.get(name)
            if spec is None:
                raise DirectionsError(
                    f"{kind}.{name}: belongs to group {every[name].group!r}, which is not enabled"
                )
            if direction != "both" and recurring and name not in RECURRING_ADJUSTABLE:
                raise DirectionsError(
                    f"{kind}.{name}: in a recurring series only "
                    f"{', '.join(sorted(RECURRING_ADJUSTABLE))} may change direction"
                )
            if direction != "both" and spec.fixed:
                raise DirectionsError(
                    f"{kind}.{name}: fixed field, always synced both ways; cannot set {direction!r}"
                )
            result[name] = direction
        return cls(kind, enabled, recurring, MappingProxyType(result))

    @classmethod
    def from_record(
        cls, record: DirectionsRecord, *, groups: Iterable[str] = (), recurring: bool = False
    ) -> FieldDirections:
        """Directions from an organisation's ``field_directions`` config record."""
        return cls.build(record.kind, record.directions, groups=groups, recurring=recurring)

    def direction(self, name: str) -> Direction:
        """The direction of ``name``; :class:`DirectionsError` if it is not a synced field."""
        try:
            return self.directions[name]
        except KeyError:
            raise DirectionsError(f"{self.kind}.{name}: not a synced field") from None

    def set(self, name: str, direction: Direction) -> FieldDirections:
        """A copy with ``name`` set to ``direction`` (validated like :meth:`build`)."""
        changed: dict[str, Direction] = {n: d for n, d in self.directions.items() if d != "both"}
        changed[name] = direction
        return FieldDirections.build(
            self.kind, changed, groups=self.groups, recurring=self.recurring
        )

    def flows(self, name: str, from_side: Side) -> bool:
        """Whether a change of ``name`` on ``from_side`` is copied to the other side.

        Fields outside the catalogue never flow.
        """
        direction = self.directions.get(name)
        return direction is not None and _flows(direction, from_side)

    def fields_to(self, side: Side) -> frozenset[str]:
        """The fields written to ``side``."""
        return self._to[side]

    def synced(self) -> frozenset[str]:
        """The fields that sync at all (direction other than ``none``)."""
        return self._synced

    def mirrored(self) -> FieldDirections:
        """The same directions with the sides swapped (to_crm <-> to_outlook)."""
        swap: dict[Direction, Direction] = {"to_crm": "to_outlook", "to_outlook": "to_crm"}
        flipped = {n: swap.get(d, d) for n, d in self.directions.items()}
        return FieldDirections(self.kind, self.groups, self.recurring, MappingProxyType(flipped))
