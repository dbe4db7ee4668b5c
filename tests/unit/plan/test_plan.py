"""The pure planner, decision by decision."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from pipeline.plan import MailboxRules, Plan, apply_outcome, outgoing_message_id, plan
from pipeline.state import LinkState, correlation_id_for, decode_link, encode_link
from schemas.models import (
    FieldDirections,
    ItemChange,
    Mailbox,
    OutcomeStatus,
    OutlookAttributes,
    WriteCommand,
    WriteOutcome,
)
from schemas.types import ConflictPolicy, Direction, Kind, Op, Side

NOW = "2030-01-01T00:00:00Z"
USER = "11111111-2222-3333-4444-555555555555"


def rules(
    policy: ConflictPolicy = "crm_wins", kind: Kind = "contact", **extra: Any
) -> MailboxRules:
    # the directions are validated against the kind's field catalogue: contact fields only
    contact: dict[str, Direction] = {
        "jobtitle": "to_outlook",
        "description": "to_crm",
        "nickname": "none",
    }
    directions = FieldDirections(
        org_id="org",
        kind=kind,
        directions=contact if kind == "contact" else {},
        conflict_policy=policy,
        **extra,
    )
    return MailboxRules("mbx", "org", USER, {kind: directions})


def change(
    side: Side,
    item_id: str,
    version: str,
    projection: dict[str, Any] | None = None,
    *,
    op: Op = "upsert",
    kind: Kind = "contact",
    attributes: dict[str, Any] | None = None,
    outlook: OutlookAttributes | None = None,
    at: str = NOW,
) -> ItemChange:
    return ItemChange(
        change_id=f"{side}:{item_id}:{version}:{op}",
        side=side,
        org_id="org",
        kind=kind,
        op=op,
        item_id=item_id,
        version=version,
        observed_at=at,
        mailbox_id="mbx",
        projection=projection or {},
        attributes={"tracked": True}
        if side == "outlook" and attributes is None
        else attributes or {},
        outlook=outlook,
    )


def applied(p: Plan, target_id: str, version: str, r: MailboxRules | None = None) -> Plan:
    """Feed back an 'applied' outcome of the plan's single command."""
    (cmd,) = p.commands
    assert p.link is not None
    outcome = WriteOutcome(
        command_id=cmd.command_id,
        mailbox_id=cmd.mailbox_id,
        org_id=cmd.org_id,
        target=cmd.target,
        kind=cmd.kind,
        action=cmd.action,
        correlation_id=cmd.correlation_id,
        status="applied",
        completed_at=NOW,
        target_id=target_id,
        version=version,
        written=dict(cmd.fields),
    )
    return apply_outcome(p.link, outcome, r or rules(), NOW)


def outcome(cmd: WriteCommand, status: OutcomeStatus) -> WriteOutcome:
    return WriteOutcome(
        command_id=cmd.command_id,
        mailbox_id=cmd.mailbox_id,
        org_id=cmd.org_id,
        target=cmd.target,
        kind=cmd.kind,
        action=cmd.action,
        correlation_id=cmd.correlation_id,
        status=status,
        completed_at=NOW,
    )


def linked(r: MailboxRules | None = None) -> LinkState:
    """An Outlook contact created in CRM and confirmed: base {firstname: Ann, lastname: Lee}."""
    r = r or rules()
    first = plan(
        change("outlook", "o1", "v1", {"firstname": "Ann", "lastname": "Lee"}), None, r, NOW
    )
    done = applied(first, "c1", "1", r)
    assert done.link is not None
    return done.link


class TestFirstSight:
    def test_outlook_tracked_creates_in_crm_with_run_as(self) -> None:
        p = plan(
            change("outlook", "o1", "v1", {"firstname": "Ann", "jobtitle": "x", "nickname": "A"}),
            None,
            rules(),
            NOW,
        )
        (cmd,) = p.commands
        assert cmd.target == "crm" and cmd.action == "create"
        assert cmd.fields == {"firstname": "Ann"}  # jobtitle is to_outlook, nickname none
        assert cmd.run_as == USER and cmd.if_match is None and cmd.target_id is None
        assert cmd.correlation_id == correlation_id_for("mbx", "outlook", "o1")
        assert cmd.caused_by == "outlook:o1:v1:upsert"
        assert p.link is not None and p.link.outlook_id == "o1" and p.link.pending_ids

    def test_outlook_untracked_is_dropped(self) -> None:
        p = plan(
            change("outlook", "o1", "v1", {"firstname": "A"}, attributes={}), None, rules(), NOW
        )
        assert p.link is None and p.dropped == "outlook item is not tracked"

    def test_tracked_category_counts(self) -> None:
        seen = OutlookAttributes(categories=["Red", "Tracked to Dynamics 365"])
        contact = change("outlook", "o1", "v1", {"firstname": "A"}, attributes={}, outlook=seen)
        assert len(plan(contact, None, rules(), NOW).commands) == 1
        assert plan(replace(contact, outlook=None), None, rules(), NOW).dropped == (
            "outlook item is not tracked"
        )

    def test_crm_creates_in_outlook_without_run_as(self) -> None:
        p = plan(
            change("crm", "c1", "5", {"firstname": "Bo", "description": "d"}), None, rules(), NOW
        )
        (cmd,) = p.commands
        assert cmd.target == "outlook" and cmd.fields == {"firstname": "Bo"}
        assert cmd.run_as is None and p.link is not None and p.link.crm_table == "contact"

    def test_crm_email_only_when_pending_send(self) -> None:
        r = rules(kind="email")
        assert plan(change("crm", "e1", "1", {"subject": "s"}, kind="email"), None, r, NOW).dropped
        p = plan(
            change(
                "crm", "e1", "1", {"subject": "s"}, kind="email", attributes={"pending_send": True}
            ),
            None,
            r,
            NOW,
        )
        (send,) = p.commands
        assert send.action == "send"
        # sent with a message id of ours, written to the CRM row when it is marked sent
        assert send.fields["messageid"] == outgoing_message_id(send.correlation_id, r.upn)
        (mark,) = applied(p, "AAMk1", "ck1", r).commands
        assert (mark.action, mark.fields) == ("mark_sent", {"messageid": send.fields["messageid"]})

    def test_outgoing_message_id_uses_the_sender_domain(self) -> None:
        assert outgoing_message_id("c1", "ann@contoso.com") == "<c1.dynasync@contoso.com>"
        assert outgoing_message_id("c1", None) == "<c1.dynasync@dynasync.invalid>"

    def test_unknown_delete_and_leaver_dropped(self) -> None:
        assert plan(change("crm", "c1", "", op="delete"), None, rules(), NOW).dropped
        leaver = change("crm", "c1", "2", attributes={"left_filter": True})
        assert plan(leaver, None, rules(), NOW).dropped == "unknown record left the filters"


class TestOutcomes:
    def test_applied_records_ids_versions_base_and_event(self) -> None:
        link = linked()
        assert link.crm_id == "c1" and link.crm.written_version == "1"
        assert link.base == {"firstname": "Ann", "lastname": "Lee"} and not link.pending

    def test_repeated_outcome_dropped(self) -> None:
        r = rules()
        first = plan(change("outlook", "o1", "v1", {"firstname": "Ann"}), None, r, NOW)
        done = applied(first, "c1", "1", r)
        assert done.events and done.events[0].ce_type == "com.dynasync.item.synced.v1"
        assert done.link is not None
        again = apply_outcome(
            done.link,
            WriteOutcome(
                command_id=first.commands[0].command_id,
                mailbox_id="mbx",
                org_id="org",
                target="crm",
                kind="contact",
                action="create",
                correlation_id=done.link.correlation_id,
                status="applied",
                completed_at=NOW,
            ),
            r,
            NOW,
        )
        assert again.dropped is not None and not again.commands

    def test_failure_raises_alert(self) -> None:
        r = rules()
        p = plan(change("outlook", "o2", "v1", {"firstname": "A"}), None, r, NOW)
        (cmd,) = p.commands
        assert p.link is not None
        out = WriteOutcome(
            command_id=cmd.command_id,
            mailbox_id="mbx",
            org_id="org",
            target="crm",
            kind="contact",
            action="create",
            correlation_id=cmd.correlation_id,
            status="forbidden",
            completed_at=NOW,
            error_code="0x80040220",
        )
        res = apply_outcome(p.link, out, r, NOW)
        assert res.alerts and "forbidden" in res.alerts[0].reason


class TestEchoAndDedupe:
    def test_echo_by_version_dropped(self) -> None:
        link = linked()
        p = plan(
            change("crm", "c1", "1", {"firstname": "Ann", "lastname": "Lee"}), link, rules(), NOW
        )
        assert p.dropped == "echo of our own write (version)" and not p.commands

    def test_echo_by_projection_dropped_before_outcome(self) -> None:
        r = rules()
        first = plan(change("outlook", "o1", "v1", {"firstname": "Ann"}), None, r, NOW)
        assert first.link is not None
        echo = change("crm", "c1", "1", {"firstname": "Ann"})
        p = plan(echo, first.link, r, NOW)
        assert p.dropped is not None and "echo" in p.dropped and not p.commands

    def test_same_projection_new_version_dropped(self) -> None:
        link = linked()
        p = plan(
            change("outlook", "o1", "v2", {"firstname": "Ann", "lastname": "Lee"}),
            link,
            rules(),
            NOW,
        )
        assert p.dropped is not None and not p.commands
        assert p.link is not None and p.link.outlook.version == "v2"

    def test_repeat_and_older_versions_dropped(self) -> None:
        link = linked()
        edit = change("crm", "c1", "3", {"firstname": "Zed", "lastname": "Lee"})
        p = plan(edit, link, rules(), NOW)
        assert len(p.commands) == 1 and p.link is not None
        done = applied(p, "o1", "v3")
        assert done.link is not None
        assert plan(edit, done.link, rules(), NOW).dropped == "version already seen"
        older = change("crm", "c1", "2", {"firstname": "Old", "lastname": "Lee"})
        assert plan(older, done.link, rules(), NOW).dropped == "older version than already seen"

    def test_a_change_read_again_reissues_its_commands_in_flight(self) -> None:
        # after a crash, the link state may be saved while the command never reached its topic
        edit = change("crm", "c1", "3", {"firstname": "Zed", "lastname": "Lee"})
        first = plan(edit, linked(), rules(), NOW)
        again = plan(edit, first.link, rules(), NOW)
        assert again.link == first.link  # nothing else changes
        ((was,), (now,)) = first.commands, again.commands
        assert replace(now, issued_at=was.issued_at) == was
        # and an outcome read again reissues what that outcome caused
        queued = plan(
            change("crm", "c1", "4", {"firstname": "Zoe", "lastname": "Lee"}),
            first.link,
            rules(),
            NOW,
        )
        assert not queued.commands and queued.link is not None  # waits for the write in flight
        done = replace(
            outcome(was, "applied"), target_id="o1", version="v3", written=dict(was.fields)
        )
        after = apply_outcome(queued.link, done, rules(), NOW)
        (follow,) = after.commands
        assert follow.fields == {"firstname": "Zoe"} and after.link is not None
        repeat = apply_outcome(after.link, done, rules(), NOW)
        assert [c.command_id for c in repeat.commands] == [follow.command_id]


class TestMerge:
    def test_update_propagates_changed_fields_only_with_if_match(self) -> None:
        link = linked()
        p = plan(
            change("outlook", "o1", "v2", {"firstname": "Anna", "lastname": "Lee"}),
            link,
            rules(),
            NOW,
        )
        (cmd,) = p.commands
        assert cmd.action == "update" and cmd.fields == {"firstname": "Anna"}
        assert cmd.target_id == "c1" and cmd.if_match == "1" and cmd.run_as == USER

    def test_direction_blocks_flow(self) -> None:
        link = linked()
        p = plan(
            change(
                "outlook", "o1", "v2", {"firstname": "Ann", "lastname": "Lee", "jobtitle": "CEO"}
            ),
            link,
            rules(),
            NOW,
        )
        assert not p.commands

    @pytest.mark.parametrize(
        ("policy", "winner", "target", "value"),
        [
            ("crm_wins", "crm", "outlook", "FromCrm"),
            ("outlook_wins", "outlook", "crm", "FromOutlook"),
            ("manual", None, None, None),
        ],
    )
    def test_same_field_conflict_by_policy(
        self, policy: ConflictPolicy, winner: Side | None, target: Side | None, value: str | None
    ) -> None:
        r = rules(policy)
        link = linked(r)
        # Outlook edits firstname; the write to CRM is in flight when CRM's own edit arrives.
        p1 = plan(
            change("outlook", "o1", "v2", {"firstname": "FromOutlook", "lastname": "Lee"}),
            link,
            r,
            NOW,
        )
        assert p1.link is not None and len(p1.commands) == 1
        p2 = plan(
            change("crm", "c1", "2", {"firstname": "FromCrm", "lastname": "Lee"}), p1.link, r, NOW
        )
        (rec,) = p2.conflicts
        assert rec.field == "firstname" and rec.winner == winner and rec.policy == policy
        assert rec.outlook == "FromOutlook" and rec.crm == "FromCrm" and rec.base == "Ann"
        assert any(e.ce_type == "com.dynasync.conflict.recorded.v1" for e in p2.events)
        if target is None:
            assert not p2.commands
        elif target == "crm":
            # the write in flight already carries the winner; its 412 re-issues it at once
            assert not p2.commands and p2.link is not None
            (cmd,) = p1.commands
            retry = apply_outcome(p2.link, outcome(cmd, "conflict"), r, NOW)
            (again,) = retry.commands
            assert again.fields == {"firstname": value} and again.if_match == "2"
        else:
            (cmd,) = p2.commands
            assert cmd.target == target and cmd.fields == {"firstname": value}

    def test_disjoint_edits_merge_without_conflict(self) -> None:
        link = linked()
        p1 = plan(
            change("outlook", "o1", "v2", {"firstname": "Anna", "lastname": "Lee"}),
            link,
            rules(),
            NOW,
        )
        assert p1.link is not None
        p2 = plan(
            change("crm", "c1", "2", {"firstname": "Ann", "lastname": "Leigh"}),
            p1.link,
            rules(),
            NOW,
        )
        assert not p2.conflicts
        (cmd,) = p2.commands
        assert cmd.target == "outlook" and cmd.fields == {"lastname": "Leigh"}

    def test_412_then_target_change_reissues_lost_write(self) -> None:
        r = rules()
        link = linked(r)
        p1 = plan(
            change("outlook", "o1", "v2", {"firstname": "Anna", "lastname": "Lee"}), link, r, NOW
        )
        (cmd,) = p1.commands
        assert p1.link is not None
        conflict = WriteOutcome(
            command_id=cmd.command_id,
            mailbox_id="mbx",
            org_id="org",
            target="crm",
            kind="contact",
            action="update",
            correlation_id=cmd.correlation_id,
            status="conflict",
            completed_at=NOW,
        )
        p2 = apply_outcome(p1.link, conflict, r, NOW)
        assert p2.link is not None and not p2.link.pending and not p2.commands  # wait for read
        p3 = plan(
            change("crm", "c1", "2", {"firstname": "Ann", "lastname": "Leigh"}), p2.link, r, NOW
        )
        targets = {c.target: c for c in p3.commands}
        assert targets["crm"].fields == {"firstname": "Anna"} and targets["crm"].if_match == "2"
        assert targets["outlook"].fields == {"lastname": "Leigh"}


class TestDeletes:
    def test_delete_unlinks_by_default(self) -> None:
        p = plan(change("outlook", "o1", "", op="delete"), linked(), rules(), NOW)
        assert p.link is not None and p.link.unlinked and not p.commands
        assert p.events[0].ce_type == "com.dynasync.item.unlinked.v1"
        after = plan(change("crm", "c1", "9", {"firstname": "X"}), p.link, rules(), NOW)
        assert after.dropped == "pair is unlinked"

    def test_crm_appointment_delete_deletes_future_organised_event(self) -> None:
        r = rules(kind="appointment")
        first = plan(
            change(
                "crm",
                "a1",
                "1",
                {"subject": "s", "scheduledstart": "2031-01-01T10:00:00Z"},
                kind="appointment",
            ),
            None,
            r,
            NOW,
        )
        done = applied(first, "ev1", "ck1", r)
        assert done.link is not None
        gone = change(
            "crm", "a1", "", op="delete", kind="appointment", attributes={"organizer_is_user": True}
        )
        p = plan(gone, done.link, r, NOW)
        (cmd,) = p.commands
        assert cmd.action == "delete" and cmd.target_id == "ev1" and cmd.if_match == "ck1"
        past = replace(
            done.link, crm=replace(done.link.crm, seen={"scheduledstart": "2020-01-01T00:00:00Z"})
        )
        unlinked = plan(gone, past, r, NOW).link
        assert unlinked is not None and unlinked.unlinked

    def test_edit_vs_delete_edit_wins_recreates(self) -> None:
        r = rules()
        link = linked(r)
        p1 = plan(
            change("outlook", "o1", "v2", {"firstname": "Anna", "lastname": "Lee"}), link, r, NOW
        )
        assert p1.link is not None
        p2 = plan(change("crm", "c1", "", op="delete"), p1.link, r, NOW)
        (cmd,) = p2.commands
        assert cmd.target == "crm" and cmd.action == "create"
        assert cmd.fields == {"firstname": "Anna", "lastname": "Lee"}
        assert p2.conflicts[0].field == "_delete" and p2.conflicts[0].winner == "outlook"
        assert p2.link is not None and not p2.link.unlinked

    def test_edit_vs_delete_delete_wins_follows_the_delete_table(self) -> None:
        # the rules' delete table: a CRM contact delete deletes the Outlook copy (delete_other)
        r = rules(edit_vs_delete="delete_wins")
        link = linked(r)
        p1 = plan(
            change("outlook", "o1", "v2", {"firstname": "Anna", "lastname": "Lee"}), link, r, NOW
        )
        assert p1.link is not None
        p2 = plan(change("crm", "c1", "", op="delete"), p1.link, r, NOW)
        (cmd,) = p2.commands
        assert cmd.target == "outlook" and cmd.action == "delete" and cmd.target_id == "o1"
        (rec,) = p2.conflicts
        assert rec.field == "_delete" and rec.winner == "crm"
        assert p2.conflict_entries[0].rule == "delete_wins"
        assert p2.link is not None and p2.link.tombstone

    def test_outlook_delete_with_delete_wins_unlinks(self) -> None:
        r = rules(edit_vs_delete="delete_wins")
        p = plan(change("outlook", "o1", "", op="delete"), linked(r), r, NOW)
        assert p.link is not None and p.link.unlinked and not p.commands and not p.conflicts

    def test_email_delete_never_propagates(self) -> None:
        r = rules(kind="email")
        first = plan(change("outlook", "m1", "v1", {"subject": "s"}, kind="email"), None, r, NOW)
        done = applied(first, "e1", "1", r)
        assert done.link is not None
        p = plan(change("crm", "e1", "", op="delete", kind="email"), done.link, r, NOW)
        assert p.link is not None and p.link.unlinked and not p.commands


class TestLeaveFilter:
    def test_leaving_filter_unlinks(self) -> None:
        r = rules()
        first = plan(change("crm", "c1", "1", {"firstname": "Bo"}), None, r, NOW)
        done = applied(first, "o1", "v1", r)
        assert done.link is not None
        p = plan(
            change("crm", "c1", "2", {"firstname": "Bo"}, attributes={"left_filter": True}),
            done.link,
            r,
            NOW,
        )
        assert p.link is not None and p.link.unlinked and not p.commands

    def test_leaving_filter_deletes_when_configured(self) -> None:
        r = rules(leave_filter="delete")
        first = plan(change("crm", "c1", "1", {"firstname": "Bo"}), None, r, NOW)
        done = applied(first, "o1", "v1", r)
        assert done.link is not None
        p = plan(change("crm", "c1", "2", attributes={"left_filter": True}), done.link, r, NOW)
        (cmd,) = p.commands
        assert cmd.target == "outlook" and cmd.action == "delete" and cmd.if_match == "v1"


class TestDeterminism:
    def test_replayed_change_yields_same_command_id(self) -> None:
        link = linked()
        edit = change("outlook", "o1", "v2", {"firstname": "Anna", "lastname": "Lee"})
        a = plan(edit, link, rules(), NOW)
        b = plan(edit, link, rules(), NOW)
        assert a.commands[0].command_id == b.commands[0].command_id
        other = plan(replace(edit, change_id="other"), link, rules(), NOW)
        assert other.commands[0].command_id != a.commands[0].command_id

    def test_correlation_prefers_stamp(self) -> None:
        stamped = replace(
            change("outlook", "o9", "v1", {"firstname": "A"}), correlation_id="corr-x"
        )
        p = plan(stamped, None, rules(), NOW)
        assert p.commands[0].correlation_id == "corr-x"


class TestRulesAndState:
    def test_from_mailbox_picks_org_directions(self) -> None:
        mbx = Mailbox(mailbox_id="mbx", upn="a@b.c", org_id="org", systemuser_id=USER)
        r = MailboxRules.from_mailbox(
            mbx,
            [
                FieldDirections(org_id="org", kind="task", directions={"subject": "none"}),
                FieldDirections(org_id="other", kind="contact", directions={"firstname": "none"}),
            ],
        )
        assert r.direction("task", "subject") == "none"
        assert r.direction("contact", "firstname") == "both"
        # fields outside the catalogue never flow (pipeline.rules.FieldDirections.flows)
        assert not r.flows("contact", "x", "crm") and r.direction("contact", "x") == "none"
        assert r.policy("contact").conflict_policy == "crm_wins"

    def test_link_codec_round_trip(self) -> None:
        r = rules()
        p = plan(
            change("outlook", "o1", "v1", {"firstname": "Ann", "n": [1, {"a": None}]}), None, r, NOW
        )
        assert p.link is not None
        assert decode_link(encode_link(p.link)) == p.link

    @pytest.mark.parametrize("raw", [b"", b"[]", b'{"correlation_id": 1}', b"{not json"])
    def test_link_codec_rejects_garbage(self, raw: bytes) -> None:
        with pytest.raises(ValueError, match="not a link state"):
            decode_link(raw)


def test_a_delete_while_the_counterparts_create_is_in_flight_deletes_it_on_its_outcome() -> None:
    """A CRM contact deleted while its Outlook create is still in flight (re-sent after a
    restart, say): the pair stays linked, and the create's outcome deletes the new item.
    Unlinking here (as before) left the Outlook copy for good; the chaos test caught it."""
    from pipeline.plan import apply_outcome, plan
    from schemas.models import ItemChange, WriteOutcome

    rules = MailboxRules("mbx", "org", "11111111-2222-3333-4444-555555555555")
    created = ItemChange(
        change_id="crm:contact:r1:1",
        side="crm",
        org_id="org",
        kind="contact",
        op="upsert",
        item_id="r1",
        version="1",
        observed_at="2030-01-01T00:00:00Z",
        mailbox_id="mbx",
        table="contact",
        projection={"firstname": "Ed", "lastname": "Lee"},
    )
    first = plan(created, None, rules, "2030-01-01T00:00:01Z")
    (create,) = first.commands
    assert create.action == "create" and create.target == "outlook"
    deleted = ItemChange(
        change_id="crm:contact:r1:deleted",
        side="crm",
        org_id="org",
        kind="contact",
        op="delete",
        item_id="r1",
        version="",
        observed_at="2030-01-01T00:00:02Z",
        mailbox_id="mbx",
        table="contact",
    )
    second = plan(deleted, first.link, rules, "2030-01-01T00:00:02Z")
    assert second.link is not None and not second.link.unlinked
    assert second.commands == ()  # nothing to delete yet: the Outlook id is not known
    outcome = WriteOutcome(
        command_id=create.command_id,
        mailbox_id="mbx",
        org_id="org",
        kind="contact",
        completed_at="2030-01-01T00:00:03Z",
        correlation_id=create.correlation_id,
        target="outlook",
        action="create",
        status="applied",
        target_id="AAMk-new",
        version="ck1",
        written=dict(create.fields),
    )
    third = apply_outcome(second.link, outcome, rules, "2030-01-01T00:00:03Z")
    (delete,) = third.commands
    assert (delete.target, delete.action, delete.target_id) == ("outlook", "delete", "AAMk-new")
    assert third.link is not None and third.link.tombstone
