"""The delete table, kind by kind."""

from __future__ import annotations

from typing import Any, cast

import pytest

from pipeline.rules.deletes import DeleteDecision, DeleteFacts, decide_delete
from schemas.types import KINDS, SIDES, EditVsDelete, Kind, LeaveFilter, Side


@pytest.mark.parametrize(
    ("kind", "side", "expected"),
    [
        ("contact", "crm", "delete_other"),
        ("task", "crm", "delete_other"),
        ("contact", "outlook", "unlink"),
        ("task", "outlook", "unlink"),
        ("appointment", "outlook", "unlink"),
        ("email", "crm", "unlink"),
        ("email", "outlook", "unlink"),
    ],
)
def test_plain_delete_per_kind(kind: Kind, side: Side, expected: DeleteDecision) -> None:
    assert decide_delete(DeleteFacts(kind, side)) == expected


@pytest.mark.parametrize(
    ("organizer", "future", "expected"),
    [
        (True, True, "delete_other"),
        (True, False, "unlink"),
        (False, True, "unlink"),
        (False, False, "unlink"),
    ],
)
def test_crm_appointment_delete_only_if_organizer_and_future(
    organizer: bool, future: bool, expected: DeleteDecision
) -> None:
    facts = DeleteFacts("appointment", "crm", organizer_is_user=organizer, in_future=future)
    assert decide_delete(facts) == expected


@pytest.mark.parametrize("kind", ["contact", "task", "appointment"])
@pytest.mark.parametrize("side", SIDES)
def test_edit_vs_delete(kind: Kind, side: Side) -> None:
    facts = DeleteFacts(kind, side, other_edited=True, organizer_is_user=True, in_future=True)
    assert decide_delete(facts) == "recreate"
    assert decide_delete(facts, edit_vs_delete="delete_wins") == decide_delete(
        DeleteFacts(kind, side, organizer_is_user=True, in_future=True)
    )


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("edited", [False, True])
@pytest.mark.parametrize("policy", ["edit_wins", "delete_wins"])
def test_email_never_deletes_across(side: Side, edited: bool, policy: EditVsDelete) -> None:
    facts = DeleteFacts("email", side, other_edited=edited)
    assert decide_delete(facts, edit_vs_delete=policy, leave_filter="delete") == "unlink"


@pytest.mark.parametrize(
    ("kind", "leave", "edited", "organizer", "expected"),
    [
        ("contact", "unlink", False, False, "unlink"),
        ("contact", "delete", False, False, "delete_other"),
        ("contact", "delete", True, False, "unlink"),
        ("task", "delete", False, False, "delete_other"),
        ("appointment", "unlink", False, True, "unlink"),
        ("appointment", "delete", False, True, "delete_other"),
        ("appointment", "delete", False, False, "unlink"),
        ("email", "delete", False, False, "unlink"),
    ],
)
def test_leaving_a_filter(
    kind: Kind, leave: LeaveFilter, edited: bool, organizer: bool, expected: DeleteDecision
) -> None:
    facts = DeleteFacts(
        kind,
        "crm",
        reason="left_filter",
        other_edited=edited,
        organizer_is_user=organizer,
        in_future=True,
    )
    assert decide_delete(facts, leave_filter=leave) == expected


@pytest.mark.parametrize("kind", KINDS)
def test_other_side_already_gone_is_ignored(kind: Kind) -> None:
    facts = DeleteFacts(kind, "crm", other_exists=False, other_edited=True)
    assert decide_delete(facts) == "ignore"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "memo", "side": "crm"}, "unknown kind 'memo'"),
        ({"kind": "task", "side": "fax"}, "unknown side 'fax'"),
        ({"kind": "task", "side": "crm", "reason": "vanished"}, "unknown delete reason"),
        ({"kind": "task", "side": "outlook", "reason": "left_filter"}, "only CRM records"),
    ],
)
def test_garbage_facts(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DeleteFacts(**kwargs)


def test_garbage_settings() -> None:
    facts = DeleteFacts("task", "crm")
    with pytest.raises(ValueError, match="unknown edit_vs_delete"):
        decide_delete(facts, edit_vs_delete=cast(EditVsDelete, "coin_flip"))
    with pytest.raises(ValueError, match="unknown leave_filter"):
        decide_delete(facts, leave_filter=cast(LeaveFilter, "shred"))
