"""Durable publishing and the compacted cursor store (delta links, subscriptions).

``Publisher.send`` returns only once the broker has acknowledged the record (acks=all), so a
caller may act on that (store a cursor, answer 202). ``CursorStore`` keeps the latest value of
each key of the compacted ``cursors`` topic in memory, loaded from the topic on start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from aiokafka import AIOKafkaConsumer

from connectors.kafka_clients import KafkaClients, KafkaConnection, stop_consumer

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """Sends records and waits for the broker's acknowledgement."""

    async def send(self, topic: str, key: str, value: bytes | None) -> None:
        """Publish one record keyed by ``key``; returns when it is durable."""
        ...


class KafkaPublisher:
    """An idempotent aiokafka producer with acks=all (a plain ``kafka`` string: PLAINTEXT)."""

    def __init__(self, kafka: KafkaConnection | str, *, client_id: str = "dynasync-graph") -> None:
        self._producer = KafkaClients(kafka).producer(
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
        )

    async def start(self) -> None:
        """Connect to the broker."""
        await self._producer.start()

    async def stop(self) -> None:
        """Flush and disconnect."""
        await self._producer.stop()

    async def send(self, topic: str, key: str, value: bytes | None) -> None:
        await self._producer.send_and_wait(topic, value, key=key.encode("utf-8"))


class MemoryPublisher:
    """An in-memory publisher, for tests and single-process use: records every send."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, bytes | None]] = []

    async def send(self, topic: str, key: str, value: bytes | None) -> None:
        self.records.append((topic, key, value))

    def on(self, topic: str) -> list[tuple[str, bytes | None]]:
        """The (key, value) pairs sent to ``topic``, in order."""
        return [(k, v) for t, k, v in self.records if t == topic]


class CursorStore(Protocol):
    """Latest value per key of the compacted cursors topic."""

    def get(self, key: str) -> str | None:
        """The stored value of ``key``, or None."""
        ...

    def items(self, prefix: str = "") -> list[tuple[str, str]]:
        """Every (key, value) whose key starts with ``prefix``."""
        ...

    async def put(self, key: str, value: str | None) -> None:
        """Store ``value`` (None deletes the key); returns when it is durable."""
        ...


class MemoryCursorStore:
    """A CursorStore kept in a dict (tests, and a reference for the Kafka one)."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def items(self, prefix: str = "") -> list[tuple[str, str]]:
        return sorted((k, v) for k, v in self.data.items() if k.startswith(prefix))

    async def put(self, key: str, value: str | None) -> None:
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value


class KafkaCursorStore:
    """A CursorStore over the compacted ``cursors`` topic.

    ``start`` reads the topic from the beginning up to its end offsets, so every value written
    before is known; with ``follow`` it keeps consuming, so values written by other processes
    (e.g. the subscription manager, seen by the receiver) show up here too.
    """

    def __init__(self, publisher: Publisher, kafka: KafkaConnection | str, topic: str) -> None:
        self._publisher = publisher
        self._clients = KafkaClients(kafka)
        self._topic = topic
        self._data: dict[str, str] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._follow: asyncio.Task[None] | None = None

    async def start(self, *, follow: bool = False) -> None:
        """Load every stored value; optionally keep following the topic."""
        consumer = self._clients.consumer(
            self._topic,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        self._consumer = consumer
        for _ in range(40):  # a just-created topic takes a moment to appear in metadata
            if consumer.assignment():
                break
            await asyncio.sleep(0.25)
        tps = sorted(consumer.assignment(), key=lambda tp: tp.partition)
        if not tps:
            await stop_consumer(consumer)
            self._consumer = None
            raise RuntimeError(f"topic {self._topic!r} does not exist")
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if end[tp] > 0}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    self._apply(rec.key, rec.value)
            for tp in list(pending):
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
        if follow:
            self._follow = asyncio.create_task(self._follow_loop(consumer))
        else:
            await stop_consumer(consumer)
            self._consumer = None

    async def _follow_loop(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for rec in records:
                    self._apply(rec.key, rec.value)

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        k = key.decode("utf-8", errors="replace")
        if value is None:
            self._data.pop(k, None)
        else:
            self._data[k] = value.decode("utf-8", errors="replace")

    async def stop(self) -> None:
        """Stop following."""
        if self._follow is not None:
            self._follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follow
            self._follow = None
        if self._consumer is not None:
            await stop_consumer(self._consumer)
            self._consumer = None

    def get(self, key: str) -> str | None:
        return self._data.get(key)

    def items(self, prefix: str = "") -> list[tuple[str, str]]:
        return sorted((k, v) for k, v in self._data.items() if k.startswith(prefix))

    async def put(self, key: str, value: str | None) -> None:
        await self._publisher.send(
            self._topic, key, None if value is None else value.encode("utf-8")
        )
        if value is None:
            self._data.pop(key, None)
        else:
            self._data[key] = value
