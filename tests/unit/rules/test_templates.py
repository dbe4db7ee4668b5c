"""System filter templates, per user."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.rules.fetchxml import EvalContext, parse_fetchxml
from pipeline.rules.templates import (
    MY_ACTIVE_CONTACTS,
    SYSTEM_TEMPLATES,
    default_filters,
    instantiate,
)

ALICE = "aaaaaaaa-1111-1111-1111-111111111111"
BOB = "bbbbbbbb-2222-2222-2222-222222222222"
NOW = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
APPT = "cccccccc-3333-3333-3333-333333333333"


def as_user(user: str, **links: list[dict[str, Any]]) -> EvalContext:
    return EvalContext(user_id=user, now=NOW, links=links)


def test_every_template_parses_for_its_table() -> None:
    tables = [t.table for t in SYSTEM_TEMPLATES]
    assert set(tables) == {
        "contact",
        "appointment",
        "recurringappointmentmaster",
        "task",
        "phonecall",
        "letter",
        "fax",
    }
    for template in SYSTEM_TEMPLATES:
        assert parse_fetchxml(template.fetchxml, table=template.table).entity == template.table


@pytest.mark.parametrize(
    ("record", "user", "expected"),
    [
        ({"ownerid": ALICE, "statecode": 0}, ALICE, True),
        ({"ownerid": ALICE, "statecode": 0}, BOB, False),
        ({"ownerid": ALICE, "statecode": 1}, ALICE, False),
        ({"ownerid": None, "statecode": 0}, ALICE, False),
    ],
)
def test_my_active_contacts(record: dict[str, Any], user: str, expected: bool) -> None:
    assert default_filters().matches("contact", record, as_user(user)) is expected
    assert default_filters(user).matches("contact", record, as_user(BOB)) is expected


@pytest.mark.parametrize("table", ["task", "phonecall", "letter", "fax"])
def test_my_open_tasks_per_activity_table(table: str) -> None:
    filters = default_filters()
    assert filters.matches(table, {"ownerid": BOB, "statecode": 0}, as_user(BOB))
    assert not filters.matches(table, {"ownerid": BOB, "statecode": 1}, as_user(BOB))
    assert not filters.matches(table, {"ownerid": ALICE, "statecode": 0}, as_user(BOB))


def parties(*rows: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"activityid": APPT, "partyid": who, "participationtypemask": m} for who, m in rows]


@pytest.mark.parametrize("table", ["appointment", "recurringappointmentmaster"])
@pytest.mark.parametrize(
    ("rows", "alice", "bob"),
    [
        (parties((ALICE, 7), (BOB, 5)), True, True),
        (parties((ALICE, 7), (BOB, 6)), True, False),
        (parties((ALICE, 6), (BOB, 9)), False, False),
        (parties(), False, False),
    ],
)
def test_my_appointments_organizer_or_required(
    table: str, rows: list[dict[str, Any]], alice: bool, bob: bool
) -> None:
    record = {"activityid": APPT}
    filters = default_filters()
    assert filters.matches(table, record, as_user(ALICE, activityparty=rows)) is alice
    assert filters.matches(table, record, as_user(BOB, activityparty=rows)) is bob
    bound = default_filters(BOB)
    assert bound.matches(table, record, as_user(ALICE, activityparty=rows)) is bob


def test_instantiate_writes_the_user_id() -> None:
    text = instantiate(MY_ACTIVE_CONTACTS, "{" + ALICE.upper() + "}")
    query = parse_fetchxml(text, table="contact")
    assert "eq-userid" not in text
    assert ALICE in text
    assert query.matches({"ownerid": ALICE, "statecode": 0}, as_user(BOB))


@pytest.mark.parametrize("bad", ["", "alice", "1234", ALICE + "0"])
def test_instantiate_refuses_a_non_guid_user(bad: str) -> None:
    with pytest.raises(ValueError, match="not a GUID"):
        instantiate(MY_ACTIVE_CONTACTS, bad)
