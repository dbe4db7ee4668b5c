"""The sync engine stage: ``changes.outlook`` + ``changes.crm`` + ``outcomes`` → planner →
commands, events, conflicts; link state in changelog tables.

One :class:`pipeline.stages.stream.StreamProcessor` consumes the three mailbox-keyed topics, so
one mailbox's records are handled strictly in order and an offset is never committed past a
record whose effects are not durable. Link state lives in tables whose keys start with the
mailbox id and which are only written while handling that mailbox's records, so their
changelog partitions follow the mailbox's partition:

- ``links``: ``<mailbox>|<correlation id>`` → :func:`pipeline.state.encode_link` bytes
- ``link-index``: ``<mailbox>|<side>|<item id>`` → correlation id

- ``guard``: ``<mailbox>`` → :class:`pipeline.stages.guard.GuardState` (live linked pairs
  per side, deletes in the window, pause)

A record that cannot be decoded, or whose planning raises, goes to ``dlq`` with the error and
its origin (topic, partition, offset) and processing continues. A change of a mailbox without
rules is parked there with reason ``refused``; while a mailbox is paused by the mass-delete
guard its changes are parked with reason ``paused`` (an alert goes out when the pause starts)
until a ``resume`` control record (:func:`pipeline.stages.guard.resume_mailbox`) arrives.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from connectors.dataverse.ids import crm_row_id
from connectors.kafka_clients import KafkaClients
from pipeline.app import App, Stage, WindowSize
from pipeline.crm_facts import Directories, with_crm_facts
from pipeline.plan import (
    DEFAULT_TABLE,
    Action,
    Alert,
    MailboxRules,
    Plan,
    apply_outcome,
    plan,
    resolve_conflict,
)
from pipeline.reconcile import plan_link
from pipeline.settings import Settings
from pipeline.stages.guard import (
    CONTROL_HEADER,
    PAUSE_HEADER,
    GuardPolicy,
    GuardState,
    check,
    resume,
)
from pipeline.stages.publish import Publisher, utc_now
from pipeline.stages.stream import (
    LINGER_MS,
    ChangelogTable,
    KeyValue,
    Record,
    StreamProcessor,
)
from pipeline.state import (
    LinkState,
    correlation_id_for,
    decode_link,
    encode_link,
    index_key,
    link_key,
)
from pipeline.topics import CHANGES_CRM, CHANGES_OUTLOOK, OUTCOMES, topic_name
from schemas.codec import loads
from schemas.conflicts import RESOLVE_CONTROL, decode_resolution
from schemas.models import ItemChange, WriteOutcome
from schemas.resync import LINK_CONTROL, decode_proposal
from schemas.types import Side

log = logging.getLogger(__name__)


class RulesSource(Protocol):
    """Where the engine gets a mailbox's rules (None: unknown or not enabled)."""

    def rules_for(self, mailbox_id: str) -> MailboxRules | None: ...


@dataclass(frozen=True, slots=True)
class StaticRules:
    """A fixed set of mailbox rules (tests, single-tenant runs)."""

    rules: Mapping[str, MailboxRules]

    def rules_for(self, mailbox_id: str) -> MailboxRules | None:
        return self.rules.get(mailbox_id)


class UnknownMailboxError(LookupError):
    """A change for a mailbox the engine has no rules for."""


@dataclass
class LinkStore:
    """Typed access to the link tables of one app."""

    links: KeyValue
    index: KeyValue

    def get(self, mailbox_id: str, correlation_id: str) -> LinkState | None:
        raw = self.links.get(link_key(mailbox_id, correlation_id).encode())
        return decode_link(raw) if raw is not None else None

    def find(self, change: ItemChange, mailbox_id: str) -> LinkState | None:
        """The link of ``change``'s item: by the index, else the link its first sight on this
        side created (whose id is derived, so it needs no index entry), else by the
        correlation stamp."""
        side, item_id = change.side, change.item_id
        corr = self.index.get(index_key(mailbox_id, side, item_id).encode())
        if corr is not None:
            return self.get(mailbox_id, bytes(corr).decode())
        derived = self.get(mailbox_id, correlation_id_for(mailbox_id, side, item_id))
        if derived is not None and derived.side(side).item_id == item_id:
            return derived
        if change.correlation_id:
            return self.get(mailbox_id, change.correlation_id)
        return None

    def put(self, link: LinkState) -> None:
        """Store ``link``, and index its items unless :meth:`find` derives the link already.

        A CRM create in flight is indexed under the row id the Dataverse writer gives it
        (deterministic: :func:`connectors.dataverse.ids.crm_row_id`), so the row read back by
        change tracking before the create's outcome is planned is known as ours (an Outlook
        item is known by its correlation stamp): it was taken for a new CRM record and
        created in Outlook a second time."""
        corr = link.correlation_id.encode()
        self.links[link_key(link.mailbox_id, link.correlation_id).encode()] = encode_link(link)
        if link.crm.item_id is None and any(
            p.target == "crm" and p.action == "create" for p in link.pending
        ):
            table = link.crm_table or DEFAULT_TABLE[link.kind]
            row = crm_row_id(link.org_id, link.correlation_id, table).lower()
            key = index_key(link.mailbox_id, "crm", row).encode()
            if self.index.get(key) != corr:
                self.index[key] = corr
        for side in ("outlook", "crm"):
            item_id = link.side(side).item_id
            if item_id:
                key = index_key(link.mailbox_id, side, item_id).encode()
                indexed = self.index.get(key)
                if indexed == corr:
                    continue
                derived = correlation_id_for(link.mailbox_id, side, item_id)
                if indexed is None and link.correlation_id == derived:
                    continue
                self.index[key] = corr


def _live(link: LinkState | None, side: Side) -> int:
    if link is None or link.unlinked or link.tombstone:
        return 0
    state = link.side(side)
    return int(state.item_id is not None and not state.deleted)


def _header(record: Record, name: str) -> bytes | None:
    headers = record.headers or ()
    items = headers.items() if isinstance(headers, Mapping) else headers
    return next((bytes(v) for k, v in items if k == name and v is not None), None)


def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class Parked:
    """The record itself goes to ``dlq``: ``reason`` (``refused``, ``paused``), ``error``,
    and extra ``headers``."""

    reason: str
    error: str
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Handled:
    """What handling one record asks for, in order: send ``actions`` (commands stamped with
    the record's time if ``stamped``), park the record if ``parked``, then ``save`` the state
    it changed (after the sends, so state never runs ahead of what was sent)."""

    actions: tuple[Action, ...] = ()
    parked: Parked | None = None
    stamped: bool = False
    save: Callable[[], None] = _nothing
    plan: Plan | None = None
    """The planner's result behind ``actions`` (None for parked and control records)."""


class Engine:
    """The sync engine over its three stores (links, link index, mass-delete guards): a
    change, a write outcome or a control record of one mailbox in, what to send and what to
    save out. It knows no Kafka: the engine stage drives it over changelog tables, and the
    unit simulation (``tests/unit/plan/sim.py``) over dicts."""

    def __init__(
        self,
        rules: RulesSource,
        links: KeyValue,
        index: KeyValue,
        guards: KeyValue,
        *,
        clock: Callable[[], str] = utc_now,
        guard: GuardPolicy | None = None,
        wall: Callable[[], float] = time.time,
        directories: Directories | None = None,
    ) -> None:
        self.rules = rules
        self.store = LinkStore(links, index)
        self._guards = guards
        self._clock = clock
        self._policy = guard or GuardPolicy()
        self._wall = wall
        self._directories = directories

    def guard_state(self, mailbox_id: str) -> GuardState:
        """The mass-delete guard of ``mailbox_id``."""
        return GuardState.decode(self._guards.get(mailbox_id.encode()))

    def _save_guard(self, mailbox_id: str, old: GuardState, new: GuardState) -> None:
        if new != old:
            self._guards[mailbox_id.encode()] = new.encode()

    def _store_plan(self, mailbox_id: str, old: LinkState | None, result: Plan) -> None:
        if result.link is None:
            return
        self.store.put(result.link)
        delta = {s: _live(result.link, s) - _live(old, s) for s in ("outlook", "crm")}
        if any(delta.values()):
            state = self.guard_state(mailbox_id)
            self._save_guard(mailbox_id, state, state.count_links(delta["outlook"], delta["crm"]))

    def _planned(
        self, mailbox_id: str, old: LinkState | None, result: Plan, *, stamped: bool = False
    ) -> Handled:
        return Handled(
            tuple(result.actions),
            stamped=stamped,
            save=lambda: self._store_plan(mailbox_id, old, result),
            plan=result,
        )

    def outcome(self, outcome: WriteOutcome) -> Handled:
        """A writer's outcome: the link moves on (pending done, ids learnt, events)."""
        mbx = _rules(self.rules, outcome.mailbox_id)
        link = self.store.get(outcome.mailbox_id, outcome.correlation_id)
        if link is None:
            return Handled()
        result = apply_outcome(link, outcome, mbx, self._clock())
        _log_drop(f"outcome of {outcome.command_id}", result)
        return self._planned(outcome.mailbox_id, link, result)

    async def change(self, change: ItemChange, mailbox_id: str) -> Handled:
        """A change read on one side: refused (unknown mailbox), parked (mailbox paused by the
        mass-delete guard, an alert when the pause starts) or planned."""
        found = self.rules.rules_for(mailbox_id)
        if found is None:
            return Handled(parked=Parked("refused", _refusal(self.rules, mailbox_id)))
        link = self.store.find(change, mailbox_id)
        state = self.guard_state(mailbox_id)
        is_delete = change.op == "delete" and _live(link, change.side) == 1
        linked = state.linked(change.side) + state.deletes(change.side)
        policy = self._policy
        new, verdict = check(policy, state, change.side, is_delete, linked, self._wall())
        if verdict != "apply":
            alerts: tuple[Action, ...] = ()
            if verdict == "pause":
                new = replace(new, pause_id=change.change_id)
                reason = (
                    f"mass delete on {change.side}: {new.deletes(change.side)} of {linked} "
                    f"linked items deleted within {policy.window_s:g}s; mailbox paused, "
                    "changes parked on dlq until resumed"
                )
                alerts = (Alert(mailbox_id, reason, change.change_id),)
            pause = ((PAUSE_HEADER, new.pause_id.encode()),)
            return Handled(
                alerts,
                parked=Parked("paused", "mailbox paused", pause),
                save=lambda: self._save_guard(mailbox_id, state, new),
            )
        self._save_guard(mailbox_id, state, new)
        if self._directories is not None:
            found = await with_crm_facts(change, link, found, self._directories)
        result = plan(change, link, found, self._clock())
        _log_drop(f"{change.change_id} ({change.kind})", result)
        return self._planned(mailbox_id, link, result, stamped=True)

    def control(self, command: bytes, mailbox_id: str, value: bytes) -> Handled:
        """An operator's control record: link a pair (resync), resolve a conflict, resume a
        paused mailbox. Anything else raises ValueError."""
        if command == LINK_CONTROL:
            proposal = decode_proposal(value)
            if proposal.mailbox_id != mailbox_id:
                raise ValueError(f"link record of {proposal.mailbox_id!r} keyed {mailbox_id!r}")
            old_o = self.store.find(proposal.outlook, mailbox_id)
            old_c = self.store.find(proposal.crm, mailbox_id)
            result = plan_link(
                proposal, old_o, old_c, self.rules.rules_for(mailbox_id), self._clock()
            )
            _log_drop(f"link {proposal.key}", result)
            return self._planned(mailbox_id, None, result)
        if command == RESOLVE_CONTROL:
            resolution = decode_resolution(value)
            if resolution.mailbox_id != mailbox_id:
                raise ValueError(f"resolution of {resolution.mailbox_id!r} keyed {mailbox_id!r}")
            held = self.store.get(mailbox_id, resolution.correlation_id)
            found = self.rules.rules_for(mailbox_id)
            if held is None or found is None:
                raise ValueError(
                    f"resolution {resolution.resolution_id}: no link or rules for "
                    f"{mailbox_id!r}/{resolution.correlation_id}"
                )
            return self._planned(
                mailbox_id, held, resolve_conflict(held, resolution, found, self._clock())
            )
        if command != b"resume" or not mailbox_id:
            raise ValueError(f"unknown control record {command!r} for {mailbox_id!r}")
        state = self.guard_state(mailbox_id)
        if state.paused:
            log.warning("mailbox %s resumed by an operator", mailbox_id)
        self._save_guard(mailbox_id, state, resume(state))
        return Handled()


def engine_stage(
    rules: RulesSource,
    *,
    clock: Callable[[], str] = utc_now,
    guard: GuardPolicy | None = None,
    wall: Callable[[], float] = time.time,
    directories: Directories | None = None,
    window: WindowSize | None = None,
) -> Stage:
    """The engine stage: an :class:`Engine` over changelog tables, driven record by record by
    a stream processor, planning with the mailbox rules from ``rules`` and pausing a mailbox
    whose side reports a mass delete (``guard``; default :class:`GuardPolicy`). With
    ``directories``, a first-seen Outlook email is planned with its CRM facts (replied-to CRM
    email, tracking token, address owners) from its organisation's directory."""
    size = window or WindowSize()

    def register(app: App, settings: Settings) -> None:
        app.run("engine", lambda: _processor(settings))

    def _processor(settings: Settings) -> StreamProcessor:
        links = ChangelogTable("links")
        index = ChangelogTable("link-index")
        guards = ChangelogTable("guard")
        engine = Engine(
            rules,
            links,
            index,
            guards,
            clock=clock,
            guard=guard,
            wall=wall,
            directories=directories,
        )
        kafka = settings.kafka
        producer = KafkaClients(kafka).producer(acks="all", linger_ms=LINGER_MS)
        publisher = Publisher.over(producer, settings)
        outcomes_name = topic_name(OUTCOMES, kafka)

        async def handle(event: Record, sends: list[asyncio.Future[Any]]) -> None:
            raw = event.value or b""
            key = (event.key or b"").decode()
            control = _header(event, CONTROL_HEADER)
            if event.topic == outcomes_name:
                done = engine.outcome(loads(WriteOutcome, raw, check=False))
            elif control is not None:
                done = engine.control(control, key, raw)
            else:
                change = loads(ItemChange, raw, check=False)
                done = await engine.change(change, change.mailbox_id or key)
            stamp = event.timestamp if done.stamped and isinstance(event.timestamp, int) else None
            sends += await publisher.emit(done.actions, source_ms=stamp)
            if done.parked is not None:
                parked = done.parked
                sends.append(
                    await publisher.poison(
                        event, parked.error, reason=parked.reason, extra=parked.headers
                    )
                )
            done.save()

        return StreamProcessor(
            settings,
            name="engine",
            sources=[
                topic_name(CHANGES_OUTLOOK, kafka),
                topic_name(CHANGES_CRM, kafka),
                outcomes_name,
            ],
            tables=[links, index, guards],
            handler=handle,
            producer=producer,
            max_batch=size.events,
        )

    return register


@runtime_checkable
class Explains(Protocol):
    """A rules source that can say why a mailbox has no rules."""

    def refusal(self, mailbox_id: str) -> str: ...


def _refusal(rules: RulesSource, mailbox_id: str) -> str:
    if isinstance(rules, Explains):
        return rules.refusal(mailbox_id) or f"no rules for mailbox {mailbox_id!r}"
    return f"no rules for mailbox {mailbox_id!r}"


def _rules(rules: RulesSource, mailbox_id: str) -> MailboxRules:
    found = rules.rules_for(mailbox_id)
    if found is None:
        raise UnknownMailboxError(f"no rules for mailbox {mailbox_id!r}")
    return found


def _log_drop(what: str, result: Plan) -> None:
    if result.dropped is not None and log.isEnabledFor(logging.DEBUG):
        log.debug("%s dropped: %s", what, result.dropped)
