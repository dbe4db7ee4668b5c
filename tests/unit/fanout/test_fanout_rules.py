"""The pure fan-out core: who holds a CRM record, and which copies go where."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.fanout_rules import (
    FanOut,
    MailboxFilters,
    Routing,
    fan_out,
    parse_for_table,
    parties_as_links,
)
from pipeline.stages.fanout import (
    Membership,
    StaticDirectory,
    decode_members,
    encode_members,
    route,
)
from schemas.models import FilterRecord, ItemChange, Mailbox, MailboxStatus
from schemas.types import CrmTable, Op

NOW = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
ALICE = "aaaaaaaa-1111-1111-1111-111111111111"
BOB = "bbbbbbbb-2222-2222-2222-222222222222"
CAROL = "cccccccc-3333-3333-3333-333333333333"
REC = "dddddddd-4444-4444-4444-444444444444"


def mailbox(mid: str, user: str, status: MailboxStatus = "enabled") -> Mailbox:
    return Mailbox(mid, f"{mid}@example.com", "org", user, status=status)


A, B, C = mailbox("mbx-a", ALICE), mailbox("mbx-b", BOB), mailbox("mbx-c", CAROL)


def change(table: CrmTable = "contact", op: Op = "upsert", **attributes: Any) -> ItemChange:
    return ItemChange(
        change_id=f"crm:{table}:{REC}:7",
        side="crm",
        org_id="org",
        kind="appointment" if table == "appointment" else "contact",
        op=op,
        item_id=REC,
        version="7" if op == "upsert" else "",
        observed_at="2026-05-01T09:00:00Z",
        table=table,
        projection={"lastname": "Lee"},
        attributes=attributes,
    )


def flt(
    fid: str, table: CrmTable, body: str, mailbox_id: str | None, enabled: bool = True
) -> FilterRecord:
    text = f'<fetch><entity name="{table}">{body}</entity></fetch>'
    return FilterRecord(fid, "org", table, fid, text, mailbox_id=mailbox_id, enabled=enabled)


def targets(*mailboxes: Mailbox, filters: tuple[FilterRecord, ...] = ()) -> list[MailboxFilters]:
    return [
        MailboxFilters(m, tuple(f for f in filters if f.mailbox_id == m.mailbox_id))
        for m in mailboxes
    ]


def sent(result: FanOut) -> dict[str, bool]:
    return {d.mailbox_id: d.left_filter for d in result.deliveries}


def test_owner_filter_sends_only_to_the_owner() -> None:
    result = fan_out(change(ownerid=ALICE, statecode=0), targets(A, B), frozenset(), NOW)
    assert result.members == {"mbx-a"}
    assert sent(result) == {"mbx-a": False}
    (copy,) = result.deliveries
    assert copy.change.mailbox_id == "mbx-a"
    assert "left_filter" not in copy.change.attributes
    assert copy.change.projection == {"lastname": "Lee"} and copy.change.item_id == REC


def test_inactive_record_is_held_by_nobody() -> None:
    result = fan_out(change(ownerid=ALICE, statecode=1), targets(A, B), frozenset(), NOW)
    assert result == FanOut(frozenset())


def test_deactivation_emits_left_filter_copy() -> None:
    result = fan_out(change(ownerid=ALICE, statecode=1), targets(A, B), frozenset({"mbx-a"}), NOW)
    assert result.members == frozenset()
    assert sent(result) == {"mbx-a": True}
    assert result.deliveries[0].change.attributes["left_filter"] is True


def test_reassignment_moves_the_record_and_old_owner_gets_left_copy() -> None:
    result = fan_out(change(ownerid=BOB, statecode=0), targets(A, B), frozenset({"mbx-a"}), NOW)
    assert result.members == {"mbx-b"}
    assert sent(result) == {"mbx-a": True, "mbx-b": False}


def test_stale_left_filter_attribute_is_not_forwarded_on_a_match() -> None:
    result = fan_out(
        change(ownerid=ALICE, statecode=0, left_filter=True), targets(A), frozenset(), NOW
    )
    assert result.deliveries[0].change.attributes.get("left_filter") is None


def parties(*rows: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"mask": m, "table": "systemuser", "id": who, "address": None} for who, m in rows]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (parties((ALICE, 7), (BOB, 5), (CAROL, 6)), {"mbx-a", "mbx-b"}),
        (parties((BOB, 7)), {"mbx-b"}),
        (parties((CAROL, 6)), set()),
        ([], set()),
    ],
)
def test_appointment_attendees_through_parties(
    rows: list[dict[str, Any]], expected: set[str]
) -> None:
    result = fan_out(change("appointment", parties=rows), targets(A, B, C), frozenset(), NOW)
    assert result.members == expected


def test_parties_as_links_ignores_garbage() -> None:
    rows = parties_as_links({"parties": [{"mask": 5, "id": ALICE}, "junk", 3]}, REC)
    assert rows == [
        {
            "activityid": REC,
            "partyid": ALICE,
            "partyid_table": None,
            "participationtypemask": 5,
            "addressused": None,
        }
    ]
    assert parties_as_links({"parties": "nope"}, REC) == []


def test_several_filters_are_or_combined() -> None:
    filters = (
        flt(
            "f1",
            "contact",
            '<filter><condition attribute="city" operator="eq" value="Oslo"/></filter>',
            "mbx-c",
        ),
        flt(
            "f2",
            "contact",
            '<filter><condition attribute="lastname" operator="like" value="Le%"/></filter>',
            "mbx-c",
        ),
    )
    oslo = fan_out(change(city="Oslo", lastname="X"), targets(C, filters=filters), frozenset(), NOW)
    lee = fan_out(
        change(city="Bergen", lastname="Lee"), targets(C, filters=filters), frozenset(), NOW
    )
    none = fan_out(
        change(city="Bergen", lastname="X"), targets(C, filters=filters), frozenset(), NOW
    )
    assert oslo.members == lee.members == {"mbx-c"}
    assert none.members == frozenset()
    # own filters replace the defaults: Carol owns nothing here, yet the city filter holds it
    assert (
        fan_out(
            change(ownerid=CAROL, statecode=0), targets(C, filters=filters), frozenset(), NOW
        ).members
        == frozenset()
    )


def test_disabled_filters_hold_nothing_and_do_not_fall_back() -> None:
    off = (flt("f1", "contact", "", "mbx-a", enabled=False),)
    result = fan_out(change(ownerid=ALICE, statecode=0), targets(A, filters=off), frozenset(), NOW)
    assert result.members == frozenset()


def test_filter_of_another_table_keeps_the_default_for_this_one() -> None:
    tasks = (flt("f1", "task", "", "mbx-a"),)
    result = fan_out(
        change(ownerid=ALICE, statecode=0), targets(A, filters=tasks), frozenset(), NOW
    )
    assert result.members == {"mbx-a"}


def test_delete_goes_to_every_mailbox_that_held_it() -> None:
    result = fan_out(change(op="delete"), targets(A, B, C), frozenset({"mbx-a", "mbx-c"}), NOW)
    assert result.members == frozenset()
    assert sent(result) == {"mbx-a": False, "mbx-c": False}
    assert all(d.change.op == "delete" for d in result.deliveries)


def test_delete_of_unheld_record_goes_nowhere() -> None:
    assert fan_out(change(op="delete"), targets(A, B), frozenset(), NOW) == FanOut(frozenset())


GARBAGE = ("<fetch><entity", '<fetch><entity name="contact"><bogus/></entity></fetch>', "x" * 10)


@pytest.mark.parametrize("text", GARBAGE)
def test_garbage_filter_is_skipped_and_reported(text: str) -> None:
    bad = FilterRecord("bad", "org", "contact", "bad", text, mailbox_id="mbx-c")
    good = flt(
        "good",
        "contact",
        '<filter><condition attribute="city" operator="eq" value="Oslo"/></filter>',
        "mbx-c",
    )
    result = fan_out(change(city="Oslo"), targets(C, filters=(bad, good)), frozenset(), NOW)
    assert result.members == {"mbx-c"}
    (problem,) = result.problems
    assert problem.mailbox_id == "mbx-c" and problem.filter_id == "bad"
    assert "bad" in str(problem) and problem.reason


def test_only_garbage_keeps_previous_membership() -> None:
    bad = (FilterRecord("bad", "org", "contact", "bad", "<nope", mailbox_id="mbx-c"),)
    kept = fan_out(change(city="Oslo"), targets(C, filters=bad), frozenset({"mbx-c"}), NOW)
    assert kept.members == {"mbx-c"} and sent(kept) == {"mbx-c": False}
    fresh = fan_out(change(city="Oslo"), targets(C, filters=bad), frozenset(), NOW)
    assert fresh.members == frozenset() and fresh.deliveries == ()
    assert len(fresh.problems) == 1


def test_filter_of_wrong_entity_is_reported() -> None:
    wrong = FilterRecord(
        "w", "org", "contact", "w", '<fetch><entity name="task"/></fetch>', mailbox_id="mbx-a"
    )
    result = fan_out(
        change(ownerid=ALICE, statecode=0), targets(A, filters=(wrong,)), frozenset(), NOW
    )
    assert "does not match table" in result.problems[0].reason


def test_inactive_mailboxes_get_nothing_and_drop_out() -> None:
    off = mailbox("mbx-a", ALICE, status="disabled")
    result = fan_out(change(ownerid=ALICE, statecode=0), targets(off), frozenset({"mbx-a"}), NOW)
    assert result == FanOut(frozenset())
    paused = mailbox("mbx-a", ALICE, status="paused")
    assert fan_out(
        change(ownerid=ALICE, statecode=0), targets(paused), frozenset(), NOW
    ).members == {"mbx-a"}


def test_outgoing_email_goes_to_its_sender() -> None:
    rows = parties((BOB, 1), (ALICE, 2))
    result = fan_out(
        change("email", parties=rows, pending_send=True), targets(A, B), frozenset(), NOW
    )
    assert result.members == {"mbx-b"}


def test_non_crm_change_is_refused() -> None:
    with pytest.raises(ValueError, match="not a CRM record change"):
        fan_out(replace(change(), side="outlook"), [], frozenset(), NOW)
    with pytest.raises(ValueError, match="not a CRM record change"):
        fan_out(replace(change(), table=None), [], frozenset(), NOW)


def test_static_directory_and_route_use_org_and_mailbox_filters() -> None:
    other_org = Mailbox("mbx-x", "x@example.com", "org2", ALICE, status="enabled")
    template = flt(
        "org-wide",
        "contact",
        '<filter><condition attribute="city" operator="eq" value="Oslo"/></filter>',
        None,
    )
    directory = StaticDirectory([A, B, other_org], [template])
    assert [m.mailbox_id for m in directory.mailboxes_for("org")] == ["mbx-a", "mbx-b"]
    assert directory.filters_for("mbx-a", "contact") == [template]
    assert directory.filters_for("mbx-a", "task") == []
    assert directory.filters_for("mbx-x", "contact") == []
    result = route(change(city="Oslo", ownerid=ALICE, statecode=0), directory, frozenset(), NOW)
    assert result.members == {"mbx-a", "mbx-b"}


def test_members_codec_round_trip_and_garbage() -> None:
    record = Membership(frozenset({"b", "a"}), frozenset({"c"}), "crm:contact:r1:7")
    assert decode_members(encode_members(record)) == record
    assert decode_members(None) == Membership()
    assert decode_members(b'["a"]') == Membership(frozenset({"a"}))  # the earlier format
    for raw in (b"{}", b"[1]", b'[""]', b'{"by": "x", "members": [1], "before": []}'):
        with pytest.raises(ValueError, match="membership"):
            decode_members(raw)
    with pytest.raises(ValueError):
        decode_members(b"{nope")


def test_a_change_read_again_is_routed_from_the_membership_before_it() -> None:
    # the left-filter copy (or a delete) of a change whose new membership was saved before a
    # crash, but whose copies were not sent, goes out when the change is read again
    saved = Membership(frozenset({"mbx-b"}), frozenset({"mbx-a", "mbx-b"}), "crm:contact:r1:7")
    assert saved.previous_for("crm:contact:r1:7") == {"mbx-a", "mbx-b"}
    assert saved.previous_for("crm:contact:r1:8") == {"mbx-b"}


_USERS = [ALICE, BOB, CAROL, ALICE.upper()]
_FILTER_BODIES = [
    '<filter><condition attribute="ownerid" operator="eq-userid"/></filter>',
    '<filter><condition attribute="ownerid" operator="eq-userid"/>'
    '<condition attribute="statecode" operator="eq" value="0"/></filter>',
    '<filter type="or"><condition attribute="ownerid" operator="eq-userid"/>'
    '<condition attribute="city" operator="eq" value="Oslo"/></filter>',
    '<filter><condition attribute="createdby" operator="eq-userid"/></filter>',
    '<filter><condition attribute="city" operator="eq" value="Oslo"/></filter>',
    "<filter><condition/></filter>",  # broken
]


@st.composite
def _org(draw: st.DrawFn) -> tuple[list[MailboxFilters], frozenset[str]]:
    targets: list[MailboxFilters] = []
    for i in range(draw(st.integers(0, 6))):
        box = mailbox(
            f"m{i}",
            draw(st.sampled_from(_USERS)),
            draw(st.sampled_from(["enabled", "enabled", "disabled"])),
        )
        bodies = draw(st.lists(st.sampled_from(_FILTER_BODIES), max_size=2))
        own = tuple(flt(f"f{i}-{j}", "contact", b, box.mailbox_id) for j, b in enumerate(bodies))
        targets.append(MailboxFilters(box, own))
    ids = [t.mailbox.mailbox_id for t in targets]
    previous = frozenset(draw(st.lists(st.sampled_from(ids), unique=True)) if ids else ())
    return targets, previous


@given(
    _org(),
    st.sampled_from([*_USERS, None, "not-a-user"]),
    st.sampled_from([*_USERS, None]),
    st.sampled_from(["Oslo", "Bergen"]),
    st.sampled_from([0, 1]),
    st.sampled_from(["upsert", "delete"]),
)
@settings(max_examples=400, deadline=None)
def test_routing_candidates_route_exactly_as_every_mailbox_would(
    org: tuple[list[MailboxFilters], frozenset[str]],
    owner: str | None,
    creator: str | None,
    city: str,
    state: int,
    op: Op,
) -> None:
    """Fanning out to the Routing's candidates gives the same members, deliveries and
    problems as fanning out to every mailbox of the organisation."""
    targets, previous = org
    record = change(op=op, ownerid=owner, createdby=creator, city=city, statecode=state)
    routing = Routing.build(targets, "contact", parse_for_table)
    candidates = routing.candidates(record.attributes, previous)
    assert fan_out(record, candidates, previous, NOW) == fan_out(record, targets, previous, NOW)


def test_routing_skips_mailboxes_whose_user_does_not_own_the_record() -> None:
    """With the system templates (``ownerid eq-userid``), a record owned by one user is
    evaluated against that user's mailbox, plus those that held it."""
    boxes = [
        MailboxFilters(mailbox(f"m{i}", f"{i:08d}-1111-1111-1111-111111111111")) for i in range(50)
    ]
    routing = Routing.build(boxes, "contact", parse_for_table)
    assert routing.always == ()
    owner = "00000007-1111-1111-1111-111111111111"
    found = routing.candidates({"ownerid": owner.upper()}, frozenset({"m3"}))
    assert sorted(t.mailbox.mailbox_id for t in found) == ["m3", "m7"]
