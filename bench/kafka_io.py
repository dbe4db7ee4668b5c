"""Broker plumbing of the benchmark: topics, bulk produce, and a timed tail."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from aiokafka import AIOKafkaProducer
from aiokafka.admin import NewTopic

from connectors.kafka_clients import KafkaClients
from pipeline.cli.topics import ensure_topics
from pipeline.settings import KafkaSettings


async def create_topics(kafka: KafkaSettings, extra: list[str]) -> None:
    """The catalogue topics under ``kafka``'s prefix, plus ``extra`` with the same partitions."""
    await ensure_topics(kafka)
    admin = KafkaClients(kafka).admin()
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, kafka.partitions, kafka.replication_factor) for name in extra]
        )
    finally:
        await admin.close()


async def produce_all(
    producer: AIOKafkaProducer, topic: str, records: Iterator[tuple[bytes, bytes]]
) -> int:
    """Send every (key, value) of ``records`` to ``topic`` and wait for all acks."""
    count = 0
    pending: list[asyncio.Future[object]] = []
    for key, value in records:
        pending.append(await producer.send(topic, value, key=key))
        count += 1
        if len(pending) >= 5000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return count


class TimedTail:
    """Reads a topic from the beginning in the background, stamping each record's arrival."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = KafkaClients(bootstrap).consumer(topic, auto_offset_reset="earliest")
        self.values: list[bytes] = []
        self.arrived: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    if record.value is not None:
                        self.values.append(record.value)
                        self.arrived.append(now)

    async def wait_for(self, count: int, within_s: float) -> None:
        """Until ``count`` records have arrived; TimeoutError after ``within_s``."""
        deadline = time.monotonic() + within_s
        while len(self.values) < count:
            if self._task is not None and self._task.done():
                self._task.result()
            if time.monotonic() > deadline:
                raise TimeoutError(f"saw {len(self.values)} of {count} records in {within_s:.0f} s")
            await asyncio.sleep(0.02)
