"""10,000 bad webhook requests of every kind: nothing is published, every one is counted, and
the receiver's log stays a handful of lines (in-process aiohttp test server on loopback)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from connectors.graph.receiver import STATS_KEY, ReceiverConfig, create_receiver_app, server_kwargs
from connectors.graph.subscriptions import (
    ClientStateKey,
    SubscriptionRecord,
    SubscriptionRegistry,
    new_client_state,
    subscription_key,
)
from connectors.store import MemoryCursorStore, MemoryPublisher

TOTAL = 10_000
CONCURRENCY = 32
KEY = ClientStateKey.derive("flood test key: at least thirty-two characters")
SECRET = new_client_state()
JSON = {"Content-Type": "application/json"}

Client = TestClient[web.Request, web.Application]
Send = Callable[[Client, int], Awaitable[int]]


def _note(sid: str = "sub-1", state: str | None = SECRET, **extra: object) -> bytes:
    item: dict[str, object] = {
        "subscriptionId": sid,
        "changeType": "updated",
        "resource": "Users/mbx-1/Messages/AAMk1",
        "resourceData": {"id": "AAMk1"},
    }
    if state is not None:
        item["clientState"] = state
    item.update(extra)
    return orjson.dumps({"value": [item]})


async def _post(client: Client, path: str, data: bytes, headers: dict[str, str]) -> int:
    async with client.post(path, data=data, headers=headers) as resp:
        await resp.read()
        return resp.status


async def bad_json(client: Client, i: int) -> int:
    garbage = [b"{", b"not json", b'{"value": [', b"\xff\xfe", b'{"value": [1]}', b"[]"]
    return await _post(client, "/notifications", garbage[i % len(garbage)], JSON)


async def wrong_client_state(client: Client, i: int) -> int:
    state = [f"guess-{i}", SECRET[:-1], SECRET.upper(), None][i % 4]
    return await _post(client, "/notifications", _note(state=state), JSON)


async def wrong_content_type(client: Client, i: int) -> int:
    ctype = ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=utf-16"]
    return await _post(client, "/notifications", _note(), {"Content-Type": ctype[i % 3]})


async def oversize(client: Client, i: int) -> int:
    return await _post(client, "/lifecycle", b" " * 5000 + _note(), JSON)


async def path_trick(client: Client, i: int) -> int:
    targets = [
        "/notifications/../metrics",
        "/%6eotifications",
        "//notifications",
        "/notifications/",
        "/notifications/%2e%2e/lifecycle",
        "/./lifecycle",
    ]
    url = URL(str(client.make_url("")) + targets[i % len(targets)], encoded=True)
    async with client.session.post(url, data=_note(), headers=JSON) as resp:
        await resp.read()
        return resp.status


async def unknown_subscription(client: Client, i: int) -> int:
    return await _post(client, "/notifications", _note(sid=f"sub-x{i}"), JSON)


async def bad_lifecycle(client: Client, i: int) -> int:
    return await _post(client, "/lifecycle", _note(lifecycleEvent="selfDestruct"), JSON)


KINDS: dict[Send, tuple[int, str]] = {
    bad_json: (400, "malformed"),
    wrong_client_state: (403, "client_state"),
    wrong_content_type: (415, "unsupported_media_type"),
    oversize: (413, "too_large"),
    path_trick: (404, "bad_path"),
    unknown_subscription: (403, "unknown_subscription"),
    bad_lifecycle: (400, "malformed"),
}


@pytest.mark.timeout(60)
async def test_ten_thousand_bad_requests_publish_nothing_and_log_little(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    store = MemoryCursorStore()
    rec = SubscriptionRecord("mbx-1", "messages", KEY.digest(SECRET), KEY.key_id, "sub-1")
    await store.put(subscription_key("mbx-1", "messages"), rec.to_json())
    publisher = MemoryPublisher()
    config = ReceiverConfig(
        topic="n", max_body_bytes=4096, rate_per_s=1_000_000, rate_burst=10_000_000
    )
    app = create_receiver_app(config, SubscriptionRegistry(store, KEY), publisher)
    server = TestServer(app)
    await server.start_server(**server_kwargs(app))
    rng = random.Random(14)
    plan = [rng.choice(list(KINDS)) for _ in range(TOTAL)]
    statuses: list[tuple[Send, int]] = []

    async with TestClient(server) as client:

        async def worker(offset: int) -> None:
            for i in range(offset, TOTAL, CONCURRENCY):
                statuses.append((plan[i], await plan[i](client, i)))

        await asyncio.gather(*(worker(k) for k in range(CONCURRENCY)))
        # the receiver still serves a good notification after the flood
        assert await _post(client, "/notifications", _note(), JSON) == 202

    assert len(statuses) == TOTAL
    wrong = [(kind.__name__, s) for kind, s in statuses if s != KINDS[kind][0]]
    assert wrong == []
    assert len(publisher.records) == 1  # only the good one
    expected: dict[str, int] = {}
    for kind in plan:
        reason = KINDS[kind][1]
        expected[reason] = expected.get(reason, 0) + 1
    assert dict(app[STATS_KEY].rejected) == expected
    assert len(expected) == 6
    assert len(caplog.records) < 50
    assert SECRET not in caplog.text
