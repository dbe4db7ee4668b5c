"""The local Kafka started by deploy/kafka/kafka.sh works with the project's client.

Needs a running broker (``make kafka-up``); its address comes from
``DYNASYNC_KAFKA_BOOTSTRAP`` (default 127.0.0.1:9092). The cluster test needs
``make kafka-cluster-up`` and ``DYNASYNC_KAFKA_CLUSTER_BOOTSTRAP``. When no broker
answers, the tests skip, unless ``DYNASYNC_KAFKA_REQUIRED=1`` makes that a failure.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import UnknownTopicOrPartitionError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
_SERVER = re.compile(r"^[A-Za-z0-9.\-]+:(\d{1,5})$")


def parse_bootstrap(raw: str) -> str:
    """Validate a comma-separated ``host:port`` list and return it normalised."""
    servers = [part.strip() for part in raw.split(",")]
    for server in servers:
        match = _SERVER.match(server)
        if match is None or not 1 <= int(match.group(1)) <= 65535:
            raise ValueError(f"bad Kafka bootstrap server {server!r} in {raw!r}: want host:port")
    return ",".join(servers)


def bootstrap_from_env(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    """Read and validate a bootstrap list from ``env[name]`` (or the default)."""
    raw = env.get(name, default)
    return None if raw is None else parse_bootstrap(raw)


async def reachable(bootstrap: str) -> bool:
    """Whether a broker at ``bootstrap`` answers a metadata request."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await client.bootstrap()
    except Exception:
        return False
    finally:
        await client.close()
    return True


async def require_broker(bootstrap: str) -> None:
    """Skip (or fail when DYNASYNC_KAFKA_REQUIRED=1) if no broker answers."""
    if await reachable(bootstrap):
        return
    reason = f"no Kafka broker answers on {bootstrap} (start one: make kafka-up)"
    if os.environ.get("DYNASYNC_KAFKA_REQUIRED") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def topic_errors(response: Any) -> list[tuple[str, int]]:
    """The (topic, error code) pairs of a CreateTopics response that are not OK."""
    return [(entry[0], entry[1]) for entry in response.topic_errors if entry[1] != 0]


@pytest.fixture
async def admin() -> AsyncIterator[AIOKafkaAdminClient]:
    bootstrap = bootstrap_from_env(os.environ, "DYNASYNC_KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP)
    assert bootstrap is not None
    await require_broker(bootstrap)
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def create_topic(admin: AIOKafkaAdminClient, partitions: int, replicas: int) -> str:
    name = f"test-broker-{uuid.uuid4().hex[:12]}"
    response = await admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=replicas)]
    )
    assert topic_errors(response) == []
    return name


async def produce(bootstrap: str, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i in range(count):
            meta = await producer.send_and_wait(
                topic, value=f"v{i}".encode(), key=f"k{i % 3}".encode()
            )
            assert meta.offset >= 0
    finally:
        await producer.stop()


async def consume(
    bootstrap: str, topic: str, group: str, count: int
) -> tuple[list[bytes], AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    values: list[bytes] = []
    while len(values) < count:
        batches = await consumer.getmany(timeout_ms=10000)
        assert batches, f"no records within 10 s after {len(values)} of {count}"
        for records in batches.values():
            values.extend(record.value for record in records if record.value is not None)
    return values, consumer


def test_parse_bootstrap_accepts_lists() -> None:
    assert parse_bootstrap(" 127.0.0.1:9092, localhost:19093") == "127.0.0.1:9092,localhost:19093"
    assert bootstrap_from_env({}, "X", None) is None
    assert bootstrap_from_env({"X": "h:1"}, "X", DEFAULT_BOOTSTRAP) == "h:1"


@pytest.mark.parametrize(
    "garbage", ["", "127.0.0.1", "host:port", "h:0", "h:70000", "a:1,,b:2", "h:1/x"]
)
def test_parse_bootstrap_rejects_garbage(garbage: str) -> None:
    with pytest.raises(ValueError, match="bad Kafka bootstrap server"):
        parse_bootstrap(garbage)


@pytest.mark.kafka
@pytest.mark.timeout(60)
async def test_produce_consume_commit(admin: AIOKafkaAdminClient) -> None:
    bootstrap = bootstrap_from_env(os.environ, "DYNASYNC_KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP)
    assert bootstrap is not None
    topic = await create_topic(admin, partitions=1, replicas=1)
    group = f"test-group-{uuid.uuid4().hex[:12]}"
    try:
        await produce(bootstrap, topic, 10)
        values, consumer = await consume(bootstrap, topic, group, 10)
        try:
            assert values == [f"v{i}".encode() for i in range(10)]
            await consumer.commit()
            assert await consumer.committed(TopicPartition(topic, 0)) == 10
        finally:
            await consumer.stop()
        offsets = await admin.list_consumer_group_offsets(group)
        assert offsets[TopicPartition(topic, 0)].offset == 10
    finally:
        await admin.delete_topics([topic])


@pytest.mark.kafka
@pytest.mark.timeout(60)
async def test_topics_are_not_auto_created(admin: AIOKafkaAdminClient) -> None:
    bootstrap = bootstrap_from_env(os.environ, "DYNASYNC_KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP)
    assert bootstrap is not None
    missing = f"test-missing-{uuid.uuid4().hex[:12]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    await producer.start()
    try:
        with pytest.raises(UnknownTopicOrPartitionError):
            await producer.send_and_wait(missing, b"x")
    finally:
        await producer.stop()
    assert missing not in await admin.list_topics()


@pytest.mark.kafka
@pytest.mark.cluster
@pytest.mark.timeout(90)
async def test_cluster_rf3_acks_all() -> None:
    bootstrap = bootstrap_from_env(os.environ, "DYNASYNC_KAFKA_CLUSTER_BOOTSTRAP", None)
    if bootstrap is None:
        pytest.skip("DYNASYNC_KAFKA_CLUSTER_BOOTSTRAP is not set (start: make kafka-cluster-up)")
    await require_broker(bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        topic = await create_topic(admin, partitions=3, replicas=3)
        try:
            # a fresh cluster may answer before every broker has the new topic's metadata
            for _ in range(100):
                [described] = await admin.describe_topics([topic])
                partitions = described["partitions"]
                if len(partitions) == 3 and all(len(p["isr"]) == 3 for p in partitions):
                    break
                await asyncio.sleep(0.1)
            assert len(described["partitions"]) == 3
            for partition in described["partitions"]:
                assert sorted(partition["replicas"]) == [1, 2, 3]
                assert sorted(partition["isr"]) == [1, 2, 3]
            await produce(bootstrap, topic, 9)
            values, consumer = await consume(bootstrap, topic, f"g-{topic}", 9)
            await consumer.stop()
            assert sorted(values) == sorted(f"v{i}".encode() for i in range(9))
        finally:
            await admin.delete_topics([topic])
    finally:
        await admin.close()
