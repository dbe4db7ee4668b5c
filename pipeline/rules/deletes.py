"""The delete table: what a delete (or a record leaving the filters) means for the other side.

==============================  ==========================================================
situation                       decision
==============================  ==========================================================
other side already gone         ignore
email, any side, any reason     unlink (deleting an email never deletes the other copy)
other side edited since sync    recreate with ``edit_wins`` (default): nothing is lost;
                                with ``delete_wins`` the rows below apply
CRM delete: contact, task       delete_other
CRM delete: appointment         delete_other if the mailbox user organises it and it is
                                still in the future, else unlink
Outlook delete (not email)      unlink (CRM stays the system of record)
CRM record leaves the filters   unlink (``leave_filter="unlink"``, default); with
                                ``"delete"`` as a CRM delete, but an edited Outlook copy
                                under ``edit_wins`` is only unlinked
==============================  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from schemas.types import KINDS, SIDES, EditVsDelete, Kind, LeaveFilter, Side

DeleteDecision: TypeAlias = Literal["delete_other", "unlink", "recreate", "ignore"]
DeleteReason: TypeAlias = Literal["deleted", "left_filter"]
DELETE_DECISIONS: Final[tuple[DeleteDecision, ...]] = (
    "delete_other",
    "unlink",
    "recreate",
    "ignore",
)


@dataclass(frozen=True, slots=True)
class DeleteFacts:
    """What happened: ``side`` deleted the item (or, on the CRM side, it left the filters).

    ``other_edited``: the other side changed synced fields since the last sync.
    ``organizer_is_user`` / ``in_future``: appointments only (the mailbox user organises it;
    it has not ended yet).
    """

    kind: Kind
    side: Side
    reason: DeleteReason = "deleted"
    other_edited: bool = False
    other_exists: bool = True
    organizer_is_user: bool = False
    in_future: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}")
        if self.side not in SIDES:
            raise ValueError(f"unknown side {self.side!r}")
        if self.reason not in ("deleted", "left_filter"):
            raise ValueError(f"unknown delete reason {self.reason!r}")
        if self.reason == "left_filter" and self.side != "crm":
            raise ValueError("only CRM records leave filters")


def _crm_delete(facts: DeleteFacts) -> DeleteDecision:
    if facts.kind == "appointment" and not (facts.organizer_is_user and facts.in_future):
        return "unlink"
    return "delete_other"


def decide_delete(
    facts: DeleteFacts,
    *,
    edit_vs_delete: EditVsDelete = "edit_wins",
    leave_filter: LeaveFilter = "unlink",
) -> DeleteDecision:
    """The decision for ``facts`` under the mailbox's edit-vs-delete and leave-filter settings."""
    if edit_vs_delete not in ("edit_wins", "delete_wins"):
        raise ValueError(f"unknown edit_vs_delete {edit_vs_delete!r}")
    if leave_filter not in ("unlink", "delete"):
        raise ValueError(f"unknown leave_filter {leave_filter!r}")
    if not facts.other_exists:
        return "ignore"
    if facts.kind == "email":
        return "unlink"
    edit_wins = facts.other_edited and edit_vs_delete == "edit_wins"
    if facts.reason == "left_filter":
        if leave_filter == "unlink" or edit_wins:
            return "unlink"
        return _crm_delete(facts)
    if edit_wins:
        return "recreate"
    if facts.side == "outlook":
        return "unlink"
    return _crm_delete(facts)
