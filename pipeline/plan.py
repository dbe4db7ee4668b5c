"""The pure planner: (change, link state, rules) → new link state + actions. No I/O.

The sync rules themselves live in :mod:`pipeline.rules` (directions, 3-way merge and conflict
policy, the delete table, email tracking); this module applies them to one pair's link state.
Order of decisions for a change seen on side ``c`` (the other side is ``o``):

1. unknown item: deletes and filter-leavers are dropped; Outlook items only when tracked
   (email by :func:`pipeline.rules.should_track`); CRM email only when pending send; otherwise
   a create on ``o`` with the fields that flow c → o.
2. unlinked pair → drop. A version already seen on ``c`` (or an older numeric one) → drop.
   The version we last wrote there → drop (echo by version).
3. delete → :func:`pipeline.rules.decide_delete` (edits of ``o`` not yet synced count as
   ``other_edited``; ``recreate`` creates the deleted item again from ``o``).
4. a CRM record leaving the mailbox's filters → the same table with reason ``left_filter``.
5. a projection equal to what we know of ``c`` (last seen, overlaid with our writes in flight)
   → drop (echo by projection; also Exchange's "opened, nothing changed").
6. :func:`pipeline.rules.merge` against ``base``; writes in flight count as already sent.
   Each conflict (correlation, field, both values) is recorded once.

Outcomes come back through :func:`apply_outcome`. Base and known projections move only on
applied outcomes, so a 412 (``conflict``) simply forgets the write: if the target's newer
version was already seen, the pair is re-merged at once from the known projections; otherwise
the target's own change (the reason for the 412) is on its way and its merge re-issues every
field still unsynced. That is the "re-plan from a fresh read".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeAlias

import orjson

from pipeline.rules import (
    ConflictRecord,
    ContactDraft,
    DeleteDecision,
    DeleteFacts,
    EmailFacts,
    FieldDirections,
    InMemoryTrackingLookup,
    RecordRef,
    TrackDecision,
    TrackingLookup,
    TrackingSettings,
    decide_delete,
    merge,
    should_track,
)
from pipeline.state import (
    RECENT_VERSIONS,
    LinkState,
    PendingWrite,
    SideState,
    correlation_id_for,
    derived_id,
)
from schemas.conflicts import ConflictClosed, ConflictResolution
from schemas.fields import ABSENT_IF_NONE
from schemas.models import (
    ChangeEvent,
    ChangeEventData,
    CommandAction,
    ItemChange,
    Mailbox,
    WriteCommand,
    WriteOutcome,
)
from schemas.models import FieldDirections as DirectionsRecord
from schemas.types import KINDS, CrmTable, Direction, Kind, Op, Projection, Side, other_side

DEFAULT_TABLE: Final[Mapping[Kind, CrmTable]] = {
    "contact": "contact",
    "appointment": "appointment",
    "task": "task",
    "email": "email",
}
#: The pseudo field of an edit-vs-delete conflict.
DELETE_FIELD: Final = "_delete"
EventType: TypeAlias = Literal[
    "com.dynasync.item.synced.v1",
    "com.dynasync.item.deleted.v1",
    "com.dynasync.item.unlinked.v1",
    "com.dynasync.conflict.recorded.v1",
]


@dataclass(frozen=True, slots=True)
class ConflictEntry:
    """One conflict decision of one pair (topic ``conflicts``): the rules' record plus where
    it happened. ``rule`` is the conflict policy, or the edit-vs-delete setting for the
    :data:`DELETE_FIELD` pseudo field."""

    conflict_id: str
    mailbox_id: str
    org_id: str
    correlation_id: str
    kind: Kind
    record: ConflictRecord
    rule: str
    caused_by: str
    decided_at: str

    def to_json(self) -> bytes:
        """The record as published on ``conflicts`` (orjson, flat)."""
        r = self.record
        return orjson.dumps(
            {
                "conflict_id": self.conflict_id,
                "mailbox_id": self.mailbox_id,
                "org_id": self.org_id,
                "correlation_id": self.correlation_id,
                "kind": self.kind,
                "field": r.field,
                "policy": self.rule,
                "base": r.base,
                "outlook": r.outlook,
                "crm": r.crm,
                "winner": r.winner,
                "caused_by": self.caused_by,
                "decided_at": self.decided_at,
            }
        )


@dataclass(frozen=True, slots=True)
class Alert:
    """Something an operator must look at (logged, and sent to ``dlq``)."""

    mailbox_id: str
    reason: str
    caused_by: str


@dataclass(frozen=True, slots=True)
class Drop:
    """The change needs nothing done; ``reason`` says why."""

    reason: str


Action: TypeAlias = WriteCommand | ChangeEvent | ConflictEntry | ConflictClosed | Alert | Drop


@dataclass(frozen=True, slots=True)
class Plan:
    """The planner's answer: the link state to store (None: no link) and what to do."""

    link: LinkState | None
    actions: tuple[Action, ...] = ()

    @property
    def commands(self) -> tuple[WriteCommand, ...]:
        return tuple(a for a in self.actions if isinstance(a, WriteCommand))

    @property
    def events(self) -> tuple[ChangeEvent, ...]:
        return tuple(a for a in self.actions if isinstance(a, ChangeEvent))

    @property
    def conflict_entries(self) -> tuple[ConflictEntry, ...]:
        return tuple(a for a in self.actions if isinstance(a, ConflictEntry))

    @property
    def conflicts(self) -> tuple[ConflictRecord, ...]:
        """The rules' conflict records of this plan."""
        return tuple(e.record for e in self.conflict_entries)

    @property
    def alerts(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.actions if isinstance(a, Alert))

    @property
    def dropped(self) -> str | None:
        """The drop reason, if the change was dropped."""
        return next((a.reason for a in self.actions if isinstance(a, Drop)), None)


def tracking_settings(mailbox: Mailbox) -> TrackingSettings:
    """The email tracking settings of ``mailbox`` (auto-track option, tracked folders)."""
    folders = {
        f.folder_id: RecordRef(f.regarding_table, f.regarding_id.strip("{}").lower())
        for f in mailbox.tracked_folders
    }
    return TrackingSettings(
        auto_track=mailbox.auto_track,
        folders=folders,
        auto_create_contact=mailbox.auto_create_contact,
    )


@dataclass(frozen=True, slots=True)
class MailboxRules:
    """Everything the planner needs to know about one mailbox's configuration.

    ``kinds`` holds the organisation's directions/policy records per kind (defaults: every
    catalogue field both ways, crm_wins, edit_wins, unlink); they are validated into
    :class:`pipeline.rules.FieldDirections` on construction (DirectionsError if invalid).
    """

    mailbox_id: str
    org_id: str
    systemuser_id: str
    kinds: Mapping[Kind, DirectionsRecord] = field(default_factory=dict)
    groups: frozenset[str] = frozenset()
    upn: str | None = None
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    lookup: TrackingLookup = field(default_factory=InMemoryTrackingLookup)
    _directions: Mapping[Kind, FieldDirections] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        built: dict[Kind, FieldDirections] = {}
        for kind in KINDS:
            record = self.kinds.get(kind)
            if record is not None and (record.kind != kind or record.org_id != self.org_id):
                raise ValueError(
                    f"directions record of {record.org_id}/{record.kind} filed under "
                    f"{self.org_id}/{kind}"
                )
            config = record.directions if record is not None else None
            built[kind] = FieldDirections.build(kind, config, groups=self.groups)
        object.__setattr__(self, "_directions", built)

    @classmethod
    def from_mailbox(
        cls,
        mailbox: Mailbox,
        directions: Iterable[DirectionsRecord] = (),
        *,
        lookup: TrackingLookup | None = None,
    ) -> MailboxRules:
        """Rules of ``mailbox`` with its organisation's per-kind directions."""
        kinds = {d.kind: d for d in directions if d.org_id == mailbox.org_id}
        return cls(
            mailbox.mailbox_id,
            mailbox.org_id,
            mailbox.systemuser_id,
            kinds,
            groups=frozenset(mailbox.field_groups),
            upn=mailbox.upn,
            tracking=tracking_settings(mailbox),
            lookup=lookup if lookup is not None else InMemoryTrackingLookup(),
        )

    def policy(self, kind: Kind) -> DirectionsRecord:
        """Directions and policies of ``kind`` (defaults: both ways, crm_wins, edit_wins)."""
        return self.kinds.get(kind) or DirectionsRecord(org_id=self.org_id, kind=kind)

    def directions(self, kind: Kind) -> FieldDirections:
        """The validated field directions of ``kind``."""
        return self._directions[kind]

    def direction(self, kind: Kind, name: str) -> Direction:
        """Direction of one field; fields outside the catalogue do not sync (``none``)."""
        return self._directions[kind].directions.get(name, "none")

    def flows(self, kind: Kind, name: str, source: Side) -> bool:
        """Whether ``name`` is copied from ``source`` to the other side."""
        return self._directions[kind].flows(name, source)


_MISSING: Final = object()


def _older(version: str, than: str | None) -> bool:
    return than is not None and version.isdigit() and than.isdigit() and int(version) < int(than)


def _synced(rules: MailboxRules, kind: Kind, projection: Projection) -> Projection:
    synced = rules.directions(kind).synced()
    return {k: v for k, v in projection.items() if k in synced}


def _flowing(rules: MailboxRules, kind: Kind, projection: Projection, source: Side) -> Projection:
    dirs = rules.directions(kind)
    return {k: v for k, v in projection.items() if dirs.flows(k, source)}


def _categories(change: ItemChange) -> tuple[str, ...]:
    return tuple(change.outlook.categories) if change.outlook is not None else ()


def _event(
    link: LinkState,
    ce_type: EventType,
    op: Op,
    origin: Side,
    fields: Projection,
    ce_id: str,
    now: str,
) -> ChangeEvent:
    return ChangeEvent(
        ce_id=ce_id,
        ce_source=f"/dynasync/{link.org_id}/{link.mailbox_id}",
        ce_type=ce_type,
        ce_specversion="1.0",
        ce_time=now,
        ce_subject=link.correlation_id,
        data=ChangeEventData(
            mailbox_id=link.mailbox_id,
            org_id=link.org_id,
            kind=link.kind,
            op=op,
            origin_side=origin,
            correlation_id=link.correlation_id,
            outlook_id=link.outlook.item_id,
            crm_id=link.crm.item_id,
            crm_table=link.crm_table,
            fields=dict(fields),
        ),
    )


def conflict_key(correlation_id: str, record: ConflictRecord) -> str:
    """Identity of one conflict: the pair, the field and both sides' values."""
    values = orjson.dumps([record.outlook, record.crm], option=orjson.OPT_SORT_KEYS)
    return derived_id("conflict-key", correlation_id, record.field, values.decode())


class _Builder:
    """Accumulates actions and link edits of one planning step."""

    def __init__(self, link: LinkState, rules: MailboxRules, caused_by: str, now: str) -> None:
        self.link = link
        self.rules = rules
        self.caused_by = caused_by
        self.now = now
        self.actions: list[Action] = []

    def command(self, target: Side, action: CommandAction, fields: Projection) -> None:
        link = self.link
        command_id = derived_id("cmd", self.caused_by, target, action, link.correlation_id)
        if_match = None if _creates(action) else link.side(target).version
        pending = PendingWrite(command_id, target, action, dict(fields), if_match)
        self.actions.append(_write_command(link, pending, self.rules, self.caused_by, self.now))
        self.link = replace(link, pending=(*link.pending, pending))

    def event(self, ce_type: EventType, op: Op, origin: Side, fields: Projection) -> None:
        ce_id = derived_id("event", self.caused_by, ce_type, self.link.correlation_id)
        self.actions.append(_event(self.link, ce_type, op, origin, fields, ce_id, self.now))

    def conflict(self, record: ConflictRecord, rule: str, origin: Side) -> None:
        link = self.link
        name = record.field
        conflict_id = derived_id("conflict", self.caused_by, link.correlation_id, name)
        self.actions.append(
            ConflictEntry(
                conflict_id=conflict_id,
                mailbox_id=link.mailbox_id,
                org_id=link.org_id,
                correlation_id=link.correlation_id,
                kind=link.kind,
                record=record,
                rule=rule,
                caused_by=self.caused_by,
                decided_at=self.now,
            )
        )
        ce_id = derived_id("event", self.caused_by, "conflict", link.correlation_id, name)
        data = {"field": name, "outlook": record.outlook, "crm": record.crm}
        data["winner"] = record.winner
        self.actions.append(
            _event(
                link, "com.dynasync.conflict.recorded.v1", "upsert", origin, data, ce_id, self.now
            )
        )

    def delete_conflict(self, deleted: Side, edits: Projection, winner: Side, rule: str) -> None:
        outlook, crm = (None, dict(edits)) if deleted == "outlook" else (dict(edits), None)
        policy = self.rules.policy(self.link.kind).conflict_policy
        record = ConflictRecord(DELETE_FIELD, None, outlook, crm, policy, winner)
        self.conflict(record, rule, deleted)

    def drop(self, reason: str) -> None:
        self.actions.append(Drop(reason))

    def done(self) -> Plan:
        return Plan(replace(self.link, updated_at=self.now), tuple(self.actions))


def _creates(action: CommandAction) -> bool:
    """Whether ``action`` makes the item (so it has no target id or version yet)."""
    return action in ("create", "send")


def _write_command(
    link: LinkState, pending: PendingWrite, rules: MailboxRules, caused_by: str, now: str
) -> WriteCommand:
    """The command of the link's write ``pending``."""
    return WriteCommand(
        command_id=pending.command_id,
        mailbox_id=link.mailbox_id,
        org_id=link.org_id,
        target=pending.target,
        kind=link.kind,
        action=pending.action,
        correlation_id=link.correlation_id,
        caused_by=caused_by,
        issued_at=now,
        table=link.crm_table,
        target_id=None if _creates(pending.action) else link.side(pending.target).item_id,
        if_match=pending.if_match,
        fields=dict(pending.fields),
        run_as=rules.systemuser_id if pending.target == "crm" else None,
    )


def _reissued(
    link: LinkState, caused_by: str, rules: MailboxRules, now: str
) -> tuple[WriteCommand, ...]:
    """The commands ``caused_by`` issued that are still in flight, issued again.

    A change (or outcome) is read again after a crash when its link state reached the
    changelog but its commands may not have reached their topic; sending them again is safe
    (same command ids, idempotent writers) and is the only way they are not lost.
    """
    return tuple(
        _write_command(link, p, rules, caused_by, now)
        for p in link.pending
        if p.command_id == derived_id("cmd", caused_by, p.target, p.action, link.correlation_id)
    )


def plan(change: ItemChange, link: LinkState | None, rules: MailboxRules, now: str) -> Plan:
    """Decide what ``change`` means for its pair, given the pair's ``link`` (None if unknown)."""
    if link is None:
        return _first_sight(change, rules, now)
    again = _reissued(link, change.change_id, rules, now)
    if again:
        return Plan(link, again)
    c = change.side
    b = _Builder(link, rules, change.change_id, now)
    seen = link.side(c)
    if link.unlinked:
        b.drop("pair is unlinked")
        return b.done()
    if change.version and change.version == seen.written_version:
        b.drop("echo of our own write (version)")
        return b.done()
    if change.version and change.version in seen.recent:
        b.drop("version already seen")
        return b.done()
    if change.version and _older(change.version, seen.version):
        b.drop("older version than already seen")
        return b.done()
    if change.op == "delete":
        if seen.deleted:
            b.drop("delete already seen")
            return b.done()
        return _deleted(change, b)
    if change.side == "crm" and change.attributes.get("left_filter") is True:
        return _left_filter(change, b)
    if seen.deleted:  # the item came back on its own side
        seen = replace(seen, deleted=False)
        link = replace(link.with_side(c, seen), tombstone=False)
        b.link = link
    if link.side(other_side(c)).deleted:
        return _edit_after_delete(change, b)
    projection = _synced(rules, link.kind, change.projection)
    known = link.expected(c)
    if all(known.get(k, _MISSING) == v for k, v in projection.items()):
        b.link = link.with_side(c, seen.saw(change.version, {**seen.seen, **projection}, now))
        b.drop("no synced field changed (echo or no-op)")
        return b.done()
    return _merge(b, c, projection, change.observed_at, seen_version=change.version)


def _outlook_tracked(change: ItemChange, rules: MailboxRules) -> tuple[bool, str]:
    """Whether an Outlook item seen for the first time goes to the CRM; why not, if not."""
    if change.correlation_id is not None or change.attributes.get("tracked") is True:
        return True, ""
    categories = _categories(change)
    wanted = rules.tracking.category.strip().casefold()
    if any(c.strip().casefold() == wanted for c in categories):
        return True, ""
    if change.kind != "email":
        return False, "outlook item is not tracked"
    decision = _email_decision(change, rules)
    if decision is None:
        return False, "outlook email has no internetMessageId"
    if not decision.tracked:
        return False, f"outlook email is not tracked ({decision.reason})"
    return True, ""


def email_facts(change: ItemChange) -> EmailFacts | None:
    """What email tracking looks at in an Outlook message change (None: not a usable email):
    what the reader saw of it (``change.outlook``) and its synced projection."""
    if change.outlook is None:
        return None
    try:
        return EmailFacts.of(change.projection, change.outlook)
    except (ValueError, TypeError):
        return None


def _email_decision(change: ItemChange, rules: MailboxRules) -> TrackDecision | None:
    facts = email_facts(change)
    if facts is None:
        return None
    return should_track(facts, rules.tracking, rules.lookup)


def _auto_created_contact(
    draft: ContactDraft, change: ItemChange, rules: MailboxRules, now: str
) -> WriteCommand:
    """Create the unknown sender of a tracked email as a CRM contact, before the email (so its
    sender resolves to it). Keyed by the address: the same sender is created once."""
    correlation = derived_id("auto-contact", rules.org_id, draft.emailaddress1)
    fields: Projection = {"emailaddress1": draft.emailaddress1, "lastname": draft.lastname}
    if draft.firstname:
        fields["firstname"] = draft.firstname
    return WriteCommand(
        command_id=derived_id("cmd", change.change_id, "crm", "create", correlation),
        mailbox_id=rules.mailbox_id,
        org_id=rules.org_id,
        target="crm",
        kind="contact",
        action="create",
        correlation_id=correlation,
        caused_by=change.change_id,
        issued_at=now,
        table="contact",
        fields=fields,
        run_as=rules.systemuser_id,
    )


def outgoing_message_id(correlation_id: str, upn: str | None) -> str:
    """The internetMessageId a CRM email is sent with (RFC 5322, the sender's domain)."""
    domain = upn.rpartition("@")[2] if upn and "@" in upn else "dynasync.invalid"
    return f"<{correlation_id}.dynasync@{domain}>"


def _first_sight(change: ItemChange, rules: MailboxRules, now: str) -> Plan:
    if change.op == "delete":
        return Plan(None, (Drop("delete of an item that was never linked"),))
    if change.attributes.get("left_filter") is True:
        return Plan(None, (Drop("unknown record left the filters"),))
    existing: str | None = None
    regarding: RecordRef | None = None
    draft: ContactDraft | None = None
    if change.side == "outlook":
        tracked, why = _outlook_tracked(change, rules)
        if not tracked:
            return Plan(None, (Drop(why),))
        if change.kind == "email":
            decision = _email_decision(change, rules)
            if decision is not None:
                existing, regarding = decision.existing_activity, decision.regarding
                draft = decision.create_contact
    action: CommandAction = "create"
    if change.side == "crm" and change.kind == "email":
        if change.attributes.get("pending_send") is not True:
            return Plan(None, (Drop("crm email is not pending send"),))
        action = "send"
    c, o = change.side, other_side(change.side)
    correlation = change.correlation_id or correlation_id_for(rules.mailbox_id, c, change.item_id)
    projection = _synced(rules, change.kind, change.projection)
    side = SideState(item_id=change.item_id).saw(change.version, projection, change.observed_at)
    other = SideState(item_id=existing)
    link = LinkState(
        correlation_id=correlation,
        mailbox_id=rules.mailbox_id,
        org_id=rules.org_id,
        kind=change.kind,
        crm_table=change.table or DEFAULT_TABLE[change.kind],
        outlook=side if c == "outlook" else other,
        crm=side if c == "crm" else other,
        base={},
        origin=c,
    )
    b = _Builder(link, rules, change.change_id, now)
    if draft is not None and existing is None:
        b.actions.append(_auto_created_contact(draft, change, rules, now))
    fields = _flowing(rules, change.kind, projection, c)
    if action == "send" and not fields.get("messageid"):
        # known before it is sent, so the CRM row has it (for replies) as soon as it is sent
        fields = {**fields, "messageid": outgoing_message_id(correlation, rules.upn)}
    if regarding is not None and existing is None:  # set once, on the activity it creates
        fields = {**fields, "regardingobjectid": {"table": regarding.table, "id": regarding.id}}
    if existing is not None:  # one activity per internetMessageId: link to it
        b.command(o, "update", fields)
    else:
        b.command(o, action, fields)
    return b.done()


def _unsynced_edits(link: LinkState, rules: MailboxRules, side: Side) -> Projection:
    """Edits of ``side`` the other side does not have yet: in flight there, or never synced."""
    inflight = {
        k: v
        for p in link.pending_to(other_side(side))
        if p.action == "update"
        for k, v in p.fields.items()
    }
    own = {
        k: v
        for k, v in link.side(side).seen.items()
        if rules.flows(link.kind, k, side) and link.base.get(k, _MISSING) != v
    }
    return {**own, **inflight}


def _recreate(b: _Builder, target: Side, source: Side) -> None:
    """Create ``target``'s item again from ``source`` (edit wins over delete)."""
    link = b.link
    fields = _flowing(b.rules, link.kind, link.expected(source), source)
    b.link = replace(
        link.with_side(target, SideState()), base={}, tombstone=False, pending=(), conflicts={}
    )
    b.command(target, "create", fields)


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _appointment_facts(change: ItemChange, link: LinkState, rules: MailboxRules, now: str) -> Any:
    """(organizer_is_user, in_future) of an appointment pair, from what is known of it."""
    known = {**link.outlook.seen, **link.crm.seen}
    organizer = known.get("organizer")
    by_upn = (
        rules.upn is not None
        and isinstance(organizer, Mapping)
        and isinstance(organizer.get("email"), str)
        and organizer["email"].casefold() == rules.upn.casefold()
    )
    is_user = change.attributes.get("organizer_is_user") is True or by_upn
    end = _moment(known.get("scheduledend")) or _moment(known.get("scheduledstart"))
    at = _moment(now)
    return is_user, end is not None and at is not None and end > at


def _delete_decision(
    b: _Builder, change: ItemChange, deleted: Side, edits: Projection, *, left_filter: bool
) -> DeleteDecision:
    link = b.link
    policy = b.rules.policy(link.kind)
    organizer, future = _appointment_facts(change, link, b.rules, b.now)
    facts = DeleteFacts(
        kind=link.kind,
        side=deleted,
        reason="left_filter" if left_filter else "deleted",
        other_edited=bool(edits),
        organizer_is_user=organizer,
        in_future=future,
    )
    return decide_delete(
        facts, edit_vs_delete=policy.edit_vs_delete, leave_filter=policy.leave_filter
    )


def _carry_out(b: _Builder, decision: DeleteDecision, deleted: Side, edits: Projection) -> Plan:
    """Act on a delete decision for ``deleted``'s item (the other side still exists)."""
    o = other_side(deleted)
    if decision == "recreate":
        b.delete_conflict(deleted, edits, o, "edit_wins")
        _recreate(b, deleted, o)
        return b.done()
    if edits and b.link.kind != "email":
        b.delete_conflict(deleted, edits, deleted, "delete_wins")
    if decision == "delete_other" and b.link.side(o).item_id is not None:
        b.command(o, "delete", {})
        b.link = replace(b.link, tombstone=True)
        return b.done()
    if decision == "delete_other" and any(p.action == "create" for p in b.link.pending_to(o)):
        # its counterpart's create is still in flight (re-sent after a restart, say): the
        # pair stays linked with this side deleted, and the create's outcome, which brings
        # the new item's id, deletes it (apply_outcome). Unlinking here left it for good.
        return b.done()
    b.link = replace(b.link, unlinked=True)
    b.event("com.dynasync.item.unlinked.v1", "delete", deleted, {})
    return b.done()


def _deleted(change: ItemChange, b: _Builder) -> Plan:
    c, o = change.side, other_side(change.side)
    link = b.link
    seen = link.side(c)
    b.link = link.with_side(c, replace(seen.saw(change.version or "", None, b.now), deleted=True))
    other = b.link.side(o)
    if other.deleted or (other.item_id is None and not b.link.pending_to(o)):
        b.link = replace(b.link, tombstone=True)
        b.event("com.dynasync.item.deleted.v1", "delete", c, {})
        return b.done()
    edits = _unsynced_edits(link, b.rules, o)
    decision = _delete_decision(b, change, c, edits, left_filter=False)
    return _carry_out(b, decision, c, edits)


def _left_filter(change: ItemChange, b: _Builder) -> Plan:
    link = b.link
    b.link = link.with_side("crm", link.crm.saw(change.version, None, b.now))
    edits = _unsynced_edits(link, b.rules, "outlook")
    decision = _delete_decision(b, change, "crm", edits, left_filter=True)
    if decision == "delete_other" and link.outlook.item_id is not None:
        b.command("outlook", "delete", {})
        b.link = replace(b.link, tombstone=True)
        return b.done()
    b.link = replace(b.link, unlinked=True)
    b.event("com.dynasync.item.unlinked.v1", "delete", "crm", {})
    return b.done()


def _edit_after_delete(change: ItemChange, b: _Builder) -> Plan:
    """``c`` changed an item whose counterpart on ``o`` is already deleted."""
    c, o = change.side, other_side(change.side)
    link = b.link
    projection = _synced(b.rules, link.kind, change.projection)
    b.link = link.with_side(c, link.side(c).saw(change.version, projection, b.now))
    edits = _flowing(b.rules, link.kind, projection, c) or {DELETE_FIELD: True}
    decision = _delete_decision(b, change, o, edits, left_filter=False)
    if decision == "recreate":
        b.delete_conflict(o, edits, c, "edit_wins")
        _recreate(b, o, c)
        return b.done()
    b.delete_conflict(o, edits, o, "delete_wins")
    if decision == "delete_other" and b.link.side(c).item_id is not None:
        b.command(c, "delete", {})
        b.link = replace(b.link, tombstone=True)
        return b.done()
    b.link = replace(b.link, unlinked=True)
    b.event("com.dynasync.item.unlinked.v1", "delete", o, {})
    return b.done()


def _merge(
    b: _Builder, c: Side, projection: Projection, observed_at: str, *, seen_version: str | None
) -> Plan:
    link = b.link
    o = other_side(c)
    kind = link.kind
    rules = b.rules
    dirs = rules.directions(kind)
    base = dict(link.base)
    pending_c = {k: v for p in link.pending_to(c) for k, v in p.fields.items()}
    pending_o = {k: v for p in link.pending_to(o) for k, v in p.fields.items()}
    c_seen = link.side(c).seen
    own_o = link.side(o).seen  # o's own observed values; writes in flight there are ours
    absent = ABSENT_IF_NONE[kind] if seen_version is not None else frozenset()
    c_vals: dict[str, Any] = {}
    o_vals: dict[str, Any] = {}
    for name in dirs.synced():
        b_val = base.get(name)
        if name in projection:
            c_val = projection[name]
        elif name in absent:
            c_val = None
        else:
            c_val = c_seen.get(name, b_val)
        # a value equal to our own write in flight to c is not c's change
        c_vals[name] = b_val if pending_c.get(name, _MISSING) == c_val else c_val
        o_vals[name] = own_o.get(name, b_val)
    at = {c: observed_at, o: link.side(o).seen_at}
    sides = {c: c_vals, o: o_vals}
    result = merge(
        base,
        sides["outlook"],
        sides["crm"],
        dirs,
        rules.policy(kind).conflict_policy,
        outlook_modified=at["outlook"],
        crm_modified=at["crm"],
    )
    for name, decision in result.decisions.items():
        if decision == "unchanged" and result.merged[name] != base.get(name):
            base[name] = result.merged[name]  # both sides changed it the same way
    recorded: dict[str, str] = {}
    for record in result.conflicts:
        key = conflict_key(link.correlation_id, record)
        recorded[record.field] = key
        if link.conflicts.get(record.field) != key:
            b.conflict(record, record.policy, c)
    to_o = {n: v for n, v in result.patch_to(o).items() if pending_o.get(n, _MISSING) != v}
    to_c = {n: v for n, v in result.patch_to(c).items() if pending_c.get(n, _MISSING) != v}
    seen = link.side(c)
    if seen_version is not None:
        seen = seen.saw(seen_version, {**seen.seen, **projection}, observed_at)
    b.link = replace(link.with_side(c, seen), base=base, conflicts=recorded)
    # One write in flight per side: later edits wait for its outcome, then go as one update
    # (coalesced, and with the If-Match of the version that write produced).
    if to_o and link.side(o).item_id is not None and not link.pending_to(o):
        b.command(o, "update", to_o)
    if to_c and link.side(c).item_id is not None and not link.pending_to(c):
        b.command(c, "update", to_c)
    if not b.actions:
        b.drop("nothing to propagate")
    return b.done()


def _find_pending(link: LinkState, command_id: str) -> PendingWrite | None:
    return next((p for p in link.pending if p.command_id == command_id), None)


def apply_outcome(link: LinkState, outcome: WriteOutcome, rules: MailboxRules, now: str) -> Plan:
    """Record ``outcome`` of one of the link's commands: ids, versions, the written projection.

    An applied write moves ``base``; then the pair is re-merged from what is known of both
    sides, so edits that arrived while a write was in flight follow as one update.
    """
    b = _Builder(link, rules, outcome.command_id, now)
    pending = _find_pending(link, outcome.command_id)
    if pending is None:
        again = _reissued(link, outcome.command_id, rules, now)
        if again:
            return Plan(link, again)
        b.drop("outcome of a command not in flight (repeat)")
        return b.done()
    t = pending.target
    rest = tuple(p for p in link.pending if p.command_id != outcome.command_id)
    link = replace(link, pending=rest)
    b.link = link
    side = link.side(t)
    if outcome.status == "applied" or (
        outcome.status == "not_found" and pending.action == "delete"
    ):
        if pending.action == "delete":
            b.link = link.with_side(t, replace(side, deleted=True))
            b.event("com.dynasync.item.deleted.v1", "delete", other_side(t), {})
            return b.done()
        written = dict(outcome.written or pending.fields)
        new_side = replace(
            side,
            item_id=outcome.target_id or side.item_id,
            written=written,
            written_version=outcome.version,
            deleted=False,
        )
        if side.version == pending.if_match:  # nothing observed there since the command
            seen = {**side.seen, **written}
            if outcome.version:
                new_side = new_side.saw(outcome.version, seen, now)
            else:
                new_side = replace(new_side, seen=seen)
        elif outcome.version and outcome.version not in side.recent:
            recent = (*side.recent, outcome.version)[-RECENT_VERSIONS:]
            new_side = replace(new_side, recent=recent)
        b.link = replace(link.with_side(t, new_side), base={**link.base, **written})
        if pending.action == "create" and link.side(other_side(t)).deleted and not link.unlinked:
            # the source was deleted while this create was in flight: delete what it made
            b.command(t, "delete", {})
            b.link = replace(b.link, tombstone=True)
            b.event("com.dynasync.item.deleted.v1", "delete", other_side(t), {})
            return b.done()
        b.event("com.dynasync.item.synced.v1", "upsert", other_side(t), written)
        if pending.action == "send":
            sent_id = written.get("messageid")
            b.command("crm", "mark_sent", {"messageid": sent_id} if sent_id else {})
        _reconcile(b)
        return b.done()
    if outcome.status == "conflict":
        if pending.action != "delete" and side.version != pending.if_match:
            _reconcile(b)
        elif pending.action == "delete":
            b.link = replace(b.link, tombstone=False)
        return b.done()
    if outcome.status == "not_found":
        # the target is gone while we wrote to it: an edit of the other side against a delete
        b.link = link.with_side(t, replace(side, deleted=True))
        edits = dict(pending.fields) or {DELETE_FIELD: True}
        change = ItemChange(
            change_id=outcome.command_id,
            side=t,
            org_id=link.org_id,
            kind=link.kind,
            op="delete",
            item_id=side.item_id or outcome.command_id,
            version="",
            observed_at=now,
            mailbox_id=link.mailbox_id,
        )
        decision = _delete_decision(b, change, t, edits, left_filter=False)
        return _carry_out(b, decision, t, edits)
    b.actions.append(
        Alert(
            link.mailbox_id,
            f"{pending.action} on {t} {outcome.status}: "
            f"{outcome.error_code or ''} {outcome.error_message or ''}".strip(),
            outcome.command_id,
        )
    )
    return b.done()


def _reconcile(b: _Builder) -> None:
    """Re-merge the pair from what is known of both sides (no new observation)."""
    link = b.link
    if link.unlinked or link.tombstone or link.outlook.deleted or link.crm.deleted:
        return
    merged = _merge(b, "crm", dict(link.crm.seen), link.crm.seen_at or "", seen_version=None)
    b.actions = [a for a in merged.actions if not isinstance(a, Drop)]
    b.link = merged.link or link


def resolve_conflict(
    link: LinkState, resolution: ConflictResolution, rules: MailboxRules, now: str
) -> Plan:
    """Apply an operator's decision on a conflict the ``manual`` policy left open: the base
    of the field moves to the losing side's value, so the re-merge sees only the chosen
    side's change and writes it to the other side. Applied only while the link still holds
    that very conflict open (same field and values); either way the conflict is closed."""
    again = _reissued(link, resolution.resolution_id, rules, now)
    if again:
        return Plan(link, again)
    b = _Builder(link, rules, resolution.resolution_id, now)
    name = resolution.field
    held = link.conflicts.get(name)
    if link.unlinked or link.tombstone or link.outlook.deleted or link.crm.deleted:
        reason = "the pair is no longer linked"
    elif held != resolution.conflict_key:
        reason = "no longer open (resolved, or superseded by a newer edit)"
    else:
        reason = ""
    if not reason:
        loser = link.side(other_side(resolution.take))
        b.link = replace(link, base={**link.base, name: loser.seen.get(name, link.base.get(name))})
        _reconcile(b)
    closed = ConflictClosed(
        conflict_id=resolution.conflict_id,
        mailbox_id=link.mailbox_id,
        correlation_id=link.correlation_id,
        field=name,
        take=resolution.take,
        resolution_id=resolution.resolution_id,
        applied=not reason,
        reason=reason or f"took {resolution.take}",
        closed_at=now,
    )
    b.actions.insert(0, closed)
    return b.done()
