"""Runs a table's change reader and publishes to ``crm.raw``: each batch is acknowledged by the
broker, then its rows' versions are stored in the seen-set, and only then the cursor.

The seen-set (``seen:<stream>:<row id>`` → versionnumber, in the compacted cursors topic) makes
the stream exactly-once per version in the normal case and after a restart (a row whose
version was already published is not published again), and lets a full sync after an expired
token be reconciled: unchanged rows are skipped, rows no longer present are real deletes, and
nothing that still exists is reported deleted. A kill between the publish and the seen-set write
repeats that batch's records (same change ids); nothing is ever lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from connectors.dataverse.ids import change_id
from connectors.dataverse.reader import DataverseChangeSource
from connectors.errors import ConnectorError, CursorExpiredError
from connectors.pacing import Pacer
from connectors.store import CursorStore, Publisher
from schemas.codec import dumps
from schemas.models import ItemChange

log = logging.getLogger(__name__)


def seen_prefix(stream: str) -> str:
    """The cursors-topic key prefix of a stream's seen-set."""
    return f"seen:{stream}:"


@dataclass(slots=True)
class RoundResult:
    """What one read round of a table did."""

    stream_id: str
    published: int = 0
    skipped: int = 0
    full_sync: bool = False
    reconciled_deletes: int = 0
    published_ids: list[str] = field(default_factory=list)


class CrmTableReader:
    """One (organisation, table) reader: read from the stored cursor, publish, store."""

    def __init__(
        self,
        source: DataverseChangeSource,
        publisher: Publisher,
        cursors: CursorStore,
        *,
        raw_topic: str,
        clock: Callable[[], str] | None = None,
    ) -> None:
        self.source = source
        self._publisher = publisher
        self._cursors = cursors
        self._topic = raw_topic
        self._clock = clock or (lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        self.wait_s = 0.0
        """The wait after the last round of :meth:`run`."""

    @property
    def cursor_key(self) -> str:
        """The cursors-topic key of this table's deltaLink (``crm:<org>:<table>``)."""
        return self.source.stream_id

    async def run_once(self) -> RoundResult:
        """One round from the stored cursor; a full sync if there is none or it expired."""
        cursor = self._cursors.get(self.cursor_key)
        try:
            return await self._round(cursor)
        except CursorExpiredError:
            if cursor is None:
                raise
            log.warning("%s: change token expired; full sync", self.cursor_key)
            return await self._round(None)

    async def resync(self) -> RoundResult:
        """A full read that publishes every row again, seen or not (a mailbox joined: rows
        it should hold already exist). Downstream drops what it already has by version."""
        return await self._round(None, republish=True)

    async def run(self, pacer: Pacer, *, stop: asyncio.Event | None = None) -> None:
        """Rounds until ``stop`` is set, each after the wait ``pacer`` gives: its floor after a
        round that published rows, growing to its ceiling while rounds publish nothing (a
        failed round counts as one that published nothing, so failures back off too)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            published = 0
            try:
                published = (await self.run_once()).published
            except ConnectorError as exc:
                if not exc.retriable:
                    log.error("%s: round failed: %s", self.cursor_key, exc)
                else:
                    log.warning("%s: round failed, will retry: %s", self.cursor_key, exc)
            self.wait_s = pacer.next_wait(published > 0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.wait_s)

    def _seen(self) -> dict[str, str]:
        prefix = seen_prefix(self.cursor_key)
        return {k[len(prefix) :]: v for k, v in self._cursors.items(prefix)}

    async def _round(self, cursor: str | None, *, republish: bool = False) -> RoundResult:
        result = RoundResult(self.cursor_key, full_sync=cursor is None)
        seen = self._seen()
        present: set[str] = set()
        prefix = seen_prefix(self.cursor_key)
        async for batch in self.source.read(cursor):
            result.full_sync = result.full_sync or batch.full_sync
            fresh: list[ItemChange] = []
            for change in batch.changes:
                if change.op == "upsert":
                    present.add(change.item_id)
                    if not republish and seen.get(change.item_id) == change.version:
                        result.skipped += 1
                        continue
                elif change.item_id not in seen:
                    result.skipped += 1  # never published: nobody downstream knows the row
                    continue
                fresh.append(change)
            if batch.cursor is not None and result.full_sync:
                gone = sorted(set(seen) - present - {c.item_id for c in fresh})
                fresh.extend(self._deleted(row_id) for row_id in gone)
                result.reconciled_deletes = len(gone)
            await self._publish(fresh, result)
            await asyncio.gather(
                *(
                    self._cursors.put(prefix + c.item_id, c.version if c.op == "upsert" else None)
                    for c in fresh
                )
            )
            for c in fresh:
                if c.op == "upsert":
                    seen[c.item_id] = c.version
                else:
                    seen.pop(c.item_id, None)
            if batch.cursor is not None:
                await self._cursors.put(self.cursor_key, batch.cursor)
        return result

    async def _publish(self, changes: list[ItemChange], result: RoundResult) -> None:
        if not changes:
            return
        await asyncio.gather(
            *(self._publisher.send(self._topic, c.item_id, dumps(c)) for c in changes)
        )
        result.published += len(changes)
        result.published_ids.extend(c.item_id for c in changes)

    def _deleted(self, row_id: str) -> ItemChange:
        src = self.source
        return ItemChange(
            change_id=change_id(src.table, row_id, None),
            side="crm",
            org_id=src.org_id,
            kind=src.kind,
            op="delete",
            item_id=row_id,
            version="",
            observed_at=self._clock(),
            table=src.table,
            origin="full_sync",
        )
