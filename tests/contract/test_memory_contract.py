"""The in-memory side honours the connector contract (the reference backend)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from connectors.base import ChangeSource, CommandSink
from connectors.errors import CursorExpiredError
from connectors.memory import MemorySide, MemorySink, MemorySource
from schemas.types import CrmTable, Kind, Projection, Side
from tests.contract.suite import ConnectorContract, read_all


@dataclass
class MemoryBackend:
    side: Side
    store: MemorySide
    mailbox_id: str = "mbx-1"
    org_id: str = "org"
    kinds: Sequence[Kind] = ("contact", "task")
    _sink: MemorySink | None = field(default=None)

    def source(self, kind: Kind) -> ChangeSource:
        return MemorySource(self.store, kind, mailbox_id=self.mailbox_id, page_size=2)

    def sink(self) -> CommandSink:
        if self._sink is None:
            self._sink = MemorySink(self.store)
        return self._sink

    def table(self, kind: Kind) -> CrmTable | None:
        return None if self.side == "outlook" else ("contact" if kind == "contact" else "task")

    def sample(self, kind: Kind, n: int) -> Projection:
        if kind == "contact":
            return {"firstname": f"First{n}", "lastname": f"Last{n}"}
        return {"subject": f"Task {n}"}

    async def user_edit(self, kind: Kind, item_id: str, n: int) -> None:
        self.store.put(kind, self.sample(kind, n), item_id=item_id)

    async def user_delete(self, kind: Kind, item_id: str) -> None:
        assert self.store.remove(item_id)


class TestMemoryOutlookContract(ConnectorContract):
    @pytest.fixture
    def backend(self) -> MemoryBackend:
        return MemoryBackend("outlook", MemorySide("outlook"))


class TestMemoryCrmContract(ConnectorContract):
    @pytest.fixture
    def backend(self) -> MemoryBackend:
        return MemoryBackend("crm", MemorySide("crm"))


async def test_garbage_and_expired_cursors_ask_for_a_full_sync() -> None:
    store = MemorySide("crm")
    store.put("contact", {"firstname": "A"})
    source = MemorySource(store, "contact", mailbox_id=None)
    first = await read_all(source, None)
    store.expire_cursors()
    store.put("contact", {"firstname": "B"})
    for cursor in (first.cursor, "garbage", "mem:-1"):
        with pytest.raises(CursorExpiredError):
            await read_all(source, cursor)
