"""On the real broker: an event is committed only once what it caused is acknowledged. A
record the broker refuses ends the worker (exit 70, like a crash) and neither its event nor
any later one is ever committed, so a restart reads them again."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.stages.window import EXIT_SEND_FAILED
from tests.integration.test_graph_kafka import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


async def _committed(bootstrap: str, group: str, tp: TopicPartition) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    meta = offsets.get(tp)
    return meta.offset if meta is not None else -1


async def test_a_refused_send_ends_the_worker_and_nothing_after_it_is_committed(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    source, sink, group = f"win.{run}.in", f"win.{run}.out", f"win-{run}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(source, 1, 1),
                NewTopic(sink, 1, 1, topic_configs={"max.message.bytes": "2000"}),
            ]
        )
    finally:
        await admin.close()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.window_child",
        kafka_bootstrap,
        source,
        sink,
        group,
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    tp = TopicPartition(source, 0)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for _ in range(5):
            await producer.send_and_wait(source, b"ok", key=b"k")
        for _ in range(150):  # the five are processed and committed while the worker runs
            if await _committed(kafka_bootstrap, group, tp) == 5:
                break
            assert child.returncode is None, "the worker ended early"
            await asyncio.sleep(0.2)
        assert await _committed(kafka_bootstrap, group, tp) == 5
        for value in [b"big", b"ok", b"ok", b"ok"]:
            await producer.send_and_wait(source, value, key=b"k")
        code = await asyncio.wait_for(child.wait(), 60)
    finally:
        await producer.stop()
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert child.stderr is not None
    log = (await child.stderr.read()).decode(errors="replace")
    assert code == EXIT_SEND_FAILED, log[-3000:]
    assert "MessageSizeTooLarge" in log
    assert await _committed(kafka_bootstrap, group, tp) == 5  # never past the refused event
    assert len(await read_topic(kafka_bootstrap, sink)) >= 5
