"""Delta sources and the reader loop against a small scripted Graph stand-in (a real server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from connectors.errors import CursorExpiredError, InvalidResponseError
from connectors.graph.notifications import LifecycleEvent, NotificationRecord
from connectors.graph.reader import GraphDeltaSource, contacts_stream
from connectors.graph.receiver import ReceiverServer
from connectors.graph.sync import OutlookReader, StreamsFor, cursor_key
from connectors.graph.transport import GraphTransport
from connectors.http import RetryPolicy
from connectors.store import MemoryCursorStore, MemoryPublisher
from schemas.codec import loads
from schemas.models import ItemChange
from tests.contract.suite import read_all


@dataclass
class Script:
    """Pages served in order: each a (status, headers, body) triple; then deltaLink pages."""

    pages: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    hits: list[str] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)


def contact(i: int, key: str = "k1") -> dict[str, Any]:
    return {"id": f"c{i}", "changeKey": key, "givenName": f"G{i}", "surname": f"S{i}"}


@dataclass
class Env:
    script: Script
    server: ReceiverServer
    transport: GraphTransport
    http: httpx.AsyncClient

    def link(self, name: str) -> str:
        return f"{self.server.url}/v1.0/{name}"


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    script = Script()

    async def handler(request: web.Request) -> web.StreamResponse:
        script.hits.append(request.path_qs)
        script.auth.append(request.headers.get("Authorization", ""))
        status, headers, body = script.pages.pop(0)
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        return web.Response(
            status=status, headers=headers, body=raw, content_type="application/json"
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = ReceiverServer(app)
    await server.start()
    http = httpx.AsyncClient()

    async def token() -> str:
        return "test-token"

    transport = GraphTransport(
        http, f"{server.url}/v1.0", token, policy=RetryPolicy(attempts=4, base_delay=0.01)
    )
    yield Env(script, server, transport, http)
    await http.aclose()
    await server.stop()


def streams_of(*sources: GraphDeltaSource) -> StreamsFor:
    async def streams(mailbox: str) -> list[GraphDeltaSource]:
        return [s for s in sources if s.stream.mailbox_id == mailbox]

    return streams


def source(env: Env) -> GraphDeltaSource:
    return GraphDeltaSource(env.transport, contacts_stream("m1"), org_id="org")


async def test_follows_next_links_to_the_delta_link(env: Env) -> None:
    env.script.pages = [
        (200, {}, {"value": [contact(1)], "@odata.nextLink": env.link("next?p=2")}),
        (
            200,
            {},
            {
                "value": [contact(2), {"id": "c3", "@removed": {"reason": "deleted"}}],
                "@odata.deltaLink": env.link("delta?t=1"),
            },
        ),
    ]
    read = await read_all(source(env), None)
    assert [(c.item_id, c.op) for c in read.changes] == [
        ("c1", "upsert"),
        ("c2", "upsert"),
        ("c3", "delete"),
    ]
    first = read.changes[0]
    assert first.change_id == "outlook:c1:k1"
    assert first.version == "k1"
    assert first.projection["firstname"] == "G1"
    assert first.origin == "full_sync"
    assert read.cursor == env.link("delta?t=1")
    assert env.script.hits[0].startswith("/v1.0/users/m1/contacts/delta?")
    assert "%24expand=" in env.script.hits[0] or "$expand=" in env.script.hits[0]
    assert env.script.auth == ["Bearer test-token"] * 2


GARBAGE: list[Any] = [
    b"<html>oops</html>",
    [],
    {"value": "x", "@odata.deltaLink": "x"},
    {"value": []},
    {"value": [], "@odata.deltaLink": "https://evil.example/steal"},
    {"value": [{"changeKey": "k"}], "@odata.deltaLink": None},
    {"value": [{"id": "c1"}], "@odata.deltaLink": "LINK"},
    {"value": [7], "@odata.deltaLink": "LINK"},
]


@pytest.mark.parametrize("body", GARBAGE)
async def test_garbage_from_the_service_is_an_invalid_response(env: Env, body: Any) -> None:
    if isinstance(body, dict) and body.get("@odata.deltaLink") == "LINK":
        body = {**body, "@odata.deltaLink": env.link("delta?t=1")}
    env.script.pages = [(200, {}, body)]
    publisher = MemoryPublisher()
    cursors = MemoryCursorStore()
    reader = OutlookReader(streams_of(source(env)), publisher, cursors, changes_topic="co")
    with pytest.raises(InvalidResponseError):
        await reader.sync_mailbox("m1")
    assert publisher.records == []
    assert cursors.data == {}


async def test_throttling_is_retried_honouring_retry_after(env: Env) -> None:
    env.script.pages = [
        (429, {"Retry-After": "0"}, {"error": {"code": "TooManyRequests", "message": "slow"}}),
        (503, {}, {"error": {"code": "ServiceUnavailable"}}),
        (200, {}, {"value": [contact(1)], "@odata.deltaLink": env.link("delta?t=1")}),
    ]
    read = await read_all(source(env), None)
    assert [c.item_id for c in read.changes] == ["c1"]
    assert len(env.script.hits) == 3


@pytest.mark.parametrize(
    "refusal",
    [
        (410, {}, {"error": {"code": "SyncStateNotFound", "message": "gone"}}),
        (400, {}, {"error": {"code": "BadRequest", "message": "The delta token is not valid."}}),
    ],
)
async def test_expired_or_refused_cursor_means_a_full_resync(
    env: Env, refusal: tuple[int, dict[str, str], Any]
) -> None:
    publisher = MemoryPublisher()
    cursors = MemoryCursorStore()
    src = source(env)
    await cursors.put(cursor_key(src.stream_id), env.link("delta?t=old"))
    env.script.pages = [
        refusal,
        (200, {}, {"value": [contact(1, "k2")], "@odata.deltaLink": env.link("delta?t=new")}),
    ]
    reader = OutlookReader(streams_of(src), publisher, cursors, changes_topic="co")
    (result,) = await reader.sync_mailbox("m1")
    assert result.full_sync
    assert result.published == 1
    assert cursors.get(cursor_key(src.stream_id)) == env.link("delta?t=new")
    assert env.script.hits[0] == "/v1.0/delta?t=old"
    env.script.pages = [(410, {}, {"error": {"code": "SyncStateNotFound"}})]
    with pytest.raises(CursorExpiredError):
        await read_all(src, env.link("delta?t=old"))


async def test_reader_publishes_keyed_by_mailbox_then_stores_cursor(env: Env) -> None:
    publisher = MemoryPublisher()
    cursors = MemoryCursorStore()
    src = source(env)
    reader = OutlookReader(streams_of(src), publisher, cursors, changes_topic="co")
    env.script.pages = [
        (200, {}, {"value": [contact(1), contact(2)], "@odata.deltaLink": env.link("d?t=1")}),
        (200, {}, {"value": [contact(2, "k9")], "@odata.deltaLink": env.link("d?t=2")}),
    ]
    notes = [
        NotificationRecord("m1", "contacts", "s1", "2026-01-01T00:00:00Z", "updated", f"c{i}")
        for i in range(5)
    ]
    results = await reader.handle(notes)  # five notifications, one pass
    assert len(results) == 1
    assert len(env.script.hits) == 1
    await reader.handle(notes[:1])
    published = publisher.on("co")
    assert [k for k, _ in published] == ["m1"] * 3
    changes = [loads(ItemChange, v or b"") for _, v in published]
    assert [c.change_id for c in changes] == ["outlook:c1:k1", "outlook:c2:k1", "outlook:c2:k9"]
    assert cursors.get(cursor_key(src.stream_id)) == env.link("d?t=2")
    assert env.script.hits[1] == "/v1.0/d?t=1"
    # notifications of other resources do not touch the contacts stream
    await reader.handle([NotificationRecord("m1", "messages", "s2", "2026-01-01T00:00:00Z")])
    assert len(env.script.hits) == 2


async def test_lifecycle_events_go_to_the_callback_and_removal_reads_at_once(env: Env) -> None:
    seen: list[tuple[str | None, int]] = []

    async def on_lifecycle(rec: NotificationRecord) -> None:
        seen.append((rec.lifecycle_event, len(env.script.hits)))  # before any pass runs

    src = source(env)
    reader = OutlookReader(
        streams_of(src),
        MemoryPublisher(),
        MemoryCursorStore(),
        changes_topic="co",
        on_lifecycle=on_lifecycle,
    )

    def note(event: LifecycleEvent) -> NotificationRecord:
        return NotificationRecord(
            "m1", "events", "s1", "2026-01-01T00:00:00Z", lifecycle_event=event
        )

    # reauthorization: the callback renews; nothing to read
    assert await reader.handle([note("reauthorizationRequired")]) == []
    assert seen == [("reauthorizationRequired", 0)] and env.script.hits == []

    # removal: the callback recreates first, then every stream of the mailbox is read (the
    # removed subscription was for events; the contacts stream is read all the same)
    env.script.pages = [(200, {}, {"value": [contact(1)], "@odata.deltaLink": env.link("d?t=1")})]
    results = await reader.handle([note("subscriptionRemoved")])
    assert seen[1] == ("subscriptionRemoved", 0)
    assert [(r.stream_id, r.published) for r in results] == [(src.stream_id, 1)]
    assert len(env.script.hits) == 1
