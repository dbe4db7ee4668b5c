"""The Graph connector's Kafka side on the real broker: the receiver publishes only valid
notifications (acks=all) before answering 202; cursors and subscriptions survive a restart in
the compacted cursors topic; the reader publishes changes then stores its deltaLink, so a crash
mid-pass re-reads and loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from connectors.errors import TransientError
from connectors.graph.notifications import NotificationRecord
from connectors.graph.reader import GraphDeltaSource, contacts_stream
from connectors.graph.receiver import ReceiverConfig, ReceiverServer, create_receiver_app
from connectors.graph.subscriptions import (
    ClientStateKey,
    SubscriptionRecord,
    SubscriptionRegistry,
    new_client_state,
    subscription_key,
)
from connectors.graph.sync import OutlookReader, cursor_key
from connectors.graph.transport import GraphTransport
from connectors.http import RetryPolicy
from connectors.store import KafkaCursorStore, KafkaPublisher
from schemas.codec import loads
from schemas.models import ItemChange
from tests.metrics_text import samples

pytestmark = pytest.mark.kafka


@dataclass(frozen=True)
class Topics:
    notifications: str
    changes: str
    cursors: str


@pytest.fixture
async def topics(kafka_bootstrap: str) -> AsyncIterator[Topics]:
    prefix = f"t-graph-{uuid.uuid4().hex[:10]}."
    names = Topics(f"{prefix}graph.notifications", f"{prefix}changes.outlook", f"{prefix}cursors")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    await admin.create_topics(
        [
            NewTopic(names.notifications, 3, 1),
            NewTopic(names.changes, 3, 1),
            NewTopic(names.cursors, 3, 1, topic_configs={"cleanup.policy": "compact"}),
        ]
    )
    yield names
    await admin.delete_topics([names.notifications, names.changes, names.cursors])
    await admin.close()


@pytest.fixture
async def publisher(kafka_bootstrap: str) -> AsyncIterator[KafkaPublisher]:
    pub = KafkaPublisher(kafka_bootstrap)
    await pub.start()
    yield pub
    await pub.stop()


async def read_topic(bootstrap: str, topic: str) -> list[tuple[str, bytes]]:
    """Every record of ``topic`` up to its current end."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        for _ in range(40):
            if consumer.assignment():
                break
            await asyncio.sleep(0.25)
        tps = sorted(consumer.assignment(), key=lambda tp: tp.partition)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[tuple[str, bytes]] = []
        for tp in tps:
            while await consumer.position(tp) < end[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for rec in batch.get(tp, []):
                    out.append((rec.key.decode(), rec.value))
        return out
    finally:
        await consumer.stop()


def note(sid: str, state: str, item: str = "AAMk1") -> dict[str, Any]:
    return {
        "subscriptionId": sid,
        "changeType": "updated",
        "clientState": state,
        "resource": f"Users/mbx-1/Messages/{item}",
        "resourceData": {"id": item},
    }


async def test_receiver_publishes_valid_notifications_once_and_rejects_the_rest(
    kafka_bootstrap: str, topics: Topics, publisher: KafkaPublisher
) -> None:
    writer_store = KafkaCursorStore(publisher, kafka_bootstrap, topics.cursors)
    await writer_store.start()
    state = new_client_state()
    state_key = ClientStateKey.derive("integration test clientState key (32+ chars)")
    rec = SubscriptionRecord(
        "mbx-1",
        "messages",
        state_key.digest(state),
        state_key.key_id,
        "sub-1",
        "2030-01-01T00:00:00Z",
    )
    await writer_store.put(subscription_key("mbx-1", "messages"), rec.to_json())
    # the receiver follows the cursors topic, as a separate process would
    store = KafkaCursorStore(publisher, kafka_bootstrap, topics.cursors)
    await store.start(follow=True)
    config = ReceiverConfig(topic=topics.notifications, max_body_bytes=4096)
    server = ReceiverServer(
        create_receiver_app(config, SubscriptionRegistry(store, state_key), publisher)
    )
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            hdr = {"content-type": "application/json"}
            ok = await http.post(
                "/notifications",
                content=orjson.dumps({"value": [note("sub-1", state)]}),
                headers=hdr,
            )
            assert ok.status_code == 202
            bad = [
                (b"{not json", 400),
                (orjson.dumps({"value": [note("sub-1", "spoofed")]}), 403),
                (orjson.dumps({"value": [note("sub-1", state), note("sub-x", state)]}), 403),
                (orjson.dumps({"value": [note("sub-1", state)] * 60}), 413),
            ]
            for body, status in bad:
                resp = await http.post("/notifications", content=body, headers=hdr)
                assert resp.status_code == status
            metrics = samples((await http.get("/metrics")).text)
    finally:
        await server.stop()
        await store.stop()
    records = await read_topic(kafka_bootstrap, topics.notifications)
    assert len(records) == 1
    key, value = records[0]
    assert key == "mbx-1"
    assert NotificationRecord.from_json(value).item_id == "AAMk1"
    assert state.encode() not in value
    assert metrics["dynasync_webhook_notifications_total"] == 1
    rejected = {k: v for k, v in metrics.items() if k.startswith("dynasync_webhook_rejected_total")}
    assert rejected == {
        f'dynasync_webhook_rejected_total{{reason="{reason}"}}': 1
        for reason in ("malformed", "client_state", "unknown_subscription", "too_large")
    }


async def test_cursor_store_survives_a_restart(
    kafka_bootstrap: str, topics: Topics, publisher: KafkaPublisher
) -> None:
    first = KafkaCursorStore(publisher, kafka_bootstrap, topics.cursors)
    await first.start()
    for i in range(20):
        await first.put(f"delta:s{i % 4}", f"link-{i}")
    await first.put("sub:m:messages", "x")
    await first.put("sub:m:messages", None)
    again = KafkaCursorStore(publisher, kafka_bootstrap, topics.cursors)
    await again.start()
    assert again.items("delta:") == [(f"delta:s{j}", f"link-{16 + j}") for j in range(4)]
    assert again.get("sub:m:messages") is None


@dataclass
class Stub:
    """A scripted Graph delta endpoint: full sync of N contacts in pages, then deltas."""

    url: str = ""
    items: int = 6
    fail_page: int | None = None
    throttle: list[int] = field(default_factory=list)
    hits: list[str] = field(default_factory=list)

    def page(self, n: int) -> dict[str, Any]:
        value = [{"id": f"c{n * 2 + j}", "changeKey": "k1", "givenName": "G"} for j in range(2)]
        if (n + 1) * 2 >= self.items:
            return {"value": value, "@odata.deltaLink": f"{self.url}/v1.0/delta?after=full"}
        return {"value": value, "@odata.nextLink": f"{self.url}/v1.0/next?page={n + 1}"}


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    s = Stub()

    async def handler(request: web.Request) -> web.Response:
        s.hits.append(request.path_qs)
        if s.throttle:
            status = s.throttle.pop(0)
            return web.json_response(
                {"error": {"code": "TooManyRequests" if status == 429 else "Unavailable"}},
                status=status,
                headers={"Retry-After": "1"} if status == 429 else {},
            )
        if request.path.endswith("/contacts/delta"):
            n = 0
        elif request.path.endswith("/next"):
            n = int(request.query["page"])
        else:  # the stored deltaLink: one new change since the full sync
            body = {
                "value": [{"id": "c100", "changeKey": "k1", "givenName": "New"}],
                "@odata.deltaLink": f"{s.url}/v1.0/delta?after=new",
            }
            return web.json_response(body)
        if s.fail_page == n:
            return web.json_response({"error": {"code": "generalException"}}, status=500)
        return web.json_response(s.page(n))

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handler)
    server = ReceiverServer(app)
    await server.start()
    s.url = server.url
    yield s
    await server.stop()


async def test_reader_crash_mid_pass_then_restart_loses_nothing(
    kafka_bootstrap: str, topics: Topics, publisher: KafkaPublisher, stub: Stub
) -> None:
    async def token() -> str:
        return "t"

    async with httpx.AsyncClient() as http:
        transport = GraphTransport(
            http, f"{stub.url}/v1.0", token, policy=RetryPolicy(attempts=2, base_delay=0.01)
        )

        async def streams(mailbox: str) -> list[GraphDeltaSource]:
            return [GraphDeltaSource(transport, contacts_stream(mailbox), org_id="org")]

        async def reader() -> tuple[OutlookReader, KafkaCursorStore]:
            store = KafkaCursorStore(publisher, kafka_bootstrap, topics.cursors)
            await store.start()
            return OutlookReader(streams, publisher, store, changes_topic=topics.changes), store

        stub.fail_page = 2  # the service dies on the third page: pages 1-2 already published
        first, store = await reader()
        with pytest.raises(TransientError):
            await first.sync_mailbox("mbx-1")
        assert store.get(cursor_key("graph:mbx-1:contacts:default")) is None

        stub.fail_page = None  # restart: a new reader, its cursors reloaded from the topic
        second, store = await reader()
        (result,) = await second.sync_mailbox("mbx-1")
        assert result.full_sync and result.published == 6
        third, store = await reader()
        (result,) = await third.sync_mailbox("mbx-1")
        assert not result.full_sync and result.published == 1
        assert stub.hits[-1] == "/v1.0/delta?after=full"
        assert store.get(cursor_key("graph:mbx-1:contacts:default")) == (
            f"{stub.url}/v1.0/delta?after=new"
        )

    records = await read_topic(kafka_bootstrap, topics.changes)
    assert {k for k, _ in records} == {"mbx-1"}
    changes = [loads(ItemChange, v) for _, v in records]
    ids = [c.item_id for c in changes]
    assert set(ids) == {f"c{i}" for i in range(6)} | {"c100"}
    assert len(ids) == 4 + 6 + 1  # the crashed pass re-read; dedupe by change_id removes it
    assert len({c.change_id for c in changes}) == 7


async def test_notifications_coalesce_into_one_throttled_pass_and_are_committed(
    kafka_bootstrap: str, topics: Topics, publisher: KafkaPublisher, stub: Stub
) -> None:
    async def token() -> str:
        return "t"

    for i in range(5):
        rec = NotificationRecord(
            "mbx-1", "contacts", "s1", "2026-01-01T00:00:00Z", "updated", f"c{i}"
        )
        await publisher.send(topics.notifications, "mbx-1", rec.to_json())
    stub.throttle = [429, 503, 504]
    group = f"reader-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient() as http:
        transport = GraphTransport(
            http, f"{stub.url}/v1.0", token, policy=RetryPolicy(attempts=6, base_delay=0.01)
        )

        async def streams(mailbox: str) -> list[GraphDeltaSource]:
            return [GraphDeltaSource(transport, contacts_stream(mailbox), org_id="org")]

        store = KafkaCursorStore(publisher, kafka_bootstrap, topics.cursors)
        await store.start()
        reader = OutlookReader(streams, publisher, store, changes_topic=topics.changes)
        consumer = AIOKafkaConsumer(
            topics.notifications,
            bootstrap_servers=kafka_bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        task = asyncio.create_task(reader.consume(consumer, window_ms=300))
        try:
            for _ in range(100):
                if store.get(cursor_key("graph:mbx-1:contacts:default")):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await consumer.stop()
    # the 429 / 503 / 504 were retried; five notifications made one full pass
    assert [h.split("?")[0] for h in stub.hits[:4]] == ["/v1.0/users/mbx-1/contacts/delta"] * 4
    assert sum(1 for h in stub.hits if h.startswith("/v1.0/users/mbx-1/contacts/delta")) == 4
    records = await read_topic(kafka_bootstrap, topics.changes)
    assert sorted(loads(ItemChange, v).item_id for _, v in records) == [f"c{i}" for i in range(6)]
    # the notification offsets were committed after the pass
    again = AIOKafkaConsumer(
        topics.notifications,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await again.start()
    try:
        batch = await again.getmany(timeout_ms=1500)
        assert sum(len(v) for v in batch.values()) == 0
    finally:
        await again.stop()
