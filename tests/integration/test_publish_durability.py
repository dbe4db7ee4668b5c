"""On the real broker, the engine stage in a child process: an input offset is committed only
after every record it caused (outputs and link-state changelog writes) is acknowledged.

- kill -9 mid-stream, restart: every change has its command (at-least-once, deduplicated by
  command id; a change whose link state was saved before the kill but whose command was not
  issues it again), and the link state of every committed change survived (a newer version
  of each waits behind its create instead of planning another).
- a command, or a link-state write, that the broker refuses ends the worker (exit 70) and the
  offset of the change that caused it is never committed.

Run as ``python -m tests.integration.test_publish_durability BOOTSTRAP PREFIX APP_ID DATA_DIR
MAILBOXES`` it is that child: the engine stage over ``MAILBOXES`` benchmark mailboxes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.kafka_io import TimedTail, produce_all
from bench.workload import ORG, USER, change, encoded, mailbox_ids
from pipeline.app import EXIT_SEND_FAILED, build_app
from pipeline.cli.topics import ensure_topics
from pipeline.plan import MailboxRules
from pipeline.settings import KafkaSettings, Settings
from pipeline.stages.engine import StaticRules, engine_stage
from pipeline.topics import CHANGES_OUTLOOK, COMMANDS_CRM, topic_name
from schemas.codec import dumps

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

PARTITIONS = 2
SESSION_TIMEOUT_S = 6.0
NOW = "2030-01-01T00:00:00Z"
#: A batch limit above the producer's batch size (16 kB), below a big change's command or link.
SMALL_LIMIT = "20000"


@dataclass(frozen=True)
class World:
    bootstrap: str
    kafka: KafkaSettings
    app_id: str
    data_dir: Path

    @property
    def changes(self) -> str:
        return topic_name(CHANGES_OUTLOOK, self.kafka)

    @property
    def commands(self) -> str:
        return topic_name(COMMANDS_CRM, self.kafka)


async def _world(bootstrap: str, tmp_path: Path, small_topic: str | None = None) -> World:
    run = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(bootstrap=bootstrap, topic_prefix=f"dur.{run}.", partitions=PARTITIONS)
    world = World(bootstrap, kafka, f"dur-{run}", tmp_path)
    if small_topic is not None:
        name = world.commands if small_topic == "commands" else f"{world.app_id}-links-changelog"
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            limit = {"max.message.bytes": SMALL_LIMIT}
            await admin.create_topics([NewTopic(name, PARTITIONS, 1, topic_configs=limit)])
        finally:
            await admin.close()
    await ensure_topics(kafka)
    return world


class WorkerPlace(Protocol):
    """Where an engine worker process of this module runs: broker, topics, app, state."""

    @property
    def bootstrap(self) -> str: ...
    @property
    def kafka(self) -> KafkaSettings: ...
    @property
    def app_id(self) -> str: ...
    @property
    def data_dir(self) -> Path: ...


@contextlib.asynccontextmanager
async def engine_worker(
    world: WorkerPlace, mailboxes: int
) -> AsyncIterator[asyncio.subprocess.Process]:
    """This module run as an engine worker process (``__main__`` below), killed on exit."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.test_publish_durability",
        world.bootstrap,
        world.kafka.topic_prefix,
        world.app_id,
        str(world.data_dir),
        str(mailboxes),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield child
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()


@contextlib.asynccontextmanager
async def _producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def _committed(world: World, tp: TopicPartition) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=world.bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(f"{world.app_id}-engine")
    finally:
        await admin.close()
    meta = offsets.get(tp)
    return meta.offset if meta is not None else -1


async def _log(child: asyncio.subprocess.Process) -> str:
    assert child.stderr is not None
    return (await child.stderr.read()).decode(errors="replace")[-3000:]


def _newer(i: int, mailboxes: list[str]) -> tuple[bytes, bytes]:
    """(key, value) of version 2 of benchmark change ``i`` (another job title)."""
    mailbox_id = mailboxes[i % len(mailboxes)]
    first = change("d", i, mailbox_id, NOW)
    second = replace(
        first,
        change_id=f"outlook:{first.item_id}:2",
        version="2",
        projection={**first.projection, "jobtitle": "Architect"},
    )
    return mailbox_id.encode(), dumps(second)


async def _all_caused(
    tail: TimedTail, expected: set[str], child: asyncio.subprocess.Process, within: float
) -> bool:
    """Whether every expected change has its command within ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while expected - {c["caused_by"] for c in _commands(tail)}:
        assert child.returncode is None, await _log(child)
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


def _commands(tail: TimedTail, start: int = 0) -> list[dict[str, str]]:
    return [orjson.loads(value) for value in tail.values[start:]]


async def test_kill_9_mid_stream_loses_no_command_and_no_link(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    world = await _world(kafka_bootstrap, tmp_path)
    total, mailboxes = 6000, 20
    mbx = mailbox_ids(mailboxes)
    tail = TimedTail(kafka_bootstrap, world.commands)
    await tail.start()
    try:
        async with _producer(kafka_bootstrap) as producer:
            records = (encoded("d", i, mbx, NOW) for i in range(total))
            await produce_all(producer, world.changes, records)
            async with engine_worker(world, mailboxes) as first:
                await tail.wait_for(total // 5, within_s=60)
                first.kill()  # SIGKILL while it is producing
                await first.wait()
            at_kill = len(tail.values)
            assert at_kill < total, "the worker finished before the kill; nothing was tested"

            expected = {f"outlook:d-{i:08d}:1" for i in range(total)}
            async with engine_worker(world, mailboxes) as second:
                if not await _all_caused(tail, expected, second, 60):
                    missing = expected - {c["caused_by"] for c in _commands(tail)}
                    raise AssertionError(f"{len(missing)} lost after the restart")
                by_id = {c["command_id"]: c["caused_by"] for c in _commands(tail)}
                assert len(by_id) == total  # a replayed change repeats its command id exactly
                assert set(by_id.values()) == expected

                # every link is durable: a newer version of each change waits behind its
                # create in flight (a lost link would plan a second create); a fresh change per
                # mailbox (after them in its partition) shows they were all handled
                before = len(tail.values)
                newer = (_newer(i, mbx) for i in range(total))
                await produce_all(producer, world.changes, newer)
                fresh = (encoded("f", i, mbx, NOW) for i in range(mailboxes))
                await produce_all(producer, world.changes, fresh)
                await tail.wait_for(before + mailboxes, within_s=60)
                await asyncio.sleep(0.5)
                caused = [c["caused_by"] for c in _commands(tail, before)]
                assert sorted(caused) == sorted(f"outlook:f-{i:08d}:1" for i in range(mailboxes))
    finally:
        await tail.stop()


@pytest.mark.parametrize("refusing", ["commands", "changelog"])
async def test_a_refused_command_or_link_write_never_commits_its_change(
    kafka_bootstrap: str, tmp_path: Path, refusing: str
) -> None:
    world = await _world(kafka_bootstrap, tmp_path, small_topic=refusing)
    mbx = mailbox_ids(1)
    async with _producer(kafka_bootstrap) as producer, engine_worker(world, 1) as child:
        sent = None
        for i in range(5):
            key, value = encoded("ok", i, mbx, NOW)
            sent = await producer.send_and_wait(world.changes, value, key=key)
        assert sent is not None
        tp = TopicPartition(world.changes, sent.partition)
        for _ in range(300):  # the five are handled and committed while the worker runs
            if await _committed(world, tp) == 5:
                break
            assert child.returncode is None, await _log(child)
            await asyncio.sleep(0.2)
        assert await _committed(world, tp) == 5

        big = change("big", 0, mbx[0], NOW)
        big = replace(big, projection={**big.projection, "jobtitle": "x" * 30_000})
        await producer.send_and_wait(world.changes, dumps(big), key=mbx[0].encode())
        for i in range(5, 8):
            key, value = encoded("ok", i, mbx, NOW)
            await producer.send_and_wait(world.changes, value, key=key)
        code = await asyncio.wait_for(child.wait(), 60)
        assert child.stderr is not None
        log = (await child.stderr.read()).decode(errors="replace")
    assert code == EXIT_SEND_FAILED, log[-3000:]
    assert "MessageSizeTooLarge" in log, log[-3000:]
    assert await _committed(world, tp) == 5  # never at or past the refused change


def _child(bootstrap: str, prefix: str, app_id: str, data_dir: str, mailboxes: str) -> None:
    kafka = KafkaSettings(
        bootstrap=bootstrap,
        topic_prefix=prefix,
        partitions=PARTITIONS,
        session_timeout_s=SESSION_TIMEOUT_S,  # the killed worker's partitions move on sooner
    )
    settings = Settings(app_id=app_id, kafka=kafka, data_dir=Path(data_dir))
    rules = StaticRules({m: MailboxRules(m, ORG, USER) for m in mailbox_ids(int(mailboxes))})

    async def serve() -> None:
        app = build_app(settings, [engine_stage(rules)])
        await app.start()
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    _child(*sys.argv[1:6])
