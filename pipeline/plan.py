"""The pure planner: (change, link state, rules) → new link state + actions. No I/O.

Order of decisions for a change seen on side ``c`` (the other side is ``o``):

1. unknown item: deletes and filter-leavers are dropped; Outlook items only when tracked; CRM
   email only when pending send; otherwise a create on ``o`` with the fields that flow c → o.
2. unlinked pair → drop. A version already seen on ``c`` (or an older numeric one) → drop.
   The version we last wrote there → drop (echo by version).
3. delete → the rules' delete decision (unlink by default), with edit-vs-delete: when ``o``
   holds edits not yet synced, ``edit_wins`` recreates the deleted item from ``o``.
4. a CRM record leaving the mailbox's filters → unlink (or delete, when configured).
5. a projection equal to what we know of ``c`` (last seen, overlaid with our writes in flight)
   → drop (echo by projection; also Exchange's "opened, nothing changed").
6. field-level 3-way merge against ``base``; same-field conflicts by policy, direction first.

Outcomes come back through :func:`apply_outcome`. Base and known projections move only on
applied outcomes, so a 412 (``conflict``) simply forgets the write: if the target's newer
version was already seen, the pair is re-merged at once from the known projections; otherwise
the target's own change (the reason for the 412) is on its way and its merge re-issues every
field still unsynced. That is the "re-plan from a fresh read".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, TypeAlias

from pipeline.state import (
    RECENT_VERSIONS,
    LinkState,
    PendingWrite,
    SideState,
    correlation_id_for,
    derived_id,
)
from schemas.models import (
    ChangeEvent,
    ChangeEventData,
    CommandAction,
    FieldDirections,
    ItemChange,
    Mailbox,
    WriteCommand,
    WriteOutcome,
)
from schemas.types import (
    ConflictPolicy,
    CrmTable,
    Direction,
    Kind,
    Op,
    Projection,
    Side,
    other_side,
)

TRACKED_CATEGORY: Final = "Tracked to Dynamics 365"
DEFAULT_TABLE: Final[Mapping[Kind, CrmTable]] = {
    "contact": "contact",
    "appointment": "appointment",
    "task": "task",
    "email": "email",
}
DeleteDecision: TypeAlias = Literal["delete", "unlink"]
EventType: TypeAlias = Literal[
    "com.dynasync.item.synced.v1",
    "com.dynasync.item.deleted.v1",
    "com.dynasync.item.unlinked.v1",
    "com.dynasync.conflict.recorded.v1",
]


@dataclass(frozen=True, slots=True)
class ConflictRecord:
    """One conflict decision (topic ``conflicts``): a field both sides changed, or an
    edit-vs-delete. ``winner`` is None for the ``manual`` policy."""

    conflict_id: str
    mailbox_id: str
    org_id: str
    correlation_id: str
    kind: Kind
    field: str
    policy: str
    base: Any
    outlook: Any
    crm: Any
    winner: Side | None
    caused_by: str
    decided_at: str


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


Action: TypeAlias = WriteCommand | ChangeEvent | ConflictRecord | Alert | Drop


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
    def conflicts(self) -> tuple[ConflictRecord, ...]:
        return tuple(a for a in self.actions if isinstance(a, ConflictRecord))

    @property
    def alerts(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.actions if isinstance(a, Alert))

    @property
    def dropped(self) -> str | None:
        """The drop reason, if the change was dropped."""
        return next((a.reason for a in self.actions if isinstance(a, Drop)), None)


def default_tracked(change: ItemChange) -> bool:
    """Outlook→CRM only for tracked items: stamped by us, flagged, or carrying the category."""
    attrs = change.attributes
    categories = attrs.get("categories") or ()
    return (
        change.correlation_id is not None
        or attrs.get("tracked") is True
        or (isinstance(categories, list | tuple) and TRACKED_CATEGORY in categories)
    )


def default_delete_decision(change: ItemChange, link: LinkState, now: str) -> DeleteDecision:
    """The delete table: email never deletes the other side; a CRM appointment delete deletes
    the Outlook event only if the user organises it and it is in the future; else unlink."""
    if link.kind == "appointment" and change.side == "crm":
        start = link.crm.seen.get("scheduledstart")
        organizer = change.attributes.get("organizer_is_user") is True
        if organizer and isinstance(start, str) and start > now:
            return "delete"
    return "unlink"


@dataclass(frozen=True, slots=True)
class MailboxRules:
    """Everything the planner needs to know about one mailbox's configuration."""

    mailbox_id: str
    org_id: str
    systemuser_id: str
    kinds: Mapping[Kind, FieldDirections] = field(default_factory=dict)
    tracked: Callable[[ItemChange], bool] = default_tracked
    delete_decision: Callable[[ItemChange, LinkState, str], DeleteDecision] = (
        default_delete_decision
    )

    @classmethod
    def from_mailbox(
        cls, mailbox: Mailbox, directions: Iterable[FieldDirections] = ()
    ) -> MailboxRules:
        """Rules of ``mailbox`` with its organisation's per-kind directions."""
        kinds = {d.kind: d for d in directions if d.org_id == mailbox.org_id}
        return cls(mailbox.mailbox_id, mailbox.org_id, mailbox.systemuser_id, kinds)

    def policy(self, kind: Kind) -> FieldDirections:
        """Directions and policies of ``kind`` (defaults: both ways, crm_wins, edit_wins)."""
        return self.kinds.get(kind) or FieldDirections(org_id=self.org_id, kind=kind)

    def direction(self, kind: Kind, name: str) -> Direction:
        """Direction of one field; fields not configured sync both ways."""
        return self.policy(kind).directions.get(name, "both")

    def flows(self, kind: Kind, name: str, source: Side) -> bool:
        """Whether ``name`` is copied from ``source`` to the other side."""
        d = self.direction(kind, name)
        return d == "both" or d == ("to_crm" if source == "outlook" else "to_outlook")


_MISSING: Final = object()


def _older(version: str, than: str | None) -> bool:
    return than is not None and version.isdigit() and than.isdigit() and int(version) < int(than)


def _synced(rules: MailboxRules, kind: Kind, projection: Projection) -> Projection:
    return {k: v for k, v in projection.items() if rules.direction(kind, k) != "none"}


def _flowing(rules: MailboxRules, kind: Kind, projection: Projection, source: Side) -> Projection:
    return {k: v for k, v in projection.items() if rules.flows(kind, k, source)}


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


class _Builder:
    """Accumulates actions and link edits of one planning step."""

    def __init__(self, link: LinkState, rules: MailboxRules, caused_by: str, now: str) -> None:
        self.link = link
        self.rules = rules
        self.caused_by = caused_by
        self.now = now
        self.actions: list[Action] = []

    def command(
        self, target: Side, action: CommandAction, fields: Projection, *, create: bool = False
    ) -> None:
        link = self.link
        side = link.side(target)
        command_id = derived_id("cmd", self.caused_by, target, action, link.correlation_id)
        if_match = None if create else side.version
        self.actions.append(
            WriteCommand(
                command_id=command_id,
                mailbox_id=link.mailbox_id,
                org_id=link.org_id,
                target=target,
                kind=link.kind,
                action=action,
                correlation_id=link.correlation_id,
                caused_by=self.caused_by,
                issued_at=self.now,
                table=link.crm_table,
                target_id=None if create else side.item_id,
                if_match=if_match,
                fields=dict(fields),
                run_as=self.rules.systemuser_id if target == "crm" else None,
            )
        )
        pending = PendingWrite(command_id, target, action, dict(fields), if_match)
        self.link = replace(link, pending=(*link.pending, pending))

    def event(self, ce_type: EventType, op: Op, origin: Side, fields: Projection) -> None:
        ce_id = derived_id("event", self.caused_by, ce_type, self.link.correlation_id)
        self.actions.append(_event(self.link, ce_type, op, origin, fields, ce_id, self.now))

    def conflict(
        self, name: str, policy: str, outlook: Any, crm: Any, winner: Side | None, origin: Side
    ) -> None:
        link = self.link
        conflict_id = derived_id("conflict", self.caused_by, link.correlation_id, name)
        self.actions.append(
            ConflictRecord(
                conflict_id=conflict_id,
                mailbox_id=link.mailbox_id,
                org_id=link.org_id,
                correlation_id=link.correlation_id,
                kind=link.kind,
                field=name,
                policy=policy,
                base=link.base.get(name),
                outlook=outlook,
                crm=crm,
                winner=winner,
                caused_by=self.caused_by,
                decided_at=self.now,
            )
        )
        ce_id = derived_id("event", self.caused_by, "conflict", link.correlation_id, name)
        data = {"field": name, "outlook": outlook, "crm": crm, "winner": winner}
        self.actions.append(
            _event(
                link, "com.dynasync.conflict.recorded.v1", "upsert", origin, data, ce_id, self.now
            )
        )

    def drop(self, reason: str) -> None:
        self.actions.append(Drop(reason))

    def done(self) -> Plan:
        return Plan(replace(self.link, updated_at=self.now), tuple(self.actions))


def plan(change: ItemChange, link: LinkState | None, rules: MailboxRules, now: str) -> Plan:
    """Decide what ``change`` means for its pair, given the pair's ``link`` (None if unknown)."""
    if link is None:
        return _first_sight(change, rules, now)
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


def _first_sight(change: ItemChange, rules: MailboxRules, now: str) -> Plan:
    if change.op == "delete":
        return Plan(None, (Drop("delete of an item that was never linked"),))
    if change.attributes.get("left_filter") is True:
        return Plan(None, (Drop("unknown record left the filters"),))
    if change.side == "outlook" and not rules.tracked(change):
        return Plan(None, (Drop("outlook item is not tracked"),))
    action: CommandAction = "create"
    if change.side == "crm" and change.kind == "email":
        if change.attributes.get("pending_send") is not True:
            return Plan(None, (Drop("crm email is not pending send"),))
        action = "send"
    c, o = change.side, other_side(change.side)
    correlation = change.correlation_id or correlation_id_for(rules.mailbox_id, c, change.item_id)
    projection = _synced(rules, change.kind, change.projection)
    side = SideState(item_id=change.item_id).saw(change.version, projection, change.observed_at)
    link = LinkState(
        correlation_id=correlation,
        mailbox_id=rules.mailbox_id,
        org_id=rules.org_id,
        kind=change.kind,
        crm_table=change.table or DEFAULT_TABLE[change.kind],
        outlook=side if c == "outlook" else SideState(),
        crm=side if c == "crm" else SideState(),
        base={},
        origin=c,
    )
    b = _Builder(link, rules, change.change_id, now)
    b.command(o, action, _flowing(rules, change.kind, projection, c), create=True)
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
    b.link = replace(link.with_side(target, SideState()), base={}, tombstone=False, pending=())
    b.command(target, "create", fields, create=True)


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
    policy = b.rules.policy(link.kind)
    edits = _unsynced_edits(link, b.rules, o)
    if edits and policy.edit_vs_delete == "edit_wins" and link.kind != "email":
        b.conflict("_delete", "edit_wins", *_pair(c, None, edits), winner=o, origin=c)
        _recreate(b, c, o)
        return b.done()
    decision = "unlink" if link.kind == "email" else b.rules.delete_decision(change, link, b.now)
    if decision == "delete" and other.item_id is not None:
        b.command(o, "delete", {})
        b.link = replace(b.link, tombstone=True)
        return b.done()
    b.link = replace(b.link, unlinked=True)
    b.event("com.dynasync.item.unlinked.v1", "delete", c, {})
    return b.done()


def _pair(c: Side, c_value: Any, o_value: Any) -> tuple[Any, Any]:
    """(outlook value, crm value) from the changing side's and the other side's values."""
    return (c_value, o_value) if c == "outlook" else (o_value, c_value)


def _left_filter(change: ItemChange, b: _Builder) -> Plan:
    link = b.link
    b.link = link.with_side("crm", link.crm.saw(change.version, None, b.now))
    if b.rules.policy(link.kind).leave_filter == "delete" and link.outlook.item_id is not None:
        b.command("outlook", "delete", {})
        b.link = replace(b.link, tombstone=True)
        return b.done()
    b.link = replace(b.link, unlinked=True)
    b.event("com.dynasync.item.unlinked.v1", "delete", "crm", {})
    return b.done()


def _edit_after_delete(change: ItemChange, b: _Builder) -> Plan:
    c, o = change.side, other_side(change.side)
    link = b.link
    projection = _synced(b.rules, link.kind, change.projection)
    b.link = link.with_side(c, link.side(c).saw(change.version, projection, b.now))
    if b.rules.policy(link.kind).edit_vs_delete == "delete_wins":
        b.conflict("_delete", "delete_wins", *_pair(c, projection, None), winner=o, origin=c)
        if b.link.side(c).item_id is not None:
            b.command(c, "delete", {})
        b.link = replace(b.link, tombstone=True)
        return b.done()
    b.conflict("_delete", "edit_wins", *_pair(c, projection, None), winner=c, origin=c)
    _recreate(b, o, c)
    return b.done()


def _winner(policy: ConflictPolicy, c: Side, c_at: str | None, o_at: str | None) -> Side | None:
    if policy == "manual":
        return None
    if policy == "crm_wins":
        return "crm"
    if policy == "outlook_wins":
        return "outlook"
    return c if (c_at or "") >= (o_at or "") else other_side(c)


def _merge(
    b: _Builder, c: Side, projection: Projection, observed_at: str, *, seen_version: str | None
) -> Plan:
    link = b.link
    o = other_side(c)
    kind = link.kind
    rules = b.rules
    base = dict(link.base)
    pending_c = {k: v for p in link.pending_to(c) for k, v in p.fields.items()}
    pending_o = {k: v for p in link.pending_to(o) for k, v in p.fields.items()}
    own_o = link.side(o).seen  # o's own observed values; writes in flight there are ours
    policy = rules.policy(kind).conflict_policy
    to_o: Projection = {}
    to_c: Projection = {}
    for name in sorted(set(projection) | set(own_o)):
        if rules.direction(kind, name) == "none":
            continue
        b_val = base.get(name)
        c_val = projection.get(name, link.side(c).seen.get(name, b_val))
        o_val = own_o.get(name, b_val)
        c_changed = c_val != b_val and pending_c.get(name, _MISSING) != c_val
        o_changed = o_val != b_val
        if c_changed and not o_changed:
            if rules.flows(kind, name, c) and pending_o.get(name, _MISSING) != c_val:
                to_o[name] = c_val
        elif o_changed and not c_changed:
            if rules.flows(kind, name, o) and pending_c.get(name, _MISSING) != o_val:
                to_c[name] = o_val
        elif c_changed and o_changed:
            if c_val == o_val:
                base[name] = c_val
                continue
            winner = _winner(policy, c, observed_at, link.side(o).seen_at)
            if winner is not None and not rules.flows(kind, name, winner):
                loser = other_side(winner)
                winner = loser if rules.flows(kind, name, loser) else None
            b.conflict(name, policy, *_pair(c, c_val, o_val), winner=winner, origin=c)
            if winner == c:
                to_o[name] = c_val
            elif winner == o and pending_c.get(name, _MISSING) != o_val:
                to_c[name] = o_val
    seen = link.side(c)
    if seen_version is not None:
        seen = seen.saw(seen_version, {**seen.seen, **projection}, observed_at)
    b.link = replace(link.with_side(c, seen), base=base)
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
        b.event("com.dynasync.item.synced.v1", "upsert", other_side(t), written)
        if pending.action == "send":
            b.command("crm", "mark_sent", {})
        _reconcile(b)
        return b.done()
    if outcome.status == "conflict":
        if pending.action != "delete" and side.version != pending.if_match:
            _reconcile(b)
        elif pending.action == "delete":
            b.link = replace(b.link, tombstone=False)
        return b.done()
    if outcome.status == "not_found":
        b.link = link.with_side(t, replace(side, deleted=True))
        if rules.policy(link.kind).edit_vs_delete == "edit_wins" and link.kind != "email":
            b.conflict("_delete", "edit_wins", None, None, winner=other_side(t), origin=t)
            _recreate(b, t, other_side(t))
        else:
            b.link = replace(b.link, unlinked=True)
            b.event("com.dynasync.item.unlinked.v1", "delete", t, {})
        return b.done()
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
