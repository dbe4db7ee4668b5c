"""End to end on the real broker and the Graph emulator: a change made in Outlook reaches
changes.outlook once, via webhook (subscription → receiver → graph.notifications → reader) and
via delta; a throttled, faulty, slow service still delivers every change."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from connectors.graph.reader import GraphDeltaSource, contacts_stream
from connectors.graph.receiver import ReceiverConfig, ReceiverServer, create_receiver_app
from connectors.graph.subscriptions import (
    ClientStateKey,
    SubscriptionManager,
    SubscriptionRegistry,
)
from connectors.graph.sync import OutlookReader, cursor_key
from connectors.graph.transport import GraphTransport
from connectors.http import RetryPolicy
from connectors.store import KafkaCursorStore, KafkaPublisher
from schemas.codec import loads
from schemas.models import ItemChange
from tests.contract.graph_connector.emulator import TOKEN, GraphEmulator, start_emulator
from tests.integration.test_graph_kafka import read_topic

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def emulator() -> Iterator[GraphEmulator]:
    yield from start_emulator()


@dataclass(frozen=True)
class Topics:
    notifications: str
    changes: str
    cursors: str


@pytest.fixture
async def topics(kafka_bootstrap: str) -> AsyncIterator[Topics]:
    prefix = f"t-graphe2e-{uuid.uuid4().hex[:10]}."
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


async def _token() -> str:
    return TOKEN


async def changes_of(bootstrap: str, topic: str) -> list[ItemChange]:
    return [loads(ItemChange, v) for _, v in await read_topic(bootstrap, topic)]


async def test_change_reaches_changes_outlook_once_via_webhook_and_via_delta(
    kafka_bootstrap: str, topics: Topics, emulator: GraphEmulator
) -> None:
    mailbox = await emulator.new_mailbox()
    publisher = KafkaPublisher(kafka_bootstrap)
    await publisher.start()
    store = KafkaCursorStore(publisher, kafka_bootstrap, topics.cursors)
    await store.start(follow=True)
    config = ReceiverConfig(topic=topics.notifications)
    state_key = ClientStateKey.derive("integration test clientState key (32+ chars)")
    receiver = ReceiverServer(
        create_receiver_app(config, SubscriptionRegistry(store, state_key), publisher)
    )
    await receiver.start()
    consumer = AIOKafkaConsumer(
        topics.notifications,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"reader-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    task: asyncio.Task[None] | None = None
    try:
        async with httpx.AsyncClient() as http:
            transport = GraphTransport(
                http, emulator.base, _token, policy=RetryPolicy(attempts=8, base_delay=0.05)
            )
            manager = SubscriptionManager(
                transport,
                store,
                key=state_key,
                notification_url=f"{receiver.url}/notifications",
                lifecycle_url=f"{receiver.url}/lifecycle",
                resources=("contacts",),
            )
            (sub,) = await manager.ensure(mailbox)
            assert sub.subscription_id

            async def streams(m: str) -> list[GraphDeltaSource]:
                return [GraphDeltaSource(transport, contacts_stream(m), org_id="org")]

            reader = OutlookReader(streams, publisher, store, changes_topic=topics.changes)
            await reader.sync_mailbox(mailbox)  # the initial full sync: empty mailbox
            task = asyncio.create_task(reader.consume(consumer, window_ms=200))

            resp = await emulator.call(
                "POST", f"users/{mailbox}/contacts", {"givenName": "Webhook", "surname": "One"}
            )
            assert resp.status_code == 201, resp.text
            item_id = resp.json()["id"]
            for _ in range(100):
                if any(
                    c.item_id == item_id for c in await changes_of(kafka_bootstrap, topics.changes)
                ):
                    break
                await asyncio.sleep(0.2)
            mine = [
                c for c in await changes_of(kafka_bootstrap, topics.changes) if c.item_id == item_id
            ]
            assert len(mine) == 1, "the change arrives once, through the webhook"
            assert mine[0].projection["firstname"] == "Webhook"
            assert mine[0].mailbox_id == mailbox

            # via delta alone: stop the webhook path, edit, run a pass
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            task = None
            resp = await emulator.call(
                "PATCH", f"users/{mailbox}/contacts/{item_id}", {"givenName": "Delta"}
            )
            assert resp.status_code == 200, resp.text
            await reader.sync_mailbox(mailbox)
            await reader.sync_mailbox(mailbox)  # a second pass finds nothing new
            mine = [
                c for c in await changes_of(kafka_bootstrap, topics.changes) if c.item_id == item_id
            ]
            assert [c.projection["firstname"] for c in mine] == ["Webhook", "Delta"]
            assert len({c.change_id for c in mine}) == 2
            assert store.get(cursor_key(f"graph:{mailbox}:contacts:default"))
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await consumer.stop()
        await receiver.stop()
        await store.stop()
        await publisher.stop()


async def test_throttled_faulty_slow_service_still_delivers_every_change(
    kafka_bootstrap: str, topics: Topics, emulator: GraphEmulator
) -> None:
    mailbox = await emulator.new_mailbox()
    created = []
    for i in range(12):
        resp = await emulator.call(
            "POST", f"users/{mailbox}/contacts", {"givenName": f"N{i}", "surname": "T"}
        )
        assert resp.status_code == 201, resp.text
        created.append(resp.json()["id"])
    await emulator.control(
        "faults",
        {"status": 429, "rate": 0.3, "retry_after": 1, "latency_ms": 30, "mailbox": mailbox},
    )
    publisher = KafkaPublisher(kafka_bootstrap)
    await publisher.start()
    store = KafkaCursorStore(publisher, kafka_bootstrap, topics.cursors)
    await store.start()
    try:
        async with httpx.AsyncClient() as http:
            transport = GraphTransport(
                http, emulator.base, _token, policy=RetryPolicy(attempts=30, base_delay=0.05)
            )

            async def streams(m: str) -> list[GraphDeltaSource]:
                return [GraphDeltaSource(transport, contacts_stream(m), org_id="org", page_size=3)]

            reader = OutlookReader(streams, publisher, store, changes_topic=topics.changes)
            await reader.sync_mailbox(mailbox)
            await emulator.control("faults", {"status": 429, "rate": 0, "mailbox": mailbox})
            for item_id in created[:4]:
                resp = await emulator.call(
                    "PATCH", f"users/{mailbox}/contacts/{item_id}", {"surname": "Changed"}
                )
                assert resp.status_code == 200, resp.text
            await emulator.control(
                "faults", {"status": 503, "rate": 0.3, "latency_ms": 30, "mailbox": mailbox}
            )
            await reader.sync_mailbox(mailbox)
    finally:
        await store.stop()
        await publisher.stop()
        await emulator.control("faults", {"status": 503, "rate": 0})
    changes = await changes_of(kafka_bootstrap, topics.changes)
    assert {c.item_id for c in changes} == set(created)
    changed = {c.item_id for c in changes if c.projection.get("lastname") == "Changed"}
    assert changed == set(created[:4])
