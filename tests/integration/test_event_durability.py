"""On the real broker: every applied write reaches ``events.v1`` at least once, with a stable
``ce_id``, whatever moment the engine dies in.

The dangerous moment is after a link's changelog write says an outcome is done and before the
event it caused is acknowledged: the outcome is read again after the restart, the restored link
says it is done, and the engine drops it. Two tests, each on the engine child of
:mod:`tests.integration.test_publish_durability`, a test acting as the CRM writer (an applied
outcome for every command):

- the broker refuses every event (``events.v1`` created with a tiny ``max.message.bytes``):
  the engine ends itself (exit 70, ``os._exit``, as abrupt as a kill) while the changelog
  works; once the topic takes them, a second engine sends every event. With the link state
  written before the events were acknowledged (the order before this test) it sent none.
- SIGKILL while the engine works through a stream of outcomes; the second engine completes the
  feed, repeats (same ``ce_id``) allowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from bench.kafka_io import TimedTail, produce_all
from bench.workload import encoded, mailbox_ids
from pipeline.app import EXIT_SEND_FAILED
from pipeline.cli.topics import ensure_topics
from pipeline.settings import KafkaSettings
from pipeline.state import derived_id
from pipeline.topics import CHANGES_OUTLOOK, COMMANDS_CRM, EVENTS_V1, OUTCOMES, topic_name
from schemas.codec import dumps, event_from_kafka
from schemas.models import EVENT_DATA_SCHEMA_URI, WriteOutcome
from tests.integration.test_publish_durability import engine_worker

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

PARTITIONS = 2
NOW = "2030-01-01T00:00:00Z"
SYNCED = "com.dynasync.item.synced.v1"
#: ``max.message.bytes`` of ``events.v1`` that refuses every change event (set on that topic
#: only: commands, outcomes and the changelogs take their records).
TINY_LIMIT = "200"
BROKER_LIMIT = "1048588"


@dataclass(frozen=True)
class Run:
    bootstrap: str
    kafka: KafkaSettings
    app_id: str
    data_dir: Path

    @property
    def events(self) -> str:
        return topic_name(EVENTS_V1, self.kafka)


async def _run(bootstrap: str, tmp_path: Path, events_limit: str | None = None) -> Run:
    tag = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(bootstrap=bootstrap, topic_prefix=f"evd.{tag}.", partitions=PARTITIONS)
    run = Run(bootstrap, kafka, f"evd-{tag}", tmp_path)
    if events_limit is not None:
        await _admin_events(run, events_limit, create=True)
    await ensure_topics(kafka)
    return run


async def _admin_events(run: Run, limit: str, *, create: bool) -> None:
    """Create ``events.v1`` with ``max.message.bytes=limit``, or set that limit on it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=run.bootstrap)
    await admin.start()
    try:
        configs = {"max.message.bytes": limit}
        if create:
            await admin.create_topics([NewTopic(run.events, PARTITIONS, 1, topic_configs=configs)])
        else:
            resource = ConfigResource(ConfigResourceType.TOPIC, run.events, configs)
            await admin.alter_configs([resource])
    finally:
        await admin.close()


def _applied(command: dict[str, Any]) -> WriteOutcome:
    """The writer's answer to a CRM create: applied."""
    return WriteOutcome(
        command_id=command["command_id"],
        mailbox_id=command["mailbox_id"],
        org_id=command["org_id"],
        target="crm",
        kind=command["kind"],
        action=command["action"],
        correlation_id=command["correlation_id"],
        status="applied",
        completed_at=NOW,
        target_id=str(uuid.uuid5(uuid.NAMESPACE_URL, command["command_id"])),
        version="1",
        written=command["fields"],
    )


async def _outcomes_of_commands(
    run: Run, producer: AIOKafkaProducer, changes: int, mailboxes: int
) -> list[WriteOutcome]:
    """Feed ``changes`` new Outlook contacts, wait for the engine's ``changes`` CRM creates and
    answer each with an applied outcome (the engine must be running)."""
    mbx = mailbox_ids(mailboxes)
    commands = TimedTail(run.bootstrap, topic_name(COMMANDS_CRM, run.kafka))
    await commands.start()
    try:
        records = (encoded("e", i, mbx, NOW) for i in range(changes))
        await produce_all(producer, topic_name(CHANGES_OUTLOOK, run.kafka), records)
        await commands.wait_for(changes, within_s=60)
        issued = {c["command_id"]: c for c in map(orjson.loads, commands.values)}
    finally:
        await commands.stop()
    assert len(issued) == changes
    outcomes = [_applied(c) for c in issued.values()]
    answers = ((o.mailbox_id.encode(), dumps(o)) for o in outcomes)
    await produce_all(producer, topic_name(OUTCOMES, run.kafka), answers)
    return outcomes


def _expected(outcomes: list[WriteOutcome]) -> set[str]:
    """The ``ce_id`` of each outcome's event (derived from the outcome: stable)."""
    return {derived_id("event", o.command_id, SYNCED, o.correlation_id) for o in outcomes}


async def _feed_completes(
    tail: EventTail, expected: set[str], child: asyncio.subprocess.Process, within: float
) -> dict[str, set[bytes]]:
    """Each ``ce_id`` of the feed with the data of its copies, once ``expected`` are all in."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        seen: dict[str, set[bytes]] = {}
        for headers, value in zip(tail.headers, tail.values, strict=True):
            event = event_from_kafka(headers, value)
            assert event.ce_dataschema == EVENT_DATA_SCHEMA_URI
            seen.setdefault(event.ce_id, set()).add(value)
        if expected <= seen.keys() or asyncio.get_running_loop().time() > deadline:
            return seen
        assert child.returncode is None, "the second engine ended"
        await asyncio.sleep(0.3)


class EventTail:
    """Reads ``events.v1`` from the beginning in the background: each record's headers and
    value."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        self.headers: list[list[tuple[str, bytes]]] = []
        self.values: list[bytes] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventTail:
        await self._consumer.start()
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _read(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    self.headers.append([(k, bytes(v)) for k, v in record.headers])
                    self.values.append(record.value or b"")


async def test_a_refused_event_leaves_its_outcome_to_be_read_again(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = await _run(kafka_bootstrap, tmp_path, events_limit=TINY_LIMIT)
    changes, mailboxes = 50, 2
    async with (
        _producer(kafka_bootstrap) as producer,
        EventTail(kafka_bootstrap, run.events) as tail,
    ):
        async with engine_worker(run, mailboxes) as first:
            outcomes = await _outcomes_of_commands(run, producer, changes, mailboxes)
            code = await asyncio.wait_for(first.wait(), 60)  # the first event ends it
            assert first.stderr is not None
            log = (await first.stderr.read()).decode(errors="replace")
        assert code == EXIT_SEND_FAILED, log[-3000:]
        assert "MessageSizeTooLarge" in log, log[-3000:]
        assert tail.values == []

        await _admin_events(run, BROKER_LIMIT, create=False)
        expected = _expected(outcomes)
        async with engine_worker(run, mailboxes) as second:
            seen = await _feed_completes(tail, expected, second, 60)
    missing = expected - seen.keys()
    assert not missing, f"{len(missing)} of {changes} applied writes have no event"
    assert seen.keys() == expected


async def test_kill_9_among_outcomes_loses_no_event(kafka_bootstrap: str, tmp_path: Path) -> None:
    run = await _run(kafka_bootstrap, tmp_path)
    changes, mailboxes = 3000, 20
    async with (
        _producer(kafka_bootstrap) as producer,
        EventTail(kafka_bootstrap, run.events) as tail,
    ):
        async with engine_worker(run, mailboxes) as first:
            outcomes = await _outcomes_of_commands(run, producer, changes, mailboxes)
            for _ in range(600):
                if len(tail.values) >= changes // 5 or first.returncode is not None:
                    break
                await asyncio.sleep(0.01)
            first.kill()  # SIGKILL while it turns outcomes into events
            await first.wait()
        at_kill = len(tail.values)
        assert 0 < at_kill < changes, f"{at_kill} events at the kill; nothing was tested"

        expected = _expected(outcomes)
        async with engine_worker(run, mailboxes) as second:
            seen = await _feed_completes(tail, expected, second, 60)
    missing = expected - seen.keys()
    assert not missing, f"{len(missing)} of {changes} applied writes have no event"
    assert seen.keys() == expected
    # a repeat carries the same data as its first copy
    assert all(len(copies) == 1 for copies in seen.values())
    print(f"\n{at_kill} events at the kill, {len(tail.values) - changes} repeats after it")


@contextlib.asynccontextmanager
async def _producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()
