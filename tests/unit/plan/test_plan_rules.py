"""The planner on top of pipeline.rules: conflict records (once), email tracking, deletes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from connectors.graph.mapping import graph_to_projection, outlook_attributes
from pipeline.plan import MailboxRules, apply_outcome, plan
from pipeline.rules import DirectionsError, InMemoryTrackingLookup, RecordRef, StoredEmail
from pipeline.state import decode_link, encode_link
from schemas.models import FieldDirections, ItemChange, Mailbox, TrackedFolder
from tests.unit.plan.test_plan import NOW, USER, applied, change, linked, outcome, rules

ACCOUNT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


def graph_message(
    item_id: str,
    *,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    subject: str | None = None,
    sender: str | None = None,
    name: str | None = None,
    folder: str = "inbox-id",
) -> dict[str, Any]:
    """A Graph message as the delta reader receives it."""
    item: dict[str, Any] = {"id": item_id, "subject": subject, "parentFolderId": folder}
    if message_id is not None:
        item["internetMessageId"] = message_id
    if in_reply_to is not None:
        item["internetMessageHeaders"] = [{"name": "In-Reply-To", "value": in_reply_to}]
    if sender is not None:
        item["from"] = {"emailAddress": {"address": sender, "name": name}}
    return item


def email(item_id: str, **graph: Any) -> ItemChange:
    """An Outlook email change normalised by the reader's own mapping (projection and the
    attributes tracking reads), not built by hand."""
    item = graph_message(item_id, **graph)
    return change(
        "outlook",
        item_id,
        "v1",
        graph_to_projection("email", item),
        kind="email",
        attributes={},
        outlook=outlook_attributes("email", item),
    )


class TestManualConflictRecordedOnce:
    def test_same_conflict_not_recorded_again_on_later_events(self) -> None:
        r = rules("manual")
        link = linked(r)
        p1 = plan(
            change("outlook", "o1", "v2", {"firstname": "O", "lastname": "Lee"}), link, r, NOW
        )
        assert p1.link is not None
        p1b = apply_outcome(p1.link, outcome(p1.commands[0], "conflict"), r, NOW)
        assert p1b.link is not None
        p2 = plan(change("crm", "c1", "2", {"firstname": "C", "lastname": "Lee"}), p1b.link, r, NOW)
        assert len(p2.conflicts) == 1 and p2.conflicts[0].winner is None and not p2.commands
        assert p2.link is not None and p2.link.conflicts
        # an unrelated later edit on each side: the open conflict is not recorded again
        p3 = plan(
            change("crm", "c1", "3", {"firstname": "C", "lastname": "Lee", "telephone1": "1"}),
            p2.link,
            r,
            NOW,
        )
        assert not p3.conflicts and p3.link is not None
        assert [c.fields for c in p3.commands] == [{"telephone1": "1"}]
        survived = decode_link(encode_link(p3.link))
        assert survived.conflicts == p2.link.conflicts
        # a new value on one side is a new conflict, recorded once more
        p4 = plan(
            change("outlook", "o1", "v3", {"firstname": "O2", "lastname": "Lee"}), survived, r, NOW
        )
        assert [c.outlook for c in p4.conflicts] == ["O2"]

    def test_resolved_conflict_clears(self) -> None:
        r = rules("manual")
        link = linked(r)
        p1 = plan(
            change("outlook", "o1", "v2", {"firstname": "X", "lastname": "Lee"}), link, r, NOW
        )
        assert p1.link is not None
        p1b = apply_outcome(p1.link, outcome(p1.commands[0], "conflict"), r, NOW)
        assert p1b.link is not None
        p2 = plan(change("crm", "c1", "2", {"firstname": "Y", "lastname": "Lee"}), p1b.link, r, NOW)
        assert p2.link is not None and p2.conflicts
        # the operator sets the same value on Outlook as CRM has: no conflict any more
        p3 = plan(
            change("outlook", "o1", "v3", {"firstname": "Y", "lastname": "Lee"}), p2.link, r, NOW
        )
        assert not p3.conflicts and p3.link is not None and not p3.link.conflicts
        assert p3.link.base["firstname"] == "Y"


def test_conflict_entry_serialises_flat_with_orjson() -> None:
    r = rules("crm_wins")
    link = linked(r)
    p1 = plan(change("outlook", "o1", "v2", {"firstname": "O", "lastname": "Lee"}), link, r, NOW)
    assert p1.link is not None
    p2 = plan(change("crm", "c1", "2", {"firstname": "C", "lastname": "Lee"}), p1.link, r, NOW)
    (entry,) = p2.conflict_entries
    data = orjson.loads(entry.to_json())
    assert data["field"] == "firstname" and data["winner"] == "crm" and data["policy"] == "crm_wins"
    assert data["base"] == "Ann" and data["outlook"] == "O" and data["crm"] == "C"
    assert data["mailbox_id"] == "mbx" and data["correlation_id"] == link.correlation_id


class TestEmailTracking:
    def test_untracked_reply_option_drops_with_reason(self) -> None:
        r = rules(kind="email")
        p = plan(email("m1", message_id="<a@x>", subject="hi"), None, r, NOW)
        assert p.link is None and p.dropped == "outlook email is not tracked (not_matched)"

    def test_reply_to_crm_email_is_tracked(self) -> None:
        lookup = InMemoryTrackingLookup([StoredEmail("act-1", message_id="<orig@crm>")])
        r = replace(rules(kind="email"), lookup=lookup)
        p = plan(email("m1", message_id="<r@x>", in_reply_to="<orig@crm>"), None, r, NOW)
        (cmd,) = p.commands
        assert cmd.target == "crm" and cmd.action == "create"

    def test_reply_is_regarding_what_the_crm_email_was_regarding(self) -> None:
        about = RecordRef("account", ACCOUNT)
        lookup = InMemoryTrackingLookup([StoredEmail("act-1", "<orig@crm>", regarding=about)])
        r = replace(rules(kind="email"), lookup=lookup)
        p = plan(email("m1", message_id="<r@x>", in_reply_to="<orig@crm>"), None, r, NOW)
        (cmd,) = p.commands
        assert cmd.fields["regardingobjectid"] == {"table": "account", "id": ACCOUNT}
        # the regarding record is set once; later edits of the message do not carry it
        link = applied(p, "act-1", "7", r).link
        edited = change(
            "outlook", "m1", "v2", {"messageid": "<r@x>", "subject": "edited"}, kind="email"
        )
        later = plan(edited, link, r, NOW)
        assert later.commands, later.dropped
        assert all("regardingobjectid" not in c.fields for c in later.commands)

    def test_untracked_folder_mail_has_no_regarding(self) -> None:
        lookup = InMemoryTrackingLookup([StoredEmail("act-1", message_id="<orig@crm>")])
        r = replace(rules(kind="email"), lookup=lookup)
        p = plan(email("m1", message_id="<r@x>", in_reply_to="<orig@crm>"), None, r, NOW)
        assert "regardingobjectid" not in p.commands[0].fields

    def test_already_tracked_message_links_to_existing_activity(self) -> None:
        lookup = InMemoryTrackingLookup([StoredEmail("act-9", message_id="<m@x>")])
        r = replace(rules(kind="email"), lookup=lookup)
        p = plan(email("m1", message_id="<m@x>", subject="s"), None, r, NOW)
        (cmd,) = p.commands
        assert cmd.action == "update" and cmd.target_id == "act-9"
        assert p.link is not None and p.link.crm_id == "act-9"

    def test_tracked_folder_from_mailbox_config(self) -> None:
        mbx = Mailbox(
            mailbox_id="mbx",
            upn="ann@example.com",
            org_id="org",
            systemuser_id=USER,
            auto_track="none",
            tracked_folders=[TrackedFolder("F1", "account", ACCOUNT)],
        )
        r = MailboxRules.from_mailbox(mbx)
        tracked = email("m1", message_id="<1@x>", folder="F1")
        (cmd,) = plan(tracked, None, r, NOW).commands
        assert cmd.fields["regardingobjectid"] == {"table": "account", "id": ACCOUNT}
        elsewhere = email("m1", message_id="<1@x>", folder="F2")
        assert (
            plan(elsewhere, None, r, NOW).dropped
            == "outlook email is not tracked (auto_track_none)"
        )

    def test_reply_with_only_the_token_is_tracked_regarding_the_crm_email_record(self) -> None:
        about = RecordRef("account", ACCOUNT)
        original = StoredEmail("act-1", "<orig@crm>", token="CRM:0001234", regarding=about)
        r = replace(rules(kind="email"), lookup=InMemoryTrackingLookup([original]))
        p = plan(email("m1", message_id="<r@x>", subject="RE: Offer CRM:0001234"), None, r, NOW)
        (cmd,) = p.commands
        assert cmd.action == "create" and cmd.fields["subject"] == "RE: Offer"
        assert cmd.fields["regardingobjectid"] == {"table": "account", "id": ACCOUNT}
        assert cmd.fields["trackingtoken"] == "CRM:0001234"
        only = plan(email("m2", message_id="<o@x>", subject="CRM:0001234"), None, r, NOW)
        assert only.commands and only.commands[0].fields["regardingobjectid"]["id"] == ACCOUNT
        other = plan(email("m3", message_id="<n@x>", subject="RE: CRM:0009999"), None, r, NOW)
        assert other.dropped == "outlook email is not tracked (not_matched)"

    def test_an_email_without_what_the_reader_saw_is_not_tracked(self) -> None:
        bare = replace(email("m1", message_id="<m@x>", folder="F1"), outlook=None)
        assert plan(bare, None, rules(kind="email"), NOW).dropped == (
            "outlook email has no internetMessageId"
        )

    def test_unknown_sender_becomes_a_contact_before_the_email(self) -> None:
        mbx = Mailbox(
            mailbox_id="mbx",
            upn="ann@example.com",
            org_id="org",
            systemuser_id=USER,
            auto_track="all",
            auto_create_contact=True,
        )
        r = MailboxRules.from_mailbox(mbx)
        sender = {"sender": "jane.doe@new.example", "name": "Doe, Jane"}
        incoming = email("m1", message_id="<n@x>", subject="hello", **sender)
        contact, mail = plan(incoming, None, r, NOW).commands
        assert (contact.kind, contact.action, contact.target) == ("contact", "create", "crm")
        assert contact.fields == {
            "emailaddress1": "jane.doe@new.example",
            "lastname": "Doe",
            "firstname": "Jane",
        }
        assert contact.run_as == USER and mail.kind == "email" and mail.action == "create"
        # the same sender again: the same contact (its row id derives from the correlation id)
        again = email("m2", message_id="<m@x>", subject="again", **sender)
        assert plan(again, None, r, NOW).commands[0].correlation_id == contact.correlation_id
        # off by default
        quiet = MailboxRules.from_mailbox(replace(mbx, auto_create_contact=False))
        assert [c.kind for c in plan(incoming, None, quiet, NOW).commands] == ["email"]

    def test_email_without_message_id_is_dropped(self) -> None:
        p = plan(email("m1", subject="s"), None, rules(kind="email"), NOW)
        assert p.dropped == "outlook email has no internetMessageId"


def test_appointment_organizer_recognised_by_upn() -> None:
    r = replace(rules(kind="appointment"), upn="Ann@Example.com")
    first = plan(
        change(
            "crm",
            "a1",
            "1",
            {
                "subject": "s",
                "scheduledstart": "2031-01-01T10:00:00Z",
                "scheduledend": "2031-01-01T11:00:00Z",
                "organizer": {"email": "ann@example.com", "name": "Ann"},
            },
            kind="appointment",
        ),
        None,
        r,
        NOW,
    )
    done = applied(first, "ev1", "ck1", r)
    assert done.link is not None
    p = plan(change("crm", "a1", "", op="delete", kind="appointment"), done.link, r, NOW)
    assert [c.action for c in p.commands] == ["delete"]


def test_invalid_directions_are_refused() -> None:
    bad = FieldDirections(org_id="org", kind="contact", directions={"nosuchfield": "both"})
    with pytest.raises(DirectionsError, match="nosuchfield"):
        MailboxRules("mbx", "org", USER, {"contact": bad})
    other_org = FieldDirections(org_id="elsewhere", kind="contact")
    with pytest.raises(ValueError, match="filed under"):
        MailboxRules("mbx", "org", USER, {"contact": other_org})


def test_link_codec_rejects_bad_conflict_map() -> None:
    raw = orjson.loads(encode_link(linked()))
    raw["conflicts"] = {"firstname": 3}
    with pytest.raises(ValueError, match="not a link state"):
        decode_link(orjson.dumps(raw))
