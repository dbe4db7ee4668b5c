"""The calendarView delta reports an event moved outside its window as ``@removed``; the reader
reads the event back and reports an upsert (with the new times), and a delete only for an
event that is really gone. Against the Graph emulator process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from connectors.graph.reader import GraphDeltaSource, calendar_stream
from connectors.graph.transport import GraphTransport
from schemas.models import ItemChange
from tests.contract.graph_connector.emulator import TOKEN, GraphEmulator, start_emulator

FMT = "%Y-%m-%dT%H:%M:%S"
START = datetime.now(UTC).replace(microsecond=0)
END = START + timedelta(days=30)


@pytest.fixture(scope="module")
def emulator() -> Iterator[GraphEmulator]:
    yield from start_emulator()


async def _token() -> str:
    return TOKEN


@pytest.fixture
async def source(emulator: GraphEmulator) -> AsyncIterator[tuple[GraphDeltaSource, str]]:
    mailbox = await emulator.new_mailbox()
    async with httpx.AsyncClient() as http:
        stream = calendar_stream(mailbox, START.strftime(FMT + "Z"), END.strftime(FMT + "Z"))
        yield (
            GraphDeltaSource(GraphTransport(http, emulator.base, _token), stream, org_id="o"),
            (mailbox),
        )


def _when(day: int) -> dict[str, dict[str, str]]:
    at = START + timedelta(days=day)
    return {
        "start": {"dateTime": at.strftime(FMT), "timeZone": "UTC"},
        "end": {"dateTime": (at + timedelta(hours=1)).strftime(FMT), "timeZone": "UTC"},
    }


async def _pass(source: GraphDeltaSource, cursor: str | None) -> tuple[list[ItemChange], str]:
    changes: list[ItemChange] = []
    last = None
    async for batch in source.read(cursor):
        changes.extend(batch.changes)
        last = batch.cursor or last
    assert last is not None
    return changes, last


async def test_an_event_moved_out_of_the_window_is_an_upsert_not_a_delete(
    emulator: GraphEmulator, source: tuple[GraphDeltaSource, str]
) -> None:
    reader, mailbox = source
    moved = await emulator.call(
        "POST", f"users/{mailbox}/events", {"subject": "Moves away", **_when(2)}
    )
    gone = await emulator.call("POST", f"users/{mailbox}/events", {"subject": "Goes", **_when(3)})
    assert moved.status_code == gone.status_code == 201
    first, cursor = await _pass(reader, None)
    assert {c.item_id for c in first} == {moved.json()["id"], gone.json()["id"]}

    resp = await emulator.call("PATCH", f"users/{mailbox}/events/{moved.json()['id']}", _when(90))
    assert resp.status_code == 200, resp.text
    resp = await emulator.call("DELETE", f"users/{mailbox}/events/{gone.json()['id']}")
    assert resp.status_code == 204, resp.text

    changes, _ = await _pass(reader, cursor)
    by_id = {c.item_id: c for c in changes}
    assert by_id[gone.json()["id"]].op == "delete"
    upsert = by_id[moved.json()["id"]]
    assert upsert.op == "upsert"
    assert upsert.projection["subject"] == "Moves away"
    assert str(upsert.projection["scheduledstart"]).startswith(
        (START + timedelta(days=90)).strftime("%Y-%m-%d")
    )
