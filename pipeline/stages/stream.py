"""A partitioned stream processor on plain aiokafka, with its state in changelog tables.

:class:`StreamProcessor` reads its source topics in a consumer group, a batch at a time, and
hands each record, in offset order per partition, to a handler. The handler reads and writes
:class:`ChangelogTable` s (the state of the record's partition) and returns the send futures of
what the record caused. The table writes go to compacted changelog topics, partitioned like the
source, and a source offset is committed only once every record before it in its partition is
handled and all it caused (outputs and table writes) is acknowledged by the broker. Table
writes are sent at the end of each batch, a key's last value only, and only once every output of
the batch is acknowledged: outputs first, then state, then offsets. A kill -9 anywhere therefore
re-reads from the last commit, and state that says a record is done is never durable before
what the record sent: a handler that drops what its state says it has seen loses no output.

A partition's state is restored from its changelog when the partition is assigned, unless this
process wrote the changelog's last record itself (then its memory is current). When partitions
are revoked, processing stops before the callback returns and what is done is committed, so a
partition is never processed by two workers at once.

Faust's agents did this before; their fetcher could leave a fetched record undelivered after a
rebalance or recovery (the partition then stalled until the next restart, seen under load in
``tests/chaos``). Owning the loop removes that path and lets records come in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Protocol, Self, TypeAlias

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import NewTopic
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    TopicAlreadyExistsError,
)

from connectors.kafka_clients import KafkaClients, stop_consumer
from pipeline.app import SendFailedError
from pipeline.settings import Settings
from pipeline.stages.lanes import Held, Progress
from pipeline.stages.publish import dlq_headers
from pipeline.topics import DLQ, topic_name

log = logging.getLogger(__name__)

#: A record as the handler gets it.
Record: TypeAlias = ConsumerRecord[bytes, bytes]

#: Handles one record, adding the futures of the records it sends to the list it is handed
#: (the processor adds the table writes).
Handler = Callable[[Record, list[asyncio.Future[Any]]], Awaitable[None]]

#: How long sends linger to share a produce request.
LINGER_MS = 5


class KeyValue(Protocol):
    """What state a handler reads and writes: bytes keys and values (missing keys read None)."""

    def get(self, key: bytes) -> bytes | None: ...

    def __setitem__(self, key: bytes, value: bytes) -> None: ...


def changelog_topic(settings: Settings, name: str) -> str:
    """The changelog topic of table ``name`` (Faust's naming, so existing state carries on)."""
    return f"{settings.app_id}-{name}-changelog"


class ChangelogTable:
    """Bytes keys and values of one table, per source partition, backed by a changelog topic.

    Reads and writes act on the partition of the record being handled (:meth:`use`); writes are
    kept until the processor sends them (:meth:`take_writes`).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.topic = ""
        self._parts: dict[int, dict[bytes, bytes]] = {}
        self._current: dict[bytes, bytes] | None = None
        self._partition = -1
        self._writes: list[tuple[bytes, bytes | None]] = []

    def use(self, partition: int) -> None:
        """Read and write partition ``partition``'s state from now on."""
        self._partition = partition
        self._current = self._parts.setdefault(partition, {})

    def _state(self) -> dict[bytes, bytes]:
        if self._current is None:
            raise RuntimeError(f"table {self.name}: no partition in use")
        return self._current

    def get(self, key: bytes) -> bytes | None:
        """The value of ``key`` (None: missing)."""
        return self._state().get(key)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._state()[key] = value
        self._writes.append((key, value))

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts.values())

    def take_writes(self) -> tuple[int, list[tuple[bytes, bytes | None]]]:
        """The partition in use and the writes made since the last call."""
        writes, self._writes = self._writes, []
        return self._partition, writes

    def load(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        """Replace ``partition``'s state with the changelog ``records``; how many keys."""
        state: dict[bytes, bytes] = {}
        for key, value in records:
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
        self._parts[partition] = state
        if self._partition == partition:
            self._current = state
        return len(state)

    def partitions(self) -> list[int]:
        """The partitions whose state is held."""
        return list(self._parts)

    def drop(self, partition: int) -> None:
        """Forget ``partition``'s state."""
        self._parts.pop(partition, None)
        if self._partition == partition:
            self._current, self._partition = None, -1


class GroupConsumer:
    """A plain aiokafka consumer in group ``group`` over ``topics``, committing by hand what its
    :class:`Progress` allows, and a producer for what it causes. ``start()``/``stop()`` or
    ``async with``; :meth:`wait` returns only if the loop fails (it raises). A subclass takes
    the records (:meth:`_take`) and may hold partitions (:meth:`_release`,
    :meth:`_assigned`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        name: str,
        group: str,
        topics: Sequence[str],
        producer: AIOKafkaProducer,
        max_records: int = 1_000,
        commit_interval_s: float = 0.5,
    ) -> None:
        if not topics or max_records < 1 or commit_interval_s <= 0:
            raise ValueError("a consumer needs topics, max_records >= 1, commit_interval_s > 0")
        kafka = settings.kafka
        self.name = name
        self._settings = settings
        self._topics = list(topics)
        self._max_records = max_records
        self._commit_every = commit_interval_s
        self._dlq = topic_name(DLQ, kafka)
        session_ms = int(kafka.session_timeout_s * 1000)
        self._clients = KafkaClients(kafka)
        self._consumer = self._clients.consumer(
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(100, min(3000, session_ms // 3)),
            max_poll_records=max_records,
        )
        self.producer = producer
        self._progress = Progress()
        self._generation = 0
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_commit = 0.0
        self.records_in = 0
        """Records taken from the source topics since start."""
        self.records_out = 0
        """Records sent because of them (outputs and parked records, not table writes)."""

    def in_flight(self) -> int:
        """Records taken and not yet done (their outputs not all acknowledged)."""
        return len(self._progress)

    async def lag(self, timeout_s: float = 1.0) -> dict[TopicPartition, int]:
        """Per assigned partition whose end is known, the records not yet fetched (highwater
        minus position); a partition whose position is not known within ``timeout_s`` is
        left out."""
        out: dict[TopicPartition, int] = {}
        consumer = self._consumer
        for tp in list(consumer.assignment()):
            try:
                end = consumer.highwater(tp)
                if end is None:
                    continue
                position = await asyncio.wait_for(consumer.position(tp), timeout_s)
            except (TimeoutError, IllegalStateError, AssertionError, KafkaError):
                continue  # revoked meanwhile, or not fetched yet
            out[tp] = max(0, end - position)
        return out

    async def start(self) -> None:
        """Connect, join the group and start taking records."""
        await self._prepare()
        await self.producer.start()
        try:
            self._consumer.subscribe(self._topics, listener=_Listener(self))
            await self._consumer.start()
        except BaseException:
            await self.producer.stop()
            raise
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Stop taking records, commit what is done, disconnect."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.let_go()
        finally:
            await stop_consumer(self._consumer)
            await self.producer.stop()

    async def wait(self) -> None:
        """Wait while the loop runs; raises what stopped it."""
        if self._task is None:
            raise RuntimeError(f"{self.name} is not started")
        await asyncio.shield(self._task)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _run(self) -> None:
        rewind = False
        while True:
            await self._ready.wait()  # aiokafka fetches while the assignment callback runs
            generation = self._generation
            if rewind:
                await self._rewind()
                rewind = False
                if generation != self._generation:
                    rewind = True
                    continue
            batch = await self._consumer.getmany(timeout_ms=100, max_records=self._max_records)
            if generation != self._generation or not self._ready.is_set():
                rewind = True  # fetched across a rebalance: read again from the commits
                continue
            for tp, records in batch.items():
                for record in records:
                    if generation != self._generation:
                        break
                    self.records_in += 1
                    await self._take(tp, record)
            if generation != self._generation:
                # revoked meanwhile, even while the batch's last record was taken: what was
                # not committed is read again (the position is past the whole batch)
                rewind = True
            await self._after_batch()
            await self._commit(force=False)

    async def _rewind(self) -> None:
        """Read every assigned partition again from its committed offset. A batch cut by a
        rebalance may hold records fetched for the new assignment, past which the consumer's
        position has moved: dropping them without this would skip them for good."""
        for tp in list(self._consumer.assignment()):
            try:
                offset = await self._consumer.committed(tp)
                if offset is None or offset <= 0:
                    await self._consumer.seek_to_beginning(tp)
                else:
                    self._consumer.seek(tp, offset)
            except IllegalStateError:
                continue  # revoked meanwhile: the loop sees the new generation and rewinds again

    async def _take(self, tp: TopicPartition, record: Record) -> None:
        raise NotImplementedError

    async def _after_batch(self) -> None:
        """Called after each batch (a subclass may pause or resume partitions)."""

    async def _prepare(self) -> None:
        """Called before connecting (a subclass may create topics)."""

    async def _release(self) -> None:
        """Stop all work on the partitions being revoked (called first in :meth:`let_go`)."""

    async def _assigned(self, assigned: set[TopicPartition]) -> None:
        """Get ready for newly assigned partitions (before any of their records is taken)."""

    async def _park(
        self, tp: TopicPartition, offset: int, key: bytes | None, value: bytes, error: str
    ) -> asyncio.Future[Any]:
        """Send ``value`` (taken from ``tp`` at ``offset``) to ``dlq`` with ``error`` and where
        it came from."""
        log.warning(
            "%s: %s[%s]@%s parked on dlq: %s", self.name, tp.topic, tp.partition, offset, error
        )
        headers = dlq_headers(tp.topic, tp.partition, offset, "poison", error)
        sent: asyncio.Future[Any] = await self.producer.send(
            self._dlq, value, key=key, headers=headers
        )
        return sent

    async def _park_record(
        self, tp: TopicPartition, record: Record, error: str
    ) -> asyncio.Future[Any]:
        """Send ``record`` to ``dlq`` as it came, with ``error``."""
        value = record.value if isinstance(record.value, bytes) else b""
        key = record.key if isinstance(record.key, bytes) else None
        return await self._park(tp, record.offset, key, value, error)

    async def _commit(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < self._commit_every:
            return
        self._last_commit = now
        offsets = self._progress.committable()
        if offsets:
            await self._consumer.commit(offsets)

    async def let_go(self) -> None:
        """Before partitions go (all of them: rebalances are eager): stop the work on them, wait
        briefly for what was sent, commit what is done and forget the rest (the next owner
        reads it again), so no partition is worked on by two workers at once."""
        self._generation += 1
        self._ready.clear()
        await self._release()
        with contextlib.suppress(KafkaError):
            await asyncio.wait_for(self.producer.flush(), 5.0)
        try:
            await self._commit(force=True)
        except (CommitFailedError, KafkaError) as exc:
            log.warning("%s: commit failed (read again by the next owner): %s", self.name, exc)
        dropped = self._progress.forget()
        if dropped:
            log.info("%s: %d record(s) left for the next owner", self.name, dropped)

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        """Partitions were assigned: get ready, then let the loop take records."""
        self._generation += 1
        await self._assigned(assigned)
        self._ready.set()


class StreamProcessor(GroupConsumer):
    """Runs ``handler`` over ``sources`` with ``tables`` in group ``<app id>-<name>``; see the
    module docstring. A handler's exception parks the record in ``dlq`` and processing goes
    on. The processor starts and stops ``producer``, which the handler sends through too.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        name: str,
        sources: Sequence[str],
        tables: Sequence[ChangelogTable],
        handler: Handler,
        producer: AIOKafkaProducer,
        max_batch: int = 1_000,
        commit_interval_s: float = 0.5,
    ) -> None:
        super().__init__(
            settings,
            name=name,
            group=f"{settings.app_id}-{name}",
            topics=sources,
            producer=producer,
            max_records=max_batch,
            commit_interval_s=commit_interval_s,
        )
        self._tables = list(tables)
        for table in self._tables:
            table.topic = changelog_topic(settings, table.name)
        self._handler = handler
        #: per changelog partition, the offset after the last record this process wrote
        self._written: dict[TopicPartition, int] = {}
        #: changelog partitions whose state in memory holds writes that were never sent
        self._unsent: set[TopicPartition] = set()
        #: table writes of the batch being taken, per (changelog topic, partition): key -> value
        self._pending_writes: dict[tuple[str, int], dict[bytes, bytes | None]] = {}
        #: records of the batch being taken, with the sends each caused
        self._taken: list[tuple[Held, list[asyncio.Future[Any]]]] = []
        self._batch_generation = -1
        self.restored_keys = 0

    async def _take(self, tp: TopicPartition, record: Record) -> None:
        held = self._progress.hold(tp, record.offset)
        sends: list[asyncio.Future[Any]] = []
        for table in self._tables:
            table.use(tp.partition)
        try:
            await self._handler(record, sends)
        except Exception as exc:  # poison: park it, keep going
            sends.append(await self._park_record(tp, record, f"{type(exc).__name__}: {exc}"))
        for table in self._tables:
            partition, writes = table.take_writes()
            if writes:
                self._pending_writes.setdefault((table.topic, partition), {}).update(writes)
        if not self._taken:
            self._batch_generation = self._generation
        self._taken.append((held, sends))

    async def _after_batch(self) -> None:
        """Wait until the batch's outputs are acknowledged, then send its table writes, each
        key's last value once (a mailbox's guard state changes with most of its records), and
        complete the batch's records: each is committable once its outputs and every table
        write of the batch are acknowledged. A refused output ends the loop
        (:class:`SendFailedError`) with no table write of the batch sent."""
        pending, self._pending_writes = self._pending_writes, {}
        taken, self._taken = self._taken, []
        if taken and self._batch_generation != self._generation:
            self._unwritten(pending)
            return  # revoked meanwhile: the next owner reads these records again
        outputs = [sent for _, sends in taken for sent in sends]
        if pending and outputs:
            await asyncio.wait(outputs)
            if self._batch_generation != self._generation:
                self._unwritten(pending)
                return  # revoked while waiting
            for held, sends in taken:
                for sent in sends:
                    exc = None if sent.cancelled() else sent.exception()
                    if sent.cancelled() or exc is not None:
                        self._unwritten(pending)
                        where = f"{held.tp.topic}[{held.tp.partition}]@{held.offset}"
                        raise SendFailedError(f"{where}: {exc or 'cancelled'}") from exc
        self.records_out += sum(len(sends) for _, sends in taken)
        state: list[asyncio.Future[Any]] = []
        for (topic, partition), writes in pending.items():
            changelog = TopicPartition(topic, partition)
            for key, value in writes.items():
                sent = await self.producer.send(topic, value, key=key, partition=partition)
                sent.add_done_callback(lambda done, tp=changelog: self._landed(tp, done))
                state.append(sent)
        # one future for the batch's state, not every write on every record (quadratic)
        landed = [asyncio.gather(*state)] if state else []
        for held, sends in taken:
            Progress.complete(held, [*sends, *landed])

    def _unwritten(self, pending: dict[tuple[str, int], dict[bytes, bytes | None]]) -> None:
        """Table writes held in memory were not sent: the partitions' state is restored from
        their changelogs when next assigned, not taken as current."""
        self._unsent.update(TopicPartition(topic, partition) for topic, partition in pending)

    def _landed(self, tp: TopicPartition, sent: asyncio.Future[Any]) -> None:
        """Remember where a changelog record of ours landed (restore skips what is current)."""
        if sent.cancelled() or sent.exception() is not None:
            return
        offset = getattr(sent.result(), "offset", None)
        if isinstance(offset, int) and offset + 1 > self._written.get(tp, -1):
            self._written[tp] = offset + 1

    async def _assigned(self, assigned: set[TopicPartition]) -> None:
        """Load the assigned partitions' state from the changelogs (unless current)."""
        partitions = sorted({tp.partition for tp in assigned})
        for table in self._tables:
            for partition in table.partitions():
                if partition not in partitions:
                    table.drop(partition)
        if not self._tables or not partitions:
            return
        wanted = [TopicPartition(t.topic, p) for t in self._tables for p in partitions]
        started = time.monotonic()
        reader = self._clients.consumer(enable_auto_commit=False, auto_offset_reset="earliest")
        try:
            await reader.start()
            ends = await reader.end_offsets(wanted)
            stale = [
                tp for tp in wanted if tp in self._unsent or ends[tp] != self._written.get(tp, -1)
            ]
            if not stale:
                return
            reader.assign(stale)
            await reader.seek_to_beginning(*stale)
            records: dict[TopicPartition, list[tuple[bytes, bytes | None]]] = {
                tp: [] for tp in stale
            }
            todo = {tp for tp in stale if ends[tp] > 0}
            while todo:
                got = await reader.getmany(timeout_ms=500, max_records=10_000)
                for tp, batch in got.items():
                    records[tp].extend((r.key, r.value) for r in batch if r.key is not None)
                for tp in list(todo):
                    if await reader.position(tp) >= ends[tp]:
                        todo.discard(tp)
            by_topic = {t.topic: t for t in self._tables}
            keys = sum(
                by_topic[tp.topic].load(tp.partition, pairs) for tp, pairs in records.items()
            )
            for tp in stale:
                self._written[tp] = ends[tp]
                self._unsent.discard(tp)
            self.restored_keys = keys
            log.info(
                "%s: restored %d keys of %d changelog partition(s) in %.2fs",
                self.name,
                keys,
                len(stale),
                time.monotonic() - started,
            )
        finally:
            await stop_consumer(reader)

    async def _prepare(self) -> None:
        """Create the changelog topics that are missing."""
        if not self._tables:
            return
        kafka = self._settings.kafka
        admin = self._clients.admin()
        try:
            await admin.start()
            names = {t.topic for t in self._tables}
            missing = names - set(await admin.list_topics())
            if missing:
                new = [
                    NewTopic(
                        name=name,
                        num_partitions=kafka.partitions,
                        replication_factor=kafka.replication_factor,
                        topic_configs={"cleanup.policy": "compact"},
                    )
                    for name in sorted(missing)
                ]
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(new)
            for _ in range(100):
                if names <= set(await admin.list_topics()):
                    return
                await asyncio.sleep(0.1)
            raise RuntimeError(f"changelog topics {sorted(names)} were not created")
        finally:
            await admin.close()


class _Listener:
    """Hands a rebalance to its consumer (registered as aiokafka's listener ABC)."""

    def __init__(self, member: GroupConsumer) -> None:
        self._member = member

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._member.let_go()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._member.assigned(set(assigned))


ConsumerRebalanceListener.register(_Listener)
