"""The sync engine stage: ``changes.outlook`` + ``changes.crm`` + ``outcomes`` → planner →
commands, events, conflicts; link state in Faust tables.

One agent (concurrency 1) consumes the three mailbox-keyed topics, so one mailbox's events are
handled strictly in order and an offset is never committed past an event still in flight. Link
state lives in two tables whose keys start with the mailbox id and which are only written while
handling that mailbox's events, so their changelog partitions follow the mailbox's partition:

- ``links``: ``<mailbox>|<correlation id>`` → :func:`pipeline.state.encode_link` bytes
- ``link-index``: ``<mailbox>|<side>|<item id>`` → correlation id

A record that cannot be decoded, or whose planning raises, goes to ``dlq`` with the error and
its origin (topic, partition, offset) and processing continues.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import faust
from faust.types import TableT

from pipeline.app import Stage
from pipeline.plan import MailboxRules, Plan, apply_outcome, plan
from pipeline.settings import Settings
from pipeline.stages.publish import Publisher, utc_now
from pipeline.state import LinkState, decode_link, encode_link, index_key, link_key
from pipeline.topics import CHANGES_CRM, CHANGES_OUTLOOK, OUTCOMES, topic_name
from schemas.codec import loads
from schemas.models import ItemChange, WriteOutcome

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

    links: TableT[bytes, bytes]
    index: TableT[bytes, bytes]

    def get(self, mailbox_id: str, correlation_id: str) -> LinkState | None:
        raw = self.links.get(link_key(mailbox_id, correlation_id).encode())
        return decode_link(raw) if raw is not None else None

    def find(self, change: ItemChange, mailbox_id: str) -> LinkState | None:
        """The link of ``change``'s item: by the index, else by the correlation stamp."""
        corr = self.index.get(index_key(mailbox_id, change.side, change.item_id).encode())
        if corr is not None:
            return self.get(mailbox_id, bytes(corr).decode())
        if change.correlation_id:
            return self.get(mailbox_id, change.correlation_id)
        return None

    def put(self, link: LinkState) -> None:
        self.links[link_key(link.mailbox_id, link.correlation_id).encode()] = encode_link(link)
        for side in ("outlook", "crm"):
            item_id = link.side(side).item_id
            if item_id:
                key = index_key(link.mailbox_id, side, item_id).encode()
                if self.index.get(key) != link.correlation_id.encode():
                    self.index[key] = link.correlation_id.encode()


def engine_stage(rules: RulesSource, *, clock: Callable[[], str] = utc_now) -> Stage:
    """The engine stage, planning with the mailbox rules from ``rules``."""

    def register(app: faust.App, settings: Settings) -> None:
        store = LinkStore(
            app.Table("links", default=None, key_type=bytes, value_type=bytes),
            app.Table("link-index", default=None, key_type=bytes, value_type=bytes),
        )
        publisher = Publisher.on(app, settings)
        outcomes_name = topic_name(OUTCOMES, settings.kafka)
        source = app.topic(
            topic_name(CHANGES_OUTLOOK, settings.kafka),
            topic_name(CHANGES_CRM, settings.kafka),
            outcomes_name,
            key_type=bytes,
            value_type=bytes,
        )

        def handle(event: faust.EventT[bytes]) -> Plan:
            raw = event.value
            if event.message.topic == outcomes_name:
                outcome = loads(WriteOutcome, raw, check=False)
                mbx = _rules(rules, outcome.mailbox_id)
                link = store.get(outcome.mailbox_id, outcome.correlation_id)
                if link is None:
                    return Plan(None)
                return apply_outcome(link, outcome, mbx, clock())
            change = loads(ItemChange, raw, check=False)
            mailbox_id = change.mailbox_id or (event.key or b"").decode()
            mbx = _rules(rules, mailbox_id)
            return plan(change, store.find(change, mailbox_id), mbx, clock())

        async def run(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
            async for event in stream.events():
                try:
                    result = handle(event)
                except Exception as exc:  # poison: park it, keep going
                    log.warning("poison record on %s: %s", event.message.topic, exc)
                    await publisher.poison(event, f"{type(exc).__name__}: {exc}")
                    yield None
                    continue
                await publisher.emit(result.actions)
                if result.link is not None:
                    store.put(result.link)
                yield None

        app.agent(source, name="engine", concurrency=1)(run)

    return register


def _rules(rules: RulesSource, mailbox_id: str) -> MailboxRules:
    found = rules.rules_for(mailbox_id)
    if found is None:
        raise UnknownMailboxError(f"no rules for mailbox {mailbox_id!r}")
    return found
