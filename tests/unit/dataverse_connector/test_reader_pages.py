"""The change reader validates every page at the edge (scripted local server, no emulator)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from connectors.dataverse.auth import StaticToken
from connectors.dataverse.client import DataverseClient
from connectors.dataverse.reader import DataverseChangeSource
from connectors.errors import CursorExpiredError, InvalidResponseError
from connectors.http import RetryPolicy

ROW = {"contactid": "A1", "versionnumber": 5, "lastname": "X"}


@pytest.fixture
async def server() -> AsyncIterator[tuple[list[Any], str, DataverseClient]]:
    pages: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        return web.json_response(pages.pop(0))

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    base = f"http://127.0.0.1:{srv.port}/api/data/v9.2"
    client = DataverseClient(base, StaticToken("t"), policy=RetryPolicy(attempts=1))
    async with client:
        yield pages, base, client
    await srv.close()


async def _read(client: DataverseClient, cursor: str | None = None) -> list[Any]:
    source = DataverseChangeSource(client, org_id="o", table="contact")
    return [b async for b in source.read(cursor)]


async def test_pages_are_followed_and_deletes_of_recreated_rows_dropped(
    server: tuple[list[Any], str, DataverseClient],
) -> None:
    pages, base, client = server
    deleted = {"@odata.context": f"{base}/$metadata#contacts/$deletedEntity", "id": "a1"}
    gone = {"@odata.context": f"{base}/$metadata#contacts/$deletedEntity", "id": "b2"}
    pages += [
        {"value": [ROW], "@odata.nextLink": f"{base}/contacts?$skiptoken=2"},
        {"value": [deleted, gone], "@odata.deltaLink": f"{base}/contacts?$deltatoken=9"},
    ]
    batches = await _read(client, f"{base}/contacts?$deltatoken=1")
    assert [b.cursor for b in batches] == [None, f"{base}/contacts?$deltatoken=9"]
    assert [(c.op, c.item_id) for b in batches for c in b.changes] == [
        ("upsert", "a1"),
        ("delete", "b2"),
    ]


@pytest.mark.parametrize(
    "page",
    [
        {"nothing": 1},
        {"value": {}},
        {"value": [ROW]},
        {"value": [], "@odata.nextLink": "http://127.0.0.1:1/x", "@odata.deltaLink": "y"},
        {"value": [], "@odata.deltaLink": 5},
        {"value": [], "@odata.nextLink": "http://elsewhere.test/api/data/v9.2/contacts"},
        {"value": [1], "@odata.deltaLink": "d"},
        {"value": [{"contactid": "a"}], "@odata.deltaLink": "d"},
        {"value": [{"versionnumber": 1}], "@odata.deltaLink": "d"},
        {"value": [{"@odata.context": "x/$deletedEntity"}], "@odata.deltaLink": "d"},
        {"value": [{**ROW, "birthdate": "not a date"}], "@odata.deltaLink": "d"},
    ],
)
async def test_garbage_pages_are_invalid_responses(
    server: tuple[list[Any], str, DataverseClient], page: Any
) -> None:
    pages, _, client = server
    pages.append(page)
    with pytest.raises(InvalidResponseError):
        await _read(client)


@pytest.mark.parametrize(
    "cursor", ["garbage", "http://127.0.0.1:1/api/data/v9.2/tasks?$deltatoken=1", ""]
)
async def test_foreign_cursors_ask_for_a_full_sync(
    server: tuple[list[Any], str, DataverseClient], cursor: str
) -> None:
    _, _, client = server
    with pytest.raises(CursorExpiredError):
        await _read(client, cursor)
