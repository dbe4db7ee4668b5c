"""An in-memory side: the reference backend of the connector contract, and a fake for tests.

``MemorySide`` holds items as a service would (ids, versions, a change log); users edit it
out of band with ``put``/``remove``; ``MemorySource`` reads its change log from a cursor and
``MemorySink`` applies write commands with the same semantics the real writers must have
(idempotent creates by correlation id, If-Match, deletes).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace

from connectors.base import ChangeBatch, outcome_for, utc_now
from connectors.errors import CursorExpiredError
from schemas.models import ItemChange, OutcomeStatus, WriteCommand, WriteOutcome
from schemas.types import CrmTable, Kind, Projection, Side


@dataclass(frozen=True, slots=True)
class MemoryItem:
    """One stored item."""

    item_id: str
    kind: Kind
    version: int
    projection: Projection
    correlation_id: str | None = None
    table: CrmTable | None = None


@dataclass(slots=True)
class MemorySide:
    """The state of one side (one mailbox's Outlook, or one organisation's CRM)."""

    side: Side
    org_id: str = "org"
    items: dict[str, MemoryItem] = field(default_factory=dict)
    log: list[tuple[int, str, bool]] = field(default_factory=list)  # (seq, item id, deleted)
    oldest_cursor: int = 0
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _record(self, item_id: str, deleted: bool) -> int:
        seq = next(self._seq)
        self.log.append((seq, item_id, deleted))
        return seq

    def put(
        self,
        kind: Kind,
        projection: Projection,
        *,
        item_id: str | None = None,
        correlation_id: str | None = None,
        table: CrmTable | None = None,
    ) -> MemoryItem:
        """Create or replace-merge an item as a user would; bumps its version."""
        item_id = item_id or uuid.uuid4().hex
        old = self.items.get(item_id)
        if old is None:
            item = MemoryItem(item_id, kind, 1, dict(projection), correlation_id, table)
        else:
            merged = {**old.projection, **projection}
            item = replace(
                old,
                version=old.version + 1,
                projection=merged,
                correlation_id=correlation_id or old.correlation_id,
            )
        self.items[item_id] = item
        self._record(item_id, False)
        return item

    def remove(self, item_id: str) -> bool:
        """Delete an item; False if it did not exist."""
        if self.items.pop(item_id, None) is None:
            return False
        self._record(item_id, True)
        return True

    def by_correlation(self, correlation_id: str) -> MemoryItem | None:
        """The item stamped with ``correlation_id``, as the writers look it up before a create."""
        for item in self.items.values():
            if item.correlation_id == correlation_id:
                return item
        return None

    def expire_cursors(self) -> None:
        """Make every cursor handed out so far invalid (like an expired delta token)."""
        self.oldest_cursor = (self.log[-1][0] if self.log else 0) + 1


class MemorySource:
    """ChangeSource over one kind of a MemorySide. Cursor: ``mem:<seq>``."""

    def __init__(
        self, store: MemorySide, kind: Kind, *, mailbox_id: str | None, page_size: int = 50
    ) -> None:
        self._store = store
        self._kind = kind
        self._mailbox = mailbox_id
        self._page = page_size

    @property
    def stream_id(self) -> str:
        return f"memory:{self._store.side}:{self._mailbox}:{self._kind}"

    def _change(self, item_id: str, deleted: bool, full: bool) -> ItemChange | None:
        store = self._store
        item = store.items.get(item_id)
        if deleted or item is None:
            if deleted and item is None:
                return ItemChange(
                    change_id=f"{store.side}:{item_id}:deleted",
                    side=store.side,
                    org_id=store.org_id,
                    kind=self._kind,
                    op="delete",
                    item_id=item_id,
                    version="",
                    observed_at=utc_now(),
                    mailbox_id=self._mailbox,
                )
            return None
        if item.kind != self._kind:
            return None
        return ItemChange(
            change_id=f"{store.side}:{item.item_id}:{item.version}",
            side=store.side,
            org_id=store.org_id,
            kind=item.kind,
            op="upsert",
            item_id=item.item_id,
            version=str(item.version),
            observed_at=utc_now(),
            mailbox_id=self._mailbox,
            table=item.table,
            correlation_id=item.correlation_id,
            projection=dict(item.projection),
            origin="full_sync" if full else "delta",
        )

    async def read(self, cursor: str | None) -> AsyncIterator[ChangeBatch]:
        store = self._store
        if cursor is None:
            items = [i for i in store.items.values() if i.kind == self._kind]
            changes = [c for i in items if (c := self._change(i.item_id, False, True))]
            end = store.log[-1][0] if store.log else 0
            for start in range(0, max(len(changes), 1), self._page):
                last = start + self._page >= len(changes)
                page = tuple(changes[start : start + self._page])
                yield ChangeBatch(page, f"mem:{end}" if last else None, full_sync=True)
            return
        if not cursor.startswith("mem:") or not cursor[4:].isdigit():
            raise CursorExpiredError(f"not a memory cursor: {cursor[:40]!r}")
        since = int(cursor[4:])
        if since < store.oldest_cursor:
            raise CursorExpiredError("cursor expired; a full sync is needed")
        latest: dict[str, bool] = {}
        for seq, item_id, deleted in store.log:
            if seq > since:
                latest.pop(item_id, None)
                latest[item_id] = deleted
        changes = [c for item_id, d in latest.items() if (c := self._change(item_id, d, False))]
        end = store.log[-1][0] if store.log else since
        for start in range(0, max(len(changes), 1), self._page):
            last = start + self._page >= len(changes)
            yield ChangeBatch(
                tuple(changes[start : start + self._page]), f"mem:{end}" if last else None
            )


class MemorySink:
    """CommandSink over a MemorySide, with the semantics every real writer must have."""

    def __init__(self, store: MemorySide) -> None:
        self._store = store
        self.applied: list[str] = []

    async def apply(self, commands: Sequence[WriteCommand]) -> list[WriteOutcome]:
        return [self._apply_one(c) for c in commands]

    def _outcome(
        self,
        cmd: WriteCommand,
        status: OutcomeStatus,
        item: MemoryItem | None,
        *,
        wrote: bool = True,
    ) -> WriteOutcome:
        return outcome_for(
            cmd,
            status,
            target_id=item.item_id if item else None,
            version=str(item.version) if item else None,
            written=cmd.fields if status == "applied" and wrote else None,
        )

    def _apply_one(self, cmd: WriteCommand) -> WriteOutcome:
        store = self._store
        if cmd.action == "create":
            existing = store.by_correlation(cmd.correlation_id)
            if existing is not None:  # a retried create: the same item, never a duplicate
                return self._outcome(cmd, "applied", existing, wrote=False)
            item = store.put(
                cmd.kind, cmd.fields, correlation_id=cmd.correlation_id, table=cmd.table
            )
            self.applied.append(cmd.command_id)
            return self._outcome(cmd, "applied", item)
        target = store.items.get(cmd.target_id or "")
        if target is None:
            return self._outcome(cmd, "not_found", None)
        if cmd.action == "delete":
            if cmd.if_match is not None and cmd.if_match != str(target.version):
                return self._outcome(cmd, "conflict", target)
            store.remove(target.item_id)
            self.applied.append(cmd.command_id)
            return self._outcome(cmd, "applied", None)
        if cmd.if_match is not None and cmd.if_match != str(target.version):
            return self._outcome(cmd, "conflict", target)
        item = store.put(cmd.kind, cmd.fields, item_id=target.item_id)
        self.applied.append(cmd.command_id)
        return self._outcome(cmd, "applied", item)
