"""The Graph connector (GraphDeltaSource + GraphWriter) honours the connector contract against
the Graph emulator running as its own process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from connectors.base import ChangeSource, CommandSink
from connectors.graph.mapping import projection_to_graph
from connectors.graph.reader import (
    DeltaStream,
    GraphDeltaSource,
    calendar_stream,
    contacts_stream,
    tasks_stream,
    todo_lists,
)
from connectors.graph.transport import GraphTransport
from connectors.graph.writer import GraphWriter, if_match_value
from schemas.types import CrmTable, Kind, Projection, Side
from tests.contract.graph_connector.emulator import TOKEN, GraphEmulator, start_emulator
from tests.contract.suite import ConnectorContract

WINDOW_START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
WINDOW_END = WINDOW_START + timedelta(days=60)


@pytest.fixture(scope="module")
def emulator() -> Iterator[GraphEmulator]:
    yield from start_emulator()


@dataclass
class GraphBackend:
    emulator: GraphEmulator
    transport: GraphTransport
    mailbox_id: str
    task_list: str
    side: Side = "outlook"
    org_id: str = "org"
    kinds: Sequence[Kind] = ("contact", "appointment", "task")
    writer: GraphWriter = field(init=False)

    def __post_init__(self) -> None:
        self.writer = GraphWriter(self.transport)

    def stream(self, kind: Kind) -> DeltaStream:
        if kind == "contact":
            return contacts_stream(self.mailbox_id)
        if kind == "appointment":
            fmt = "%Y-%m-%dT%H:%M:%SZ"
            return calendar_stream(
                self.mailbox_id, WINDOW_START.strftime(fmt), WINDOW_END.strftime(fmt)
            )
        return tasks_stream(self.mailbox_id, self.task_list)

    def source(self, kind: Kind) -> ChangeSource:
        return GraphDeltaSource(
            self.transport,
            self.stream(kind),
            org_id=self.org_id,
            page_size=2,
            groups=frozenset({"percentcomplete"}),
        )

    def sink(self) -> CommandSink:
        return self.writer

    def table(self, kind: Kind) -> CrmTable | None:
        return None

    def sample(self, kind: Kind, n: int) -> Projection:
        if kind == "contact":
            return {"firstname": f"First{n}", "lastname": f"Last{n}"}
        if kind == "appointment":
            start = WINDOW_START + timedelta(days=2, hours=n)
            fmt = "%Y-%m-%dT%H:%M:%SZ"
            return {
                "subject": f"Meeting {n}",
                "scheduledstart": start.strftime(fmt),
                "scheduledend": (start + timedelta(minutes=30)).strftime(fmt),
            }
        return {
            "subject": f"Task {n}",
            "statecode": 0,
            "statuscode": 3,
            "percentcomplete": (n * 10) % 100,
            "regardingobjectid": {"table": "account", "id": f"00000000-0000-4000-8000-{n:012d}"},
        }

    def _item_path(self, kind: Kind, item_id: str) -> str:
        if kind == "contact":
            return f"users/{self.mailbox_id}/contacts/{item_id}"
        if kind == "appointment":
            return f"users/{self.mailbox_id}/events/{item_id}"
        return f"users/{self.mailbox_id}/todo/lists/{self.task_list}/tasks/{item_id}"

    async def user_edit(self, kind: Kind, item_id: str, n: int) -> None:
        body = projection_to_graph(kind, self.sample(kind, n))
        body.pop("extensions", None)  # a user in To Do never touches our open extension
        resp = await self.emulator.call("PATCH", self._item_path(kind, item_id), body)
        assert resp.status_code == 200, resp.text

    async def user_delete(self, kind: Kind, item_id: str) -> None:
        resp = await self.emulator.call("DELETE", self._item_path(kind, item_id))
        assert resp.status_code == 204, resp.text


async def _token() -> str:
    return TOKEN


class TestGraphContract(ConnectorContract):
    @pytest.fixture
    async def backend(self, emulator: GraphEmulator) -> AsyncIterator[GraphBackend]:
        mailbox = await emulator.new_mailbox()
        async with httpx.AsyncClient() as http:
            transport = GraphTransport(http, emulator.base, _token)
            lists = await todo_lists(transport, mailbox)
            assert lists, "a new mailbox has its default To Do list"
            yield GraphBackend(emulator, transport, mailbox, lists[0])


def test_if_match_value() -> None:
    assert if_match_value("abc") == 'W/"abc"'
    assert if_match_value('W/"abc"') == 'W/"abc"'
