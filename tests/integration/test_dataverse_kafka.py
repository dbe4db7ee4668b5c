"""The Dataverse change reader on the real broker: every row version reaches crm.raw once
(deletes included), a kill between publish and cursor store loses nothing, and an expired change
token runs a full sync that emits no spurious deletes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from connectors.dataverse.publisher import CrmTableReader
from connectors.dataverse.reader import DataverseChangeSource
from connectors.dataverse.writer import DataverseWriter
from connectors.store import CursorStore, KafkaCursorStore, KafkaPublisher, Publisher
from schemas.codec import loads
from schemas.models import ItemChange
from tests.contract.dataverse_connector.fixtures import (
    USER_A,
    Emulator,
    MakeEmulator,
    make_emulator,
)
from tests.contract.dataverse_connector.helpers import ORG, command

pytestmark = pytest.mark.kafka
__all__ = ["make_emulator"]


@dataclass(frozen=True)
class Topics:
    raw: str
    cursors: str


@pytest.fixture
async def topics(kafka_bootstrap: str) -> AsyncIterator[Topics]:
    prefix = f"t-dv-{uuid.uuid4().hex[:10]}."
    names = Topics(f"{prefix}crm.raw", f"{prefix}cursors")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    await admin.create_topics(
        [
            NewTopic(names.raw, 3, 1),
            NewTopic(names.cursors, 3, 1, topic_configs={"cleanup.policy": "compact"}),
        ]
    )
    yield names
    await admin.delete_topics([names.raw, names.cursors])
    await admin.close()


@pytest.fixture
async def publisher(kafka_bootstrap: str) -> AsyncIterator[KafkaPublisher]:
    pub = KafkaPublisher(kafka_bootstrap, client_id="dynasync-dataverse-test")
    await pub.start()
    yield pub
    await pub.stop()


@pytest.fixture
async def dv(make_emulator: MakeEmulator) -> Emulator:
    return await make_emulator()


async def raw_changes(bootstrap: str, topic: str) -> list[tuple[str, ItemChange]]:
    """Every (key, change) of ``topic`` up to its current end."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        for _ in range(40):
            if consumer.assignment():
                break
            await asyncio.sleep(0.25)
        tps = list(consumer.assignment())
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[tuple[str, ItemChange]] = []
        pending = {tp for tp in tps if end[tp] > 0}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    assert rec.key is not None and rec.value is not None
                    out.append((rec.key.decode(), loads(ItemChange, rec.value)))
            for tp in list(pending):
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
        return out
    finally:
        await consumer.stop()


async def cursor_store(
    bootstrap: str, topics: Topics, publisher: KafkaPublisher
) -> KafkaCursorStore:
    store = KafkaCursorStore(publisher, bootstrap, topics.cursors)
    await store.start()
    return store


def reader(
    dv: Emulator, publisher: Publisher, store: CursorStore, topics: Topics
) -> CrmTableReader:
    source = DataverseChangeSource(dv.client, org_id=ORG, table="contact", page_size=3)
    return CrmTableReader(source, publisher, store, raw_topic=topics.raw)


async def create_contacts(dv: Emulator, n: int) -> list[str]:
    writer = DataverseWriter(dv.client, org_id=ORG)
    outcomes = await writer.apply(
        [
            command("contact", "create", fields={"lastname": f"C{i}"}, run_as=USER_A)
            for i in range(n)
        ]
    )
    assert all(o.status == "applied" for o in outcomes)
    return [o.target_id or "" for o in outcomes]


async def test_each_version_reaches_crm_raw_once_deletes_included(
    kafka_bootstrap: str, topics: Topics, publisher: KafkaPublisher, dv: Emulator
) -> None:
    store = await cursor_store(kafka_bootstrap, topics, publisher)
    ids = await create_contacts(dv, 7)
    run = reader(dv, publisher, store, topics)
    first = await run.run_once()
    assert first.full_sync and first.published == 7
    writer = DataverseWriter(dv.client, org_id=ORG)
    await writer.apply(
        [
            command("contact", "update", fields={"lastname": "Changed"}, target_id=ids[0]),
            command("contact", "delete", target_id=ids[1]),
        ]
    )
    second = await run.run_once()
    assert not second.full_sync and second.published == 2
    third = await run.run_once()
    assert third.published == 0
    records = await raw_changes(kafka_bootstrap, topics.raw)
    change_ids = [c.change_id for _, c in records]
    assert len(change_ids) == len(set(change_ids)) == 9
    assert all(key == c.item_id for key, c in records)
    assert [c.op for _, c in records if c.item_id == ids[1]] == ["upsert", "delete"]
    versions = [c.version for _, c in records if c.item_id == ids[0]]
    assert len(versions) == 2 and versions[0] != versions[1]
    assert store.get(f"crm:{ORG}:contact") is not None
    await store.stop()


class _HangingCursorStore:
    """Passes through to a real store but never finishes storing the table's cursor."""

    def __init__(self, inner: KafkaCursorStore, key: str) -> None:
        self.inner = inner
        self.key = key
        self.reached = asyncio.Event()

    def get(self, key: str) -> str | None:
        return self.inner.get(key)

    def items(self, prefix: str = "") -> list[tuple[str, str]]:
        return self.inner.items(prefix)

    async def put(self, key: str, value: str | None) -> None:
        if key == self.key:
            self.reached.set()
            await asyncio.Event().wait()
        await self.inner.put(key, value)


async def test_kill_between_publish_and_cursor_store_then_restart(
    kafka_bootstrap: str, topics: Topics, publisher: KafkaPublisher, dv: Emulator
) -> None:
    store = await cursor_store(kafka_bootstrap, topics, publisher)
    first = await create_contacts(dv, 4)
    await reader(dv, publisher, store, topics).run_once()
    await store.stop()
    second = await create_contacts(dv, 5)

    store = await cursor_store(kafka_bootstrap, topics, publisher)
    hanging = _HangingCursorStore(store, f"crm:{ORG}:contact")
    task = asyncio.create_task(reader(dv, publisher, hanging, topics).run_once())
    await asyncio.wait_for(hanging.reached.wait(), 20)
    task.cancel()  # killed after publishing, before the cursor is stored
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.stop()
    third = await create_contacts(dv, 2)

    store = await cursor_store(kafka_bootstrap, topics, publisher)  # restart: state from Kafka
    result = await reader(dv, publisher, store, topics).run_once()
    assert not result.full_sync
    assert sorted(result.published_ids) == sorted(third)
    records = await raw_changes(kafka_bootstrap, topics.raw)
    seen = [c.item_id for _, c in records]
    assert sorted(seen) == sorted(first + second + third)  # nothing missed, nothing twice
    await store.stop()


async def test_expired_token_full_sync_emits_no_spurious_deletes(
    kafka_bootstrap: str, topics: Topics, publisher: KafkaPublisher, dv: Emulator
) -> None:
    store = await cursor_store(kafka_bootstrap, topics, publisher)
    ids = await create_contacts(dv, 6)
    run = reader(dv, publisher, store, topics)
    await run.run_once()
    before = {c.change_id for _, c in await raw_changes(kafka_bootstrap, topics.raw)}
    writer = DataverseWriter(dv.client, org_id=ORG)
    await writer.apply(
        [
            command("contact", "update", fields={"lastname": "New"}, target_id=ids[0]),
            command("contact", "delete", target_id=ids[1]),
        ]
    )
    await dv.control("POST", "expire-tokens")
    result = await run.run_once()
    assert result.full_sync
    assert result.reconciled_deletes == 1
    assert result.skipped == 4  # unchanged rows are not published again
    records = await raw_changes(kafka_bootstrap, topics.raw)
    later = [c for _, c in records if c.change_id not in before]
    assert sorted((c.item_id, c.op) for c in later) == sorted(
        [(ids[0], "upsert"), (ids[1], "delete")]
    )
    deletes = [c.item_id for _, c in records if c.op == "delete"]
    assert deletes == [ids[1]]
    again = await run.run_once()
    assert not again.full_sync and again.published == 0
    await store.stop()
