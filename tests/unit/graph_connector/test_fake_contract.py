"""The Graph reader and writer honour the connector contract over the small fake Graph
(contacts only); the full run against the Graph emulator is in tests/contract/graph_connector."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import httpx
import pytest

from connectors.base import ChangeSource, CommandSink
from connectors.errors import CursorExpiredError
from connectors.graph.mapping import projection_to_graph
from connectors.graph.reader import GraphDeltaSource, contacts_stream
from connectors.graph.receiver import ReceiverServer
from connectors.graph.transport import GraphTransport
from connectors.graph.writer import GraphWriter
from schemas.types import CrmTable, Kind, Projection, Side
from tests.contract.suite import ConnectorContract, read_all
from tests.unit.graph_connector.fake_graph import FakeGraph


@dataclass
class FakeBackend:
    graph: FakeGraph
    transport: GraphTransport
    side: Side = "outlook"
    mailbox_id: str = "m1"
    org_id: str = "org"
    kinds: Sequence[Kind] = ("contact",)
    writer: GraphWriter = field(init=False)

    def __post_init__(self) -> None:
        self.writer = GraphWriter(self.transport)

    def source(self, kind: Kind) -> ChangeSource:
        return GraphDeltaSource(self.transport, contacts_stream(self.mailbox_id), org_id="org")

    def sink(self) -> CommandSink:
        return self.writer

    def table(self, kind: Kind) -> CrmTable | None:
        return None

    def sample(self, kind: Kind, n: int) -> Projection:
        return {"firstname": f"First{n}", "lastname": f"Last{n}"}

    async def user_edit(self, kind: Kind, item_id: str, n: int) -> None:
        status, _, _ = await self.graph.dispatch(
            "PATCH",
            f"/users/m1/contacts/{item_id}",
            {},
            {},
            projection_to_graph(kind, self.sample(kind, n)),
        )
        assert status == 200

    async def user_delete(self, kind: Kind, item_id: str) -> None:
        status, _, _ = await self.graph.dispatch(
            "DELETE", f"/users/m1/contacts/{item_id}", {}, {}, None
        )
        assert status == 204


async def _token() -> str:
    return "t"


@pytest.fixture
async def fake_backend() -> AsyncIterator[FakeBackend]:
    graph = FakeGraph()
    server = ReceiverServer(graph.app())
    await server.start()
    graph.base = server.url
    async with httpx.AsyncClient() as http:
        yield FakeBackend(graph, GraphTransport(http, f"{server.url}/v1.0", _token))
    await server.stop()


class TestGraphOverFakeContract(ConnectorContract):
    @pytest.fixture
    def backend(self, fake_backend: FakeBackend) -> FakeBackend:
        return fake_backend


async def test_removed_items_are_deletes_and_garbage_cursor_asks_for_full_sync(
    fake_backend: FakeBackend,
) -> None:
    (out,) = await fake_backend.writer.apply(
        [
            TestGraphOverFakeContract().command(
                fake_backend,
                "contact",
                "create",
                correlation_id="c-1",
                fields=fake_backend.sample("contact", 1),
            )
        ]
    )
    first = await read_all(fake_backend.source("contact"), None)
    assert [c.correlation_id for c in first.changes] == ["c-1"]
    assert out.target_id
    await fake_backend.user_delete("contact", out.target_id)
    later = await read_all(fake_backend.source("contact"), first.cursor)
    assert [(c.item_id, c.op, c.change_id) for c in later.changes] == [
        (out.target_id, "delete", f"outlook:{out.target_id}:deleted")
    ]
    with pytest.raises(CursorExpiredError):
        await read_all(
            fake_backend.source("contact"),
            f"{fake_backend.graph.base}/v1.0/users/m1/contacts/delta?since=bad",
        )
