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

import logging
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial

from aiokafka import TopicPartition

from connectors.base import CommandSink, MailboxMemory
from connectors.kafka_clients import KafkaClients
from pipeline.app import App, Stage, StageMeter, WindowSize
from pipeline.ownership import MailboxOwnership
from pipeline.settings import Settings
from pipeline.stages.lanes import Held, Lanes, Progress
from pipeline.stages.publish import SOURCE_MS_HEADER
from pipeline.stages.retry import GaveUpError, WritePolicy, apply_batch
from pipeline.stages.stream import LINGER_MS, GroupConsumer, Record
from pipeline.topics import COMMANDS_CRM, COMMANDS_OUTLOOK, OUTCOMES, topic_name
from schemas.codec import dumps, loads
from schemas.models import WriteCommand, WriteOutcome
from schemas.types import Side

log = logging.getLogger(__name__)

#: Builds (or looks up) the sink for one side of one mailbox: (target, org_id, mailbox_id).
SinkFactory = Callable[[Side, str, str], CommandSink]

#: Told each write's result (an outcome, or the error it was parked with), per side.
WriteObserver = Callable[[Side, WriteCommand, WriteOutcome | BaseException], None]

#: Commands one ``apply`` call takes at most, per side: Graph's ``$batch`` holds 20 requests;
#: a Dataverse changeset holds up to 1,000 operations.
BATCH: dict[Side, int] = {"outlook": 20, "crm": 100}


@dataclass(frozen=True, slots=True)
class _Job:
    held: Held
    command: WriteCommand
    source_ms: int | None = None
    """When the change behind the command was published (its record's timestamp), if known."""


def _item(job: _Job) -> Hashable:
    cmd = job.command
    return (cmd.kind, cmd.target_id or cmd.correlation_id)


def writers_stage(
    sinks: SinkFactory,
    policy: WritePolicy | None = None,
    window: WindowSize | None = None,
    *,
    ownership: MailboxOwnership | None = None,
    observe: WriteObserver | None = None,
) -> Stage:
    """The writer stage applying commands through ``sinks`` with ``policy`` (default
    :class:`WritePolicy`); ``window.events`` bounds the open commands per partition. Each
    side's :class:`CommandWriter` runs while the app runs; if it fails, the app crashes. The
    Outlook writer's assignment decides ``ownership`` (which mailboxes this worker reads);
    ``observe`` is told every write's result (the mailbox status)."""
    retries = policy or WritePolicy()
    size = window or WindowSize(events=1_000)

    def register(app: App, settings: Settings) -> None:
        sides: tuple[Side, ...] = ("crm", "outlook")
        for side in sides:
            app.run(
                f"writers-{side}",
                partial(
                    CommandWriter,
                    settings,
                    side,
                    sinks,
                    policy=retries,
                    max_held=size.events,
                    ownership=ownership if side == "outlook" else None,
                    meter=app.meter,
                    observe=observe,
                ),
            )

    return register


class CommandWriter(GroupConsumer):
    """Applies one side's commands in group ``<app id>-writers-<side>``; see the module
    docstring."""

    def __init__(
        self,
        settings: Settings,
        side: Side,
        sinks: SinkFactory,
        *,
        policy: WritePolicy | None = None,
        max_held: int = 1_000,
        commit_interval_s: float = 0.5,
        ownership: MailboxOwnership | None = None,
        meter: StageMeter | None = None,
        observe: WriteObserver | None = None,
    ) -> None:
        if max_held < 2:
            raise ValueError("max_held must be >= 2")
        kafka = settings.kafka
        super().__init__(
            settings,
            name=f"writers-{side}",
            group=f"{settings.app_id}-writers-{side}",
            topics=[topic_name(COMMANDS_CRM if side == "crm" else COMMANDS_OUTLOOK, kafka)],
            producer=KafkaClients(kafka).producer(acks="all", linger_ms=LINGER_MS),
            max_records=max_held,
            commit_interval_s=commit_interval_s,
        )
        self.side = side
        self._sinks = sinks
        self._policy = policy or WritePolicy()
        self._max_held = max_held
        self._outcomes = topic_name(OUTCOMES, kafka)
        self._lanes: Lanes[_Job] = Lanes(self._write, item_of=_item, max_batch=BATCH[side])
        self._paused: set[TopicPartition] = set()
        self._written: set[tuple[Side, str, str]] = set()
        self._ownership = ownership
        self._topic = self._topics[0]
        self._meter = meter
        self._observe = observe

    def backlog(self, mailbox_id: str) -> int:
        """Commands of ``mailbox_id`` waiting in its lane here."""
        return self._lanes.waiting(mailbox_id)

    async def _take(self, tp: TopicPartition, record: Record) -> None:
        self._lanes.check()
        held = self._progress.hold(tp, record.offset)
        try:
            command = loads(WriteCommand, record.value or b"", check=False)
        except Exception as exc:
            self.records_out += 1
            Progress.complete(
                held, [await self._park_record(tp, record, f"{type(exc).__name__}: {exc}")]
            )
            return
        self._lanes.put(command.mailbox_id, _Job(held, command, _source_ms(record)))

    async def _after_batch(self) -> None:
        self._backpressure()

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

    async def _write(self, jobs: Sequence[_Job]) -> None:
        """A lane's apply: one batch of one mailbox through its sink, then each outcome."""
        first = jobs[0].command
        commands = [job.command for job in jobs]
        try:
            sink = self._sinks(first.target, first.org_id, first.mailbox_id)
            self._written.add((first.target, first.org_id, first.mailbox_id))
        except Exception as exc:
            results: list[object] = [exc] * len(jobs)
        else:
            results = list(await apply_batch(sink, commands, self._policy))
        now_ms = time.time() * 1000
        for job, result in zip(jobs, results, strict=True):
            cmd, held = job.command, job.held
            key = cmd.mailbox_id.encode()
            if isinstance(result, BaseException):
                sent = await self._park(held.tp, held.offset, key, dumps(cmd), _error(result))
            else:
                sent = await self.producer.send(self._outcomes, dumps(result), key=key)
                if self._meter is not None and job.source_ms is not None:
                    self._meter.write_done(self.side, max(0.0, now_ms - job.source_ms) / 1000)
            self.records_out += 1
            Progress.complete(held, [sent])
            if self._observe is not None and isinstance(result, WriteOutcome | BaseException):
                self._observe(self.side, cmd, result)

    async def _assigned(self, assigned: set[TopicPartition]) -> None:
        if self._ownership is not None:
            await self._ownership.assigned(
                tp.partition for tp in assigned if tp.topic == self._topic
            )

    async def _release(self) -> None:
        """Cancel every lane: nothing more is written for the partitions being revoked; the
        sinks forget what they learnt of those mailboxes (another worker may write them), and
        the mailboxes' readers stop (:class:`pipeline.ownership.MailboxOwnership`)."""
        if self._ownership is not None:
            await self._ownership.released()
        await self._lanes.drop()
        self._paused.clear()
        written, self._written = self._written, set()
        for target, org_id, mailbox_id in written:
            try:
                sink = self._sinks(target, org_id, mailbox_id)
            except Exception:  # an organisation removed since: nothing cached of it
                continue
            if isinstance(sink, MailboxMemory):
                sink.forget(mailbox_id)


def _source_ms(record: Record) -> int | None:
    """The source timestamp the engine put on a command record (garbage: None)."""
    for name, value in record.headers or ():
        if name == SOURCE_MS_HEADER and value is not None:
            try:
                stamp = int(bytes(value).decode("ascii"))
            except ValueError:
                return None
            return stamp if 0 < stamp < 2**53 else None
    return None


def _error(exc: object) -> str:
    if isinstance(exc, GaveUpError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
