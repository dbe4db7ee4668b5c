"""The webhook receiver over a real aiohttp server: handshake, validation, clientState, size."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import httpx
import orjson
import pytest

from connectors.graph.notifications import NotificationRecord
from connectors.graph.receiver import (
    STATS_KEY,
    ReceiverConfig,
    ReceiverServer,
    create_receiver_app,
)
from connectors.graph.subscriptions import (
    SubscriptionRecord,
    SubscriptionRegistry,
    new_client_state,
    subscription_key,
)
from connectors.store import MemoryCursorStore, MemoryPublisher

TOPIC = "graph.notifications"
SECRET = new_client_state()


class SlowPublisher(MemoryPublisher):
    async def send(self, topic: str, key: str, value: bytes | None) -> None:
        await asyncio.sleep(5)
        await super().send(topic, key, value)


@dataclass
class Env:
    server: ReceiverServer
    publisher: MemoryPublisher
    http: httpx.AsyncClient

    def stats(self) -> dict[str, int]:
        return dict(self.server.app[STATS_KEY].rejected)


async def _env(publisher: MemoryPublisher, wait_s: float = 2.5) -> Env:
    store = MemoryCursorStore()
    rec = SubscriptionRecord("mbx-1", "messages", SECRET, "sub-1", "2030-01-01T00:00:00Z")
    await store.put(subscription_key("mbx-1", "messages"), rec.to_json())
    config = ReceiverConfig(topic=TOPIC, max_body_bytes=4096, publish_timeout_s=wait_s)
    app = create_receiver_app(config, SubscriptionRegistry(store), publisher)
    server = ReceiverServer(app)
    await server.start()
    return Env(server, publisher, httpx.AsyncClient(base_url=server.url))


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    e = await _env(MemoryPublisher())
    yield e
    await e.http.aclose()
    await e.server.stop()


def note(
    client_state: str | None = SECRET, sid: str = "sub-1", **extra: object
) -> dict[str, object]:
    item: dict[str, object] = {
        "subscriptionId": sid,
        "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
        "changeType": "created",
        "resource": "Users/mbx-1/Messages/AAMk1",
        "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "id": "AAMk1"},
        "tenantId": "t-1",
    }
    if client_state is not None:
        item["clientState"] = client_state
    item.update(extra)
    return item


def body(*items: Mapping[str, object]) -> bytes:
    return orjson.dumps({"value": list(items)})


async def test_validation_handshake_echoes_exactly_the_token(env: Env) -> None:
    token = "Validation: Testing client application reachability for subscription Request-Id: 1"
    for method in ("POST", "GET"):
        resp = await env.http.request(method, "/notifications", params={"validationToken": token})
        assert resp.status_code == 200
        assert resp.text == token
        assert resp.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("token", ["", "x" * 5000, "a\nb", "<script>\x00"])
async def test_bad_validation_tokens_are_rejected(env: Env, token: str) -> None:
    resp = await env.http.post("/notifications", params={"validationToken": token})
    assert resp.status_code == 400
    assert token not in resp.text or token == ""
    assert env.stats()["bad_validation_token"] == 1


async def test_valid_notification_is_published_keyed_by_mailbox_then_202(env: Env) -> None:
    resp = await env.http.post(
        "/notifications", content=body(note()), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 202
    ((key, value),) = env.publisher.on(TOPIC)
    assert key == "mbx-1"
    assert value is not None
    rec = NotificationRecord.from_json(value)
    assert (rec.resource_kind, rec.item_id, rec.change_type) == ("messages", "AAMk1", "created")
    assert SECRET.encode() not in value


GARBAGE = [
    b"",
    b"not json",
    b"[]",
    b'{"value": []}',
    b'{"value": "x"}',
    b'{"value": [1]}',
    body(note(changeType="exploded")),
    body(note(resource=None)),
    body(note(subscriptionId=7)),
    body(note(resourceData="x")),
    body(note(lifecycleEvent="missed")),
]


@pytest.mark.parametrize("raw", GARBAGE)
async def test_malformed_bodies_get_400_and_publish_nothing(env: Env, raw: bytes) -> None:
    resp = await env.http.post(
        "/notifications", content=raw, headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "malformed"
    assert env.publisher.records == []
    assert env.stats() == {"malformed": 1}


async def test_wrong_or_missing_client_state_is_403(env: Env) -> None:
    for state in ("wrong", None, SECRET[:-1]):
        resp = await env.http.post(
            "/notifications",
            content=body(note(), note(client_state=state)),
            headers={"content-type": "application/json"},
        )
        assert resp.status_code == 403
        assert SECRET not in resp.text
    assert env.publisher.records == []
    assert env.stats() == {"client_state": 3}


async def test_unknown_subscription_is_403(env: Env) -> None:
    resp = await env.http.post(
        "/notifications",
        content=body(note(sid="sub-unknown")),
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 403
    assert env.publisher.records == []
    assert env.stats() == {"unknown_subscription": 1}


async def test_oversized_body_is_413(env: Env) -> None:
    big = body(*[note() for _ in range(40)])
    assert len(big) > 4096
    resp = await env.http.post(
        "/notifications", content=big, headers={"content-type": "application/json"}
    )
    assert resp.status_code == 413
    assert env.publisher.records == []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    resp = await env.http.post(
        "/notifications", content=chunks(), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 413
    assert env.stats()["too_large"] == 2


async def test_lifecycle_notifications_are_published(env: Env) -> None:
    item = {"subscriptionId": "sub-1", "clientState": SECRET, "lifecycleEvent": "missed"}
    resp = await env.http.post(
        "/lifecycle", content=body(item), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 202
    ((_key, value),) = env.publisher.on(TOPIC)
    assert value is not None
    assert NotificationRecord.from_json(value).lifecycle_event == "missed"
    bad = {**item, "lifecycleEvent": "selfDestruct"}
    resp = await env.http.post(
        "/lifecycle", content=body(bad), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400


async def test_slow_broker_answers_503_within_3s_never_202() -> None:
    e = await _env(SlowPublisher(), wait_s=0.5)
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        resp = await e.http.post(
            "/notifications", content=body(note()), headers={"content-type": "application/json"}
        )
        assert resp.status_code == 503
        assert loop.time() - start < 3
        metrics = (await e.http.get("/metrics")).json()
        assert metrics["rejected"] == {"publish_failed": 1}
        assert metrics["accepted"] == 0
    finally:
        await e.http.aclose()
        await e.server.stop()
