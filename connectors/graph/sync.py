"""The Outlook reader loop: per mailbox, coalesce notifications into one delta pass per
stream, publish every change to the changes topic keyed by mailbox (acknowledged), and only then
store the stream's deltaLink in the cursors topic. A kill at any point re-reads; it never loses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer

from connectors.errors import BadRequestError, ConnectorError, CursorExpiredError, NotFoundError
from connectors.graph.notifications import NotificationRecord, PayloadError, ResourceKind
from connectors.graph.reader import GraphDeltaSource
from connectors.store import CursorStore, Publisher
from schemas.codec import dumps
from schemas.types import Kind

log = logging.getLogger(__name__)

RESOURCE_TO_KIND: dict[ResourceKind, Kind] = {
    "messages": "email",
    "events": "appointment",
    "contacts": "contact",
}


def cursor_key(stream_id: str) -> str:
    """The cursors-topic key of one delta stream."""
    return f"delta:{stream_id}"


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one delta pass over a stream did."""

    stream_id: str
    published: int
    full_sync: bool


StreamsFor = Callable[[str], Awaitable[Sequence[GraphDeltaSource]]]
"""The delta sources of a mailbox (its synced folders, contacts, calendar window, To Do lists)."""


class OutlookReader:
    """Runs delta passes for mailboxes and publishes their changes. ``on_changes(mailbox)``
    is called after a notification-driven pass of the mailbox published changes (its user is
    active: a poller may want to look again soon). ``on_lifecycle(record)`` acts on a
    ``subscriptionRemoved`` or ``reauthorizationRequired`` notification (recreate, renew)
    before the passes run."""

    def __init__(
        self,
        streams_for: StreamsFor,
        publisher: Publisher,
        cursors: CursorStore,
        *,
        changes_topic: str,
        on_changes: Callable[[str], None] | None = None,
        on_lifecycle: Callable[[NotificationRecord], Awaitable[None]] | None = None,
    ) -> None:
        self._streams_for = streams_for
        self._on_lifecycle = on_lifecycle
        self._publisher = publisher
        self._cursors = cursors
        self._topic = changes_topic
        self._on_changes = on_changes
        self._locks: dict[str, asyncio.Lock] = {}
        self._missing: set[str] = set()

    async def sync_stream(self, source: GraphDeltaSource) -> PassResult:
        """One delta pass over ``source`` from its stored cursor; a full sync if the service
        says it expired (410) or refuses it (400: a token of a mailbox that was recreated).
        A stream that may be missing (a tracked folder) and is gone is skipped, with one
        warning while it stays gone."""
        try:
            result = await self._sync_stream(source)
        except NotFoundError as exc:
            if not source.stream.missing_ok:
                raise
            if source.stream_id not in self._missing:
                self._missing.add(source.stream_id)
                log.warning("%s: not found (%s); skipped while it is gone", source.stream_id, exc)
            return PassResult(source.stream_id, 0, False)
        self._missing.discard(source.stream_id)
        return result

    async def _sync_stream(self, source: GraphDeltaSource) -> PassResult:
        key = cursor_key(source.stream_id)
        cursor = self._cursors.get(key)
        try:
            return await self._pass(source, cursor)
        except (CursorExpiredError, BadRequestError) as exc:
            if cursor is None:
                raise
            log.warning("%s: delta cursor refused (%s); full resync", source.stream_id, exc)
            return await self._pass(source, None)

    async def _pass(self, source: GraphDeltaSource, cursor: str | None) -> PassResult:
        published = 0
        full = cursor is None
        mailbox = source.stream.mailbox_id
        async for batch in source.read(cursor):
            full = full or batch.full_sync
            if batch.changes:
                await asyncio.gather(
                    *(self._publisher.send(self._topic, mailbox, dumps(c)) for c in batch.changes)
                )
                published += len(batch.changes)
            if batch.cursor is not None:
                await self._cursors.put(cursor_key(source.stream_id), batch.cursor)
        return PassResult(source.stream_id, published, full)

    async def sync_mailbox(
        self, mailbox_id: str, kinds: Iterable[Kind] | None = None
    ) -> list[PassResult]:
        """One pass over every stream of ``mailbox_id`` (or only those of ``kinds``), in order."""
        wanted = None if kinds is None else set(kinds)
        lock = self._locks.setdefault(mailbox_id, asyncio.Lock())
        async with lock:
            results = []
            for source in await self._streams_for(mailbox_id):
                if wanted is None or source.stream.kind in wanted:
                    results.append(await self.sync_stream(source))
            return results

    async def handle(self, records: Iterable[NotificationRecord]) -> list[PassResult]:
        """Coalesce notifications: one pass per mailbox over the kinds they name.

        A ``missed`` lifecycle event asks for a pass over every stream of the mailbox. So does
        ``subscriptionRemoved``, once ``on_lifecycle`` has recreated the subscription: what
        changed while there was none must be read now. ``reauthorizationRequired`` only goes to
        ``on_lifecycle``.
        """
        wanted: dict[str, set[Kind] | None] = {}
        for rec in records:
            event = rec.lifecycle_event
            if event in ("subscriptionRemoved", "reauthorizationRequired"):
                if self._on_lifecycle is not None:
                    await self._on_lifecycle(rec)
                if event == "reauthorizationRequired":
                    continue
            if event is not None:
                wanted[rec.mailbox_id] = None
                continue
            kinds = wanted.setdefault(rec.mailbox_id, set())
            if kinds is not None:
                kinds.add(RESOURCE_TO_KIND[rec.resource_kind])
        passes = [self.sync_mailbox(m, k) for m, k in wanted.items()]
        out: list[PassResult] = []
        for mailbox, results in zip(wanted, await asyncio.gather(*passes), strict=True):
            out.extend(results)
            if self._on_changes is not None and any(r.published for r in results):
                self._on_changes(mailbox)
        return out

    async def consume(self, consumer: AIOKafkaConsumer, *, window_ms: int = 500) -> None:
        """Read notifications forever; coalesce what arrives within ``window_ms``, run the
        passes, and commit the notification offsets only after every pass succeeded."""
        while True:
            batch = await consumer.getmany(timeout_ms=window_ms, max_records=5000)
            records: list[NotificationRecord] = []
            for msgs in batch.values():
                for msg in msgs:
                    try:
                        records.append(NotificationRecord.from_json(msg.value or b""))
                    except PayloadError as exc:
                        log.error("skipping unreadable notification record: %s", exc)
            if not batch:
                continue
            while True:
                try:
                    await self.handle(records)
                    break
                except ConnectorError as exc:
                    if not exc.retriable:
                        log.error("delta pass failed permanently: %s", exc)
                        break
                    log.warning("delta pass failed, retrying: %s", exc)
                    await asyncio.sleep(1.0)
            await consumer.commit()
