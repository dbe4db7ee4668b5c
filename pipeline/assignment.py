"""One active reader per stream (an organisation's CRM table), also with several workers.

Workers join one Kafka consumer group on a coordination topic (any topic with N partitions; the
compacted ``cursors`` topic fits, its records are never consumed: partitions stay paused). The
reader of stream ``crm:<org>:<table>`` runs on the worker that owns partition
``murmur2(stream) % N`` — Kafka's own key partitioner, so it is also the partition that stream's
cursor lives in. On a rebalance, readers of revoked partitions are cancelled and awaited
before the group moves on (aiokafka awaits the revoke callback), then the new owner starts them
from the stored cursor. The set of streams follows the configuration (:meth:`set_readers`). A
worker that stalls past the session timeout may overlap with its successor for a moment; the
seen-set and cursor then repeat records, never lose them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition

from connectors.kafka_clients import KafkaClients, KafkaConnection
from pipeline.ownership import partition_of

log = logging.getLogger(__name__)

ReaderFactory = Callable[[], Coroutine[Any, Any, None]]
"""Starts one stream's reader loop (runs until cancelled)."""


class ReaderAssignment:
    """Runs, on this worker, the readers of the streams whose partition it owns."""

    def __init__(
        self,
        kafka: KafkaConnection | str,
        *,
        topic: str,
        group_id: str,
        readers: Mapping[str, ReaderFactory] | None = None,
        session_timeout_ms: int = 10_000,
    ) -> None:
        self._topic = topic
        self._readers: dict[str, ReaderFactory] = dict(readers or {})
        self._consumer = KafkaClients(kafka).consumer(
            group_id=group_id,
            enable_auto_commit=False,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(100, session_timeout_ms // 5),
        )
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._partitions = 0
        self._owned: set[int] = set()
        self._poll: asyncio.Task[None] | None = None

    @property
    def running(self) -> frozenset[str]:
        """The streams whose readers run here now."""
        return frozenset(k for k, t in self._tasks.items() if not t.done())

    async def start(self) -> None:
        """Join the group and start polling (which keeps the membership alive)."""
        await self._consumer.start()
        self._consumer.subscribe([self._topic], listener=self)
        self._poll = asyncio.create_task(self._poll_loop())

    async def _poll_loop(self) -> None:
        while True:
            await self._consumer.getmany(timeout_ms=200)

    async def stop(self) -> None:
        """Stop every reader, leave the group."""
        if self._poll is not None:
            self._poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll
            self._poll = None
        await self._stop_streams(list(self._tasks))
        await self._consumer.stop()

    async def set_readers(self, readers: Mapping[str, ReaderFactory]) -> None:
        """The streams wanted now: readers of streams no longer wanted stop, new streams whose
        partition this worker owns start."""
        gone = [s for s in self._tasks if s not in readers]
        self._readers = dict(readers)
        await self._stop_streams(gone)
        self._start_streams(self._owned_streams())

    def _count(self) -> int:
        if not self._partitions:
            self._partitions = len(self._consumer.partitions_for_topic(self._topic) or ())
        if not self._partitions:
            raise RuntimeError(f"coordination topic {self._topic!r} has no partitions")
        return self._partitions

    def _owned_streams(self, partitions: Iterable[int] | None = None) -> list[str]:
        owned = self._owned if partitions is None else set(partitions)
        if not owned:
            return []
        count = self._count()
        return [s for s in self._readers if partition_of(s, count) in owned]

    def _start_streams(self, streams: Iterable[str]) -> None:
        for stream in streams:
            if stream not in self.running:
                log.info("starting reader %s", stream)
                self._tasks[stream] = asyncio.create_task(self._readers[stream]())

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        parts = {tp.partition for tp in revoked if tp.topic == self._topic}
        self._owned -= parts
        await self._stop_streams(self._owned_streams(parts))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._consumer.pause(*assigned)
        self._owned |= {tp.partition for tp in assigned if tp.topic == self._topic}
        self._start_streams(self._owned_streams())

    async def _stop_streams(self, streams: list[str]) -> None:
        tasks = [self._tasks.pop(s) for s in streams if s in self._tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


# aiokafka checks isinstance(listener, ConsumerRebalanceListener); the ABC accepts a registered
# class with the two callbacks.
ConsumerRebalanceListener.register(ReaderAssignment)
