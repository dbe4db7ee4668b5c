"""Shared vocabulary of the event contracts: the literal values every layer agrees on."""

from __future__ import annotations

from typing import Any, Final, Literal, TypeAlias

Side: TypeAlias = Literal["outlook", "crm"]
Kind: TypeAlias = Literal["email", "contact", "appointment", "task"]
Op: TypeAlias = Literal["upsert", "delete"]
Direction: TypeAlias = Literal["both", "to_outlook", "to_crm", "none"]
ConflictPolicy: TypeAlias = Literal["crm_wins", "outlook_wins", "newest", "manual"]
EditVsDelete: TypeAlias = Literal["edit_wins", "delete_wins"]
LeaveFilter: TypeAlias = Literal["unlink", "delete"]
AutoTrack: TypeAlias = Literal["all", "replies", "from_crm_records", "from_email_enabled", "none"]
CrmTable: TypeAlias = Literal[
    "contact",
    "appointment",
    "recurringappointmentmaster",
    "task",
    "phonecall",
    "letter",
    "fax",
    "email",
]

#: JSON value as it travels inside a projection (orjson-serialisable).
JsonValue: TypeAlias = Any
#: The synced field projection of one item: canonical field name -> normalised value.
Projection: TypeAlias = dict[str, JsonValue]

SIDES: Final[tuple[Side, ...]] = ("outlook", "crm")
KINDS: Final[tuple[Kind, ...]] = ("email", "contact", "appointment", "task")
OPS: Final[tuple[Op, ...]] = ("upsert", "delete")
DIRECTIONS: Final[tuple[Direction, ...]] = ("both", "to_outlook", "to_crm", "none")
CONFLICT_POLICIES: Final[tuple[ConflictPolicy, ...]] = (
    "crm_wins",
    "outlook_wins",
    "newest",
    "manual",
)
CRM_TABLES: Final[tuple[CrmTable, ...]] = (
    "contact",
    "appointment",
    "recurringappointmentmaster",
    "task",
    "phonecall",
    "letter",
    "fax",
    "email",
)
#: CRM tables whose rows become To Do tasks in Outlook.
TASK_TABLES: Final[frozenset[CrmTable]] = frozenset({"task", "phonecall", "letter", "fax"})


def other_side(side: Side) -> Side:
    """The opposite side of a sync pair."""
    return "crm" if side == "outlook" else "outlook"
