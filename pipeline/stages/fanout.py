"""The fan-out stage: ``crm.raw`` (keyed by record id) → ``changes.crm`` (keyed by mailbox id).

One stream processor routes each record with :func:`pipeline.fanout_rules.fan_out` to the
mailboxes of its organisation whose filters hold it, or held it (a ``left_filter`` copy). Who
holds a record lives in the ``fanout-members`` table, keyed like ``crm.raw`` (the record id),
so its changelog is co-partitioned with the source. A record's offset is committed only once
every copy is acknowledged by the broker (:mod:`pipeline.stages.stream`); a record
that cannot be decoded or routed goes to ``dlq`` with the error and its origin, and processing
continues.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol

import orjson

from connectors.kafka_clients import KafkaClients
from pipeline.app import App, Stage, WindowSize
from pipeline.fanout_rules import FanOut, MailboxFilters, Parser, Routing, fan_out, parse_for_table
from pipeline.rules.fetchxml import FetchQuery
from pipeline.settings import Settings
from pipeline.stages.publish import Publisher
from pipeline.stages.stream import (
    LINGER_MS,
    ChangelogTable,
    Record,
    StreamProcessor,
)
from pipeline.topics import CHANGES_CRM, CRM_RAW, topic_name
from schemas.codec import dumps, loads
from schemas.models import FilterRecord, ItemChange, Mailbox

log = logging.getLogger(__name__)

#: Most distinct FetchXML texts kept parsed per stage.
PARSE_CACHE_SIZE = 4096


class MailboxDirectory(Protocol):
    """The mailboxes of an organisation and their filters (production: the config store)."""

    def mailboxes_for(self, org_id: str) -> Sequence[Mailbox]: ...

    def filters_for(self, mailbox_id: str, table: str) -> Sequence[FilterRecord]: ...

    def routing(self, org_id: str, table: str, parse: Parser) -> Routing:
        """The organisation's mailboxes and filters for ``table``, indexed for routing."""
        ...


@dataclass(frozen=True, slots=True)
class StaticDirectory:
    """A fixed directory. A mailbox's filters are its own plus its organisation's templates
    (``mailbox_id`` None). Indexed once, so routing a change to an organisation of M mailboxes
    costs O(M), not O(M²)."""

    mailboxes: Sequence[Mailbox]
    filters: Sequence[FilterRecord] = field(default_factory=tuple)
    _by_org: dict[str, list[Mailbox]] = field(init=False, repr=False, compare=False)
    _org_of: dict[str, str] = field(init=False, repr=False, compare=False)
    _own: dict[tuple[str, str], list[FilterRecord]] = field(init=False, repr=False, compare=False)
    _templates: dict[tuple[str, str], list[FilterRecord]] = field(
        init=False, repr=False, compare=False
    )
    _rank: dict[int, int] = field(init=False, repr=False, compare=False)
    _routing: dict[tuple[str, str], Routing] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_org: dict[str, list[Mailbox]] = {}
        org_of: dict[str, str] = {}
        for m in self.mailboxes:
            by_org.setdefault(m.org_id, []).append(m)
            org_of.setdefault(m.mailbox_id, m.org_id)
        own: dict[tuple[str, str], list[FilterRecord]] = {}
        templates: dict[tuple[str, str], list[FilterRecord]] = {}
        for f in self.filters:
            if f.mailbox_id is not None:
                own.setdefault((f.mailbox_id, f.table), []).append(f)
            else:
                templates.setdefault((f.org_id, f.table), []).append(f)
        object.__setattr__(self, "_by_org", by_org)
        object.__setattr__(self, "_org_of", org_of)
        object.__setattr__(self, "_own", own)
        object.__setattr__(self, "_templates", templates)
        object.__setattr__(self, "_rank", {id(f): i for i, f in enumerate(self.filters)})
        object.__setattr__(self, "_routing", {})

    def mailboxes_for(self, org_id: str) -> Sequence[Mailbox]:
        return list(self._by_org.get(org_id, ()))

    def filters_for(self, mailbox_id: str, table: str) -> Sequence[FilterRecord]:
        org = self._org_of.get(mailbox_id)
        found = list(self._own.get((mailbox_id, table), ()))
        if org is not None:
            found += self._templates.get((org, table), ())
        if len(found) > 1:  # in the order the filters were given
            found.sort(key=lambda f: self._rank[id(f)])
        return found

    def routing(self, org_id: str, table: str, parse: Parser) -> Routing:
        """Built on first use per (organisation, table) and kept: the directory is fixed."""
        key = (org_id, table)
        found = self._routing.get(key)
        if found is None:
            targets = [
                MailboxFilters(m, tuple(self.filters_for(m.mailbox_id, table)))
                for m in self.mailboxes_for(org_id)
            ]
            found = self._routing[key] = Routing.build(targets, table, parse)
        return found


@dataclass(frozen=True, slots=True)
class Membership:
    """Who holds a record (``members``), who held it before the change ``by`` that last changed
    that (``before``): a change read again after a crash is routed from ``before`` again, so
    its left-filter copies and deletes go out even if the new membership was already saved."""

    members: frozenset[str] = frozenset()
    before: frozenset[str] = frozenset()
    by: str = ""

    def previous_for(self, change_id: str) -> frozenset[str]:
        """The membership ``change_id`` is routed from."""
        return self.before if change_id == self.by else self.members


def encode_members(membership: Membership) -> bytes:
    """The table value of a membership."""
    return orjson.dumps(
        {
            "members": sorted(membership.members),
            "before": sorted(membership.before),
            "by": membership.by,
        }
    )


def _ids(value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(m, str) and m for m in value):
        raise ValueError("membership is not a list of mailbox ids")
    return frozenset(value)


def decode_members(raw: bytes | None) -> Membership:
    """A membership from its table value (a bare list: members only); garbage raises
    ``ValueError``."""
    if raw is None:
        return Membership()
    value = orjson.loads(raw)
    if isinstance(value, list):
        return Membership(_ids(value))
    if not isinstance(value, dict) or not isinstance(value.get("by"), str):
        raise ValueError("membership is not a list of mailbox ids or a membership record")
    return Membership(_ids(value.get("members")), _ids(value.get("before")), value["by"])


def route(
    change: ItemChange,
    directory: MailboxDirectory,
    previous: frozenset[str],
    now: datetime,
    parse: Callable[[str, str], FetchQuery] = parse_for_table,
) -> FanOut:
    """Route ``change`` with the mailboxes and filters ``directory`` holds for it, evaluating
    only the mailboxes its :class:`Routing` says may hold it."""
    routing = directory.routing(change.org_id, change.table or "", parse)
    targets = routing.candidates(change.attributes, previous)
    return fan_out(change, targets, previous, now, parse)


def fanout_stage(
    mailboxes: MailboxDirectory,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    window: WindowSize | None = None,
) -> Stage:
    """The fan-out stage over ``mailboxes``; ``clock`` (aware) feeds the date operators."""
    size = window or WindowSize()

    def register(app: App, settings: Settings) -> None:
        app.run("fanout", lambda: _processor(settings))

    def _processor(settings: Settings) -> StreamProcessor:
        members = ChangelogTable("fanout-members")
        kafka = settings.kafka
        producer = KafkaClients(kafka).producer(acks="all", linger_ms=LINGER_MS)
        publisher = Publisher.over(producer, settings)
        sink = topic_name(CHANGES_CRM, kafka)
        parse = lru_cache(maxsize=PARSE_CACHE_SIZE)(parse_for_table)

        async def handle(event: Record, sends: list[asyncio.Future[Any]]) -> None:
            change = loads(ItemChange, event.value or b"", check=False)
            key = event.key if isinstance(event.key, bytes) else change.item_id.encode()
            stored = decode_members(members.get(key))
            previous = stored.previous_for(change.change_id)
            result = route(change, mailboxes, previous, clock(), parse)
            for problem in result.problems:
                log.warning("fan-out of %s: %s", change.item_id, problem)
            for delivery in result.deliveries:
                mailbox_key = delivery.mailbox_id.encode()
                sends.append(await publisher.send(sink, mailbox_key, dumps(delivery.change)))
            if result.members != previous:
                after = Membership(frozenset(result.members), previous, change.change_id)
                if after != stored:
                    members[key] = encode_members(after)

        return StreamProcessor(
            settings,
            name="fanout",
            sources=[topic_name(CRM_RAW, kafka)],
            tables=[members],
            handler=handle,
            producer=producer,
            max_batch=size.events,
        )

    return register


__all__ = [
    "MailboxDirectory",
    "Membership",
    "StaticDirectory",
    "decode_members",
    "encode_members",
    "fanout_stage",
    "route",
]
