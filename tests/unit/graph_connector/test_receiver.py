"""The webhook receiver over a real aiohttp server: handshake, validation, clientState, size,
content type, exact paths, per-source rate limit, bounded logging."""

from __future__ import annotations

import asyncio
import logging
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
    RejectionLog,
    SourceLimiter,
    create_receiver_app,
)
from connectors.graph.subscriptions import (
    ClientStateKey,
    SubscriptionRecord,
    SubscriptionRegistry,
    new_client_state,
    subscription_key,
)
from connectors.store import MemoryCursorStore, MemoryPublisher
from tests.metrics_text import samples

TOPIC = "graph.notifications"
SECRET = new_client_state()
KEY = ClientStateKey.derive("receiver unit tests: a key of 32+ characters")
JSON = {"content-type": "application/json"}


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


def stored_record() -> SubscriptionRecord:
    return SubscriptionRecord(
        "mbx-1", "messages", KEY.digest(SECRET), KEY.key_id, "sub-1", "2030-01-01T00:00:00Z"
    )


async def _env(
    publisher: MemoryPublisher,
    wait_s: float = 2.5,
    *,
    rate_per_s: float = 1000.0,
    burst: int = 1000,
) -> Env:
    store = MemoryCursorStore()
    await store.put(subscription_key("mbx-1", "messages"), stored_record().to_json())
    config = ReceiverConfig(
        topic=TOPIC,
        max_body_bytes=4096,
        publish_timeout_s=wait_s,
        rate_per_s=rate_per_s,
        rate_burst=burst,
    )
    app = create_receiver_app(config, SubscriptionRegistry(store, KEY), publisher)
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
        assert resp.headers["x-content-type-options"] == "nosniff"


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
        metrics = samples((await e.http.get("/metrics")).text)
        assert metrics['dynasync_webhook_rejected_total{reason="publish_failed"}'] == 1
        assert metrics["dynasync_webhook_notifications_total"] == 0
    finally:
        await e.http.aclose()
        await e.server.stop()


# --- Content-Type -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ctype",
    [
        None,
        "",
        "text/plain",
        "application/octet-stream",
        "application/jsonp",
        "application/json; charset=latin-1",
        "application/json;",
        "application/json; garbage",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "json",
        "application/json; x=" + "a" * 300,
    ],
)
async def test_anything_but_json_content_type_is_415(env: Env, ctype: str | None) -> None:
    headers = {} if ctype is None else {"content-type": ctype}
    resp = await env.http.post("/notifications", content=body(note()), headers=headers)
    assert resp.status_code == 415
    error = resp.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert "Content-Type" in error["message"] and len(error["message"]) < 80
    assert env.publisher.records == []
    assert env.stats() == {"unsupported_media_type": 1}


async def test_two_content_type_headers_are_refused_and_logged_bounded(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    headers = [("content-type", "application/json"), ("content-type", "text/plain")]
    for _ in range(20):
        resp = await env.http.post("/lifecycle", content=body(note()), headers=headers)
        assert resp.status_code == 400  # aiohttp's parser refuses duplicates before us
    assert env.publisher.records == []
    assert env.stats() == {"bad_http": 20}
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize(
    "ctype",
    ["application/json; charset=utf-8", "Application/JSON", 'application/json;charset="UTF-8"'],
)
async def test_json_content_type_with_parameters_is_accepted(env: Env, ctype: str) -> None:
    resp = await env.http.post(
        "/notifications", content=body(note()), headers={"content-type": ctype}
    )
    assert resp.status_code == 202
    assert len(env.publisher.records) == 1


# --- exact paths (raw requests: no client-side normalisation) -------------------------------


async def raw_request(
    port: int, method: str, target: str, payload: bytes = b""
) -> tuple[int, bytes]:
    """Send one HTTP/1.1 request with ``target`` byte for byte; return (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    writer.write(head.encode("latin-1") + payload)
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


PATH_TRICKS = [
    "/notifications/../metrics",
    "/notifications/%2e%2e/metrics",
    "/notifications/%2E%2E/metrics",
    "/notifications/..%2fmetrics",
    "/x/../../metrics",
    "//metrics",
    "/./metrics",
    "/metrics/",
    "/%6detrics",
    "/metrics%00",
    "/METRICS",
    "http://127.0.0.1/metrics",
    "/metrics;x=1",
]


@pytest.mark.parametrize("target", PATH_TRICKS)
async def test_path_tricks_never_reach_metrics(env: Env, target: str) -> None:
    status, payload = await raw_request(env.server.port, "GET", target)
    assert status == 404
    assert b"accepted" not in payload
    assert env.stats() == {"bad_path": 1}


@pytest.mark.parametrize(
    "target",
    [
        "/%6eotifications",
        "/notifications/",
        "//notifications",
        "/./notifications",
        "/lifecycle/../notifications",
        "/notifications%2f",
        "/notifications/.",
        "http://evil.test/notifications",
    ],
)
async def test_path_tricks_to_notifications_publish_nothing(env: Env, target: str) -> None:
    status, _ = await raw_request(env.server.port, "POST", target, body(note()))
    assert status == 404
    assert env.publisher.records == []
    # the same body on the exact path is good: only the path was wrong
    status, _ = await raw_request(env.server.port, "POST", "/notifications", body(note()))
    assert status == 202


async def test_exact_metrics_path_still_works(env: Env) -> None:
    status, payload = await raw_request(env.server.port, "GET", "/metrics")
    assert status == 200
    assert samples(payload.decode())["dynasync_webhook_notifications_total"] == 0


async def test_wrong_method_is_405_and_counted(env: Env) -> None:
    resp = await env.http.delete("/notifications")
    assert resp.status_code == 405
    assert "POST" in resp.headers["allow"]
    assert env.stats() == {"method_not_allowed": 1}


# --- rate limit -----------------------------------------------------------------------------


async def test_over_the_per_source_limit_is_429_with_retry_after() -> None:
    e = await _env(MemoryPublisher(), rate_per_s=0.1, burst=3)
    try:
        for _ in range(3):
            resp = await e.http.post("/notifications", content=body(note()), headers=JSON)
            assert resp.status_code == 202
        resp = await e.http.post("/notifications", content=body(note()), headers=JSON)
        assert resp.status_code == 429
        assert 1 <= int(resp.headers["retry-after"]) <= 10
        assert resp.json()["error"]["code"] == "rate_limited"
        assert len(e.publisher.records) == 3
        assert e.stats() == {"rate_limited": 1}
    finally:
        await e.http.aclose()
        await e.server.stop()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_per_source() -> None:
    clock = FakeClock()
    limiter = SourceLimiter(rate_per_s=2.0, burst=2, max_sources=100, clock=clock)
    assert [limiter.acquire("a") for _ in range(2)] == [0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.5)
    assert limiter.acquire("b") == 0.0  # another source has its own bucket
    clock.now += 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    clock.now += 3600  # refills only up to the burst
    assert [limiter.acquire("a") for _ in range(3)][2] > 0


def test_tracked_sources_stay_bounded_evicting_the_least_recent() -> None:
    clock = FakeClock()
    limiter = SourceLimiter(rate_per_s=0.1, burst=1, max_sources=50, clock=clock)
    assert limiter.acquire("busy") == 0.0
    for i in range(10_000):
        limiter.acquire(f"10.0.{i // 256}.{i % 256}")
        if i % 10 == 0:
            assert limiter.acquire("busy") > 0  # still throttled: seen recently, kept
        assert len(limiter) <= 50
    assert len(limiter) == 50
    assert limiter.acquire("10.0.0.0") == 0.0  # long evicted: a fresh bucket


# --- bounded logging ------------------------------------------------------------------------


def test_rejection_log_logs_one_line_per_reason_then_a_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    logger = logging.getLogger("test.rejections")
    rl = RejectionLog(logger, interval_s=60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.rejections"):
        for _ in range(1200):
            rl.record("client_state", "clientState does not match")
        for _ in range(34):
            rl.record("malformed", "body is not JSON")
        assert [r.getMessage() for r in caplog.records] == [
            "webhook rejected (client_state): clientState does not match",
            "webhook rejected (malformed): body is not JSON",
        ]
        clock.now += 59
        rl.record("client_state", "x")
        assert len(caplog.records) == 2
        clock.now += 1
        rl.record("too_large", "body exceeds 10 bytes")
        messages = [r.getMessage() for r in caplog.records]
        assert messages[2] == (
            "rejected 1,235 webhook requests (client_state: 1,201, malformed: 34) in the last 60 s"
        )
        assert messages[3] == "webhook rejected (too_large): body exceeds 10 bytes"
        rl.flush()  # one rejection, already logged: nothing more to say
        assert len(caplog.records) == 4
        rl.record("too_large", "again")
        rl.record("too_large", "and again")
        clock.now += 5
        rl.flush()
        assert caplog.records[-1].getMessage() == (
            "rejected 2 webhook requests (too_large: 2) in the last 5 s"
        )
        assert len(caplog.records) == 6


# --- clientState hashing --------------------------------------------------------------------


def test_stored_record_holds_an_hmac_not_the_client_state() -> None:
    raw = stored_record().to_json()
    assert SECRET not in raw and 'client_state"' not in raw
    loaded = SubscriptionRecord.from_json(raw, KEY)
    assert loaded == stored_record() and not loaded.legacy
    other = ClientStateKey.derive("some other key, also at least 32 chars")
    assert other.digest(SECRET) != KEY.digest(SECRET)


async def test_old_plaintext_record_is_hashed_on_load_and_verifies() -> None:
    store = MemoryCursorStore()
    old = {
        "mailbox_id": "mbx-1",
        "resource": "messages",
        "client_state": SECRET,
        "subscription_id": "sub-1",
        "expires_at": "2030-01-01T00:00:00Z",
    }
    await store.put(subscription_key("mbx-1", "messages"), orjson.dumps(old).decode())
    registry = SubscriptionRegistry(store, KEY)
    rec = registry.lookup("sub-1")
    assert rec is not None and rec.legacy
    assert rec == stored_record()
    assert registry.client_state_matches(rec, SECRET)
    assert not registry.client_state_matches(rec, SECRET[:-1])
    assert not registry.client_state_matches(rec, None)
    assert SECRET not in rec.to_json()


async def test_record_made_under_another_key_rejects_its_client_state(env: Env) -> None:
    other = ClientStateKey.derive("some other key, also at least 32 chars")
    store = MemoryCursorStore()
    rec = SubscriptionRecord("m", "messages", other.digest(SECRET), other.key_id, "sub-1")
    await store.put(subscription_key("m", "messages"), rec.to_json())
    registry = SubscriptionRegistry(store, KEY)
    found = registry.lookup("sub-1")
    assert found is not None
    assert not registry.client_state_matches(found, SECRET)
