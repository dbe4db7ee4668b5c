"""The writer stage: ``commands.crm`` / ``commands.outlook`` → a CommandSink → ``outcomes``.

The sink comes from a factory handed to the stage, so tests plug in the in-memory side and
production the Graph / Dataverse writers. Each side has its own :class:`CommandWriter`, a plain
aiokafka consumer in the group ``<app id>-writers-<side>`` (not a Faust agent: a Faust stream
cannot let go of an event it has handed out, so a write waiting out an outage would hold a
rebalance or a stop until the outage ends). Within a writer each mailbox has its own lane
(:mod:`pipeline.stages.lanes`): mailboxes are written concurrently, one mailbox's commands in
order, a backlog in batches (``$batch`` of up to 20 for Graph, changesets for Dataverse). While
a mailbox's side is unreachable or throttling, its lane retries without limit
(:mod:`pipeline.stages.retry`) and the other mailboxes go on; any other error is retried
``max_attempts`` times, then the command is parked in ``dlq`` for replay.

A partition is committed only up to the first command not yet done with its outcome
acknowledged by the broker, so a crash re-applies (idempotently) and loses nothing. A partition
holding ``max_held`` open commands is paused until half of them are done: backpressure on that
partition only. When partitions are revoked (a rebalance, a stop) every lane is cancelled
before the callback returns and what is done is committed; the rest is read again by the
partition's next owner, so no mailbox is written by two workers at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError

from connectors.base import CommandSink
from pipeline.app import App, Stage, WindowSize
from pipeline.settings import Settings
from pipeline.stages.lanes import Held, Lanes, Progress
from pipeline.stages.publish import dlq_headers
from pipeline.stages.retry import GaveUpError, WritePolicy, apply_batch
from pipeline.topics import COMMANDS_CRM, COMMANDS_OUTLOOK, DLQ, OUTCOMES, topic_name
from schemas.codec import dumps, loads
from schemas.models import WriteCommand
from schemas.types import Side

log = logging.getLogger(__name__)

#: Builds (or looks up) the sink for one side of one mailbox: (target, org_id, mailbox_id).
SinkFactory = Callable[[Side, str, str], CommandSink]

#: Commands one ``apply`` call takes at most, per side: Graph's ``$batch`` holds 20 requests;
#: a Dataverse changeset holds up to 1,000 operations.
BATCH: dict[Side, int] = {"outlook": 20, "crm": 100}

#: How long outcome sends linger to share a produce request.
LINGER_MS = 5


@dataclass(frozen=True, slots=True)
class _Job:
    held: Held
    command: WriteCommand


def _item(job: _Job) -> Hashable:
    cmd = job.command
    return (cmd.kind, cmd.target_id or cmd.correlation_id)


def writers_stage(
    sinks: SinkFactory, policy: WritePolicy | None = None, window: WindowSize | None = None
) -> Stage:
    """The writer stage applying commands through ``sinks`` with ``policy`` (default
    :class:`WritePolicy`); ``window.events`` bounds the open commands per partition. Each
    side's :class:`CommandWriter` runs while the app runs; if it fails, the app crashes."""
    retries = policy or WritePolicy()
    size = window or WindowSize(events=1_000)

    def register(app: App, settings: Settings) -> None:
        sides: tuple[Side, ...] = ("crm", "outlook")
        for side in sides:
            app.run(
                f"writers-{side}",
                partial(CommandWriter, settings, side, sinks, policy=retries, max_held=size.events),
            )

    return register


class CommandWriter:
    """Applies one side's commands; see the module docstring. ``start()``/``stop()`` or
    ``async with``; :meth:`wait` returns only if the writer fails (it raises)."""

    def __init__(
        self,
        settings: Settings,
        side: Side,
        sinks: SinkFactory,
        *,
        policy: WritePolicy | None = None,
        max_held: int = 1_000,
        commit_interval_s: float = 0.5,
    ) -> None:
        if max_held < 2 or commit_interval_s <= 0:
            raise ValueError("max_held must be >= 2 and commit_interval_s > 0")
        kafka = settings.kafka
        self.side = side
        self._sinks = sinks
        self._policy = policy or WritePolicy()
        self._max_held = max_held
        self._commit_every = commit_interval_s
        self._topic = topic_name(COMMANDS_CRM if side == "crm" else COMMANDS_OUTLOOK, kafka)
        self._outcomes = topic_name(OUTCOMES, kafka)
        self._dlq = topic_name(DLQ, kafka)
        session_ms = int(kafka.session_timeout_s * 1000)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap,
            group_id=f"{settings.app_id}-writers-{side}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(100, min(3000, session_ms // 3)),
            max_poll_records=max_held,
        )
        self._producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap, acks="all", linger_ms=LINGER_MS
        )
        self._progress = Progress()
        self._lanes: Lanes[_Job] = Lanes(self._write, item_of=_item, max_batch=BATCH[side])
        self._paused: set[TopicPartition] = set()
        self._generation = 0
        self._task: asyncio.Task[None] | None = None
        self._last_commit = 0.0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect, join the group and start taking commands."""
        await self._producer.start()
        try:
            self._consumer.subscribe([self._topic], listener=_Listener(self))
            await self._consumer.start()
        except BaseException:
            await self._producer.stop()
            raise
        self._task = asyncio.create_task(self._run(), name=f"writer-{self.side}")

    async def stop(self) -> None:
        """Stop taking commands, cancel the lanes, commit what is done, disconnect."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self._let_go()
        finally:
            await self._consumer.stop()
            await self._producer.stop()

    async def wait(self) -> None:
        """Wait while the writer runs; raises what stopped it."""
        if self._task is None:
            raise RuntimeError("the writer is not started")
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

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        while True:
            generation = self._generation
            batch = await self._consumer.getmany(timeout_ms=100, max_records=self._max_held)
            self._lanes.check()
            for tp, records in batch.items():
                for record in records:
                    if generation != self._generation:
                        break  # revoked while we were away: read again by the next owner
                    await self._take(tp, record)
            self._backpressure()
            await self._commit(force=False)

    async def _take(self, tp: TopicPartition, record: ConsumerRecord[Any, Any]) -> None:
        held = self._progress.hold(tp, record.offset)
        value = record.value if isinstance(record.value, bytes) else b""
        try:
            command = loads(WriteCommand, value, check=False)
        except Exception as exc:
            log.warning(
                "command %s[%s]@%s parked on dlq: %s", tp.topic, tp.partition, record.offset, exc
            )
            key = record.key if isinstance(record.key, bytes) else None
            headers = dlq_headers(tp.topic, tp.partition, record.offset, "poison", _error(exc))
            sent = await self._producer.send(self._dlq, value, key=key, headers=headers)
            Progress.complete(held, [sent])
            return
        self._lanes.put(command.mailbox_id, _Job(held, command))

    def _backpressure(self) -> None:
        """Pause a partition holding ``max_held`` open commands; resume it at half."""
        consumer = self._consumer
        assigned = consumer.assignment()
        for tp in assigned:
            held = self._progress.held(tp)
            if tp not in self._paused and held >= self._max_held:
                consumer.pause(tp)
                self._paused.add(tp)
            elif tp in self._paused and held <= self._max_held // 2:
                consumer.resume(tp)
                self._paused.discard(tp)
        self._paused &= set(assigned)

    async def _commit(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < self._commit_every:
            return
        self._last_commit = now
        offsets = self._progress.committable()
        if offsets:
            await self._consumer.commit(offsets)

    async def _write(self, jobs: Sequence[_Job]) -> None:
        """A lane's apply: one batch of one mailbox through its sink, then each outcome."""
        first = jobs[0].command
        commands = [job.command for job in jobs]
        try:
            sink = self._sinks(first.target, first.org_id, first.mailbox_id)
        except Exception as exc:
            results: list[object] = [exc] * len(jobs)
        else:
            results = list(await apply_batch(sink, commands, self._policy))
        for job, result in zip(jobs, results, strict=True):
            cmd, held = job.command, job.held
            key = cmd.mailbox_id.encode()
            if isinstance(result, BaseException):
                log.warning("command %s parked on dlq: %s", cmd.command_id, _error(result))
                headers = dlq_headers(
                    held.tp.topic, held.tp.partition, held.offset, "poison", _error(result)
                )
                sent = await self._producer.send(self._dlq, dumps(cmd), key=key, headers=headers)
            else:
                sent = await self._producer.send(self._outcomes, dumps(result), key=key)
            Progress.complete(held, [sent])

    # ------------------------------------------------------------------ rebalances

    async def _let_go(self) -> None:
        """Before partitions go (all of them: rebalances are eager): cancel every lane, so
        nothing more is written for them, wait briefly for the outcomes already sent, commit
        what is done and forget the rest (the next owner reads it again)."""
        self._generation += 1
        await self._lanes.drop()
        with contextlib.suppress(KafkaError):
            await asyncio.wait_for(self._producer.flush(), 5.0)
        try:
            await self._commit(force=True)
        except (CommitFailedError, KafkaError) as exc:
            log.warning(
                "%s writer: commit before a rebalance failed (read again): %s", self.side, exc
            )
        dropped = self._progress.forget()
        if dropped:
            log.info("%s writer: %d command(s) left for the next owner", self.side, dropped)
        self._paused.clear()


class _Listener:
    """Hands a rebalance's revocation to its writer (registered as aiokafka's listener ABC)."""

    def __init__(self, writer: CommandWriter) -> None:
        self._writer = writer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._writer._let_go()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        return None


ConsumerRebalanceListener.register(_Listener)


def _error(exc: object) -> str:
    if isinstance(exc, GaveUpError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
