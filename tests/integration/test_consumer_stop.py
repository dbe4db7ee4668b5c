"""``stop_consumer`` against aiokafka's stop while a fetch is retrying: aiokafka 0.14 raises
the fetch's cancellation out of ``stop()`` (a worker's config reload during a broker stall
died of it); ``stop_consumer`` stops the consumer and closes its connections instead."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import ConsumerStoppedError

from connectors.kafka_clients import stop_consumer

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(60)]


async def _retrying_consumer(bootstrap: str) -> tuple[AIOKafkaConsumer, asyncio.Task[object]]:
    """A consumer whose long-poll fetch timed out and now waits out a 30 s retry backoff."""
    topic = f"stop-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=3000,  # the broker holds the fetch longer than the client waits
        request_timeout_ms=1000,
        retry_backoff_ms=30_000,
    )
    await consumer.start()
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    waiting = asyncio.create_task(consumer.getmany(timeout_ms=20_000))
    await asyncio.sleep(2.5)  # the fetch timed out after 1 s and sleeps in its backoff
    return consumer, waiting


async def test_aiokafka_stop_raises_the_cancelled_fetch(kafka_bootstrap: str) -> None:
    """The library fault stop_consumer exists for (if aiokafka fixes it, this test says so)."""
    consumer, waiting = await _retrying_consumer(kafka_bootstrap)
    try:
        with pytest.raises(asyncio.CancelledError):
            await consumer.stop()
        task = asyncio.current_task()
        assert task is not None and not task.cancelling()  # nobody cancelled this test
    finally:
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)


async def test_stop_consumer_stops_it_without_raising(kafka_bootstrap: str) -> None:
    consumer, waiting = await _retrying_consumer(kafka_bootstrap)
    try:
        await stop_consumer(consumer)  # no CancelledError into a caller nobody cancelled
        with pytest.raises(ConsumerStoppedError):
            await consumer.getmany(timeout_ms=100)
    finally:
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)


async def test_a_cancelled_caller_is_still_cancelled(kafka_bootstrap: str) -> None:
    consumer, waiting = await _retrying_consumer(kafka_bootstrap)
    try:
        stopping = asyncio.create_task(stop_consumer(consumer))
        await asyncio.sleep(0)
        stopping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopping
    finally:
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
