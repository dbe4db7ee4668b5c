"""``dynasync dlq list`` / ``replay`` on the real broker: parked records are listed with why and
where from, replayed to their original topic in order exactly once, and what is not replayable
here (pause, alert, unknown origin) is said so and left alone."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from pipeline.cli.topics import ensure_topics
from pipeline.settings import KafkaSettings
from pipeline.stages.publish import DLQ_ERROR, DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC
from pipeline.topics import CHANGES_OUTLOOK, DLQ, topic_name
from tests.integration.test_graph_kafka import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


def _headers(reason: str, origin: str, offset: int, error: str = "boom") -> list[tuple[str, bytes]]:
    return [
        (DLQ_REASON, reason.encode()),
        (DLQ_ERROR, error.encode()),
        (DLQ_TOPIC, origin.encode()),
        (DLQ_PARTITION, b"0"),
        (DLQ_OFFSET, str(offset).encode()),
    ]


def _cli(kafka: KafkaSettings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DYNASYNC_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "DYNASYNC_APP_ID": f"dlq-{kafka.topic_prefix.strip('.')}",
    }
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "dlq", *args, "--bootstrap", kafka.bootstrap],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )


async def _kafka(bootstrap: str) -> KafkaSettings:
    kafka = KafkaSettings(
        bootstrap=bootstrap, topic_prefix=f"dlq{uuid.uuid4().hex[:8]}.", partitions=1
    )
    for attempt in range(10):
        try:
            await ensure_topics(kafka)
            break
        except Exception:
            if attempt == 9:
                raise
            await asyncio.sleep(0.5)
    return kafka


async def test_list_replay_once_and_leave_the_rest(kafka_bootstrap: str) -> None:
    kafka = await _kafka(kafka_bootstrap)
    dlq, changes = topic_name(DLQ, kafka), topic_name(CHANGES_OUTLOOK, kafka)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    try:
        parked: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = [
            (b"mbx-1", b'{"n":1}', _headers("poison", changes, 10)),
            (b"mbx-1", b'{"n":2}', _headers("paused", changes, 11)),
            (b"mbx-1", b"{}", _headers("alert", "", 0, "mass delete")),
            (b"mbx-2", b'{"n":3}', _headers("refused", changes, 12, "no rules")),
            (b"mbx-1", b'{"n":4}', _headers("poison", "elsewhere", 13)),
            (b"mbx-1", b'{"n":5}', _headers("poison", changes, 14)),
        ]
        for key, value, headers in parked:
            await producer.send_and_wait(dlq, value, key=key, headers=headers)
    finally:
        await producer.stop()

    listed = _cli(kafka, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows: list[dict[str, Any]] = orjson.loads(listed.stdout)
    assert [r["reason"] for r in rows] == [
        "poison",
        "paused",
        "alert",
        "refused",
        "poison",
        "poison",
    ]
    assert rows[0]["origin"] == f"{changes}:0:10" and rows[3]["error"] == "no rules"
    only = _cli(kafka, "list", "--reason", "refused")
    assert only.returncode == 0 and "1 record(s)" in only.stdout and "mbx-2" in only.stdout

    dry = _cli(kafka, "replay", "--dry-run", "--mailbox", "mbx-1")
    assert dry.returncode == 0, dry.stderr
    assert "would replay 2, skipped 1" in dry.stdout  # n=1 and n=5; n=4's origin is unknown
    assert await read_topic(kafka.bootstrap, changes) == []

    done = _cli(kafka, "replay", "--json")
    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)
    assert [r["dlq"] for r in report["replayed"]] == ["0:0", "0:3", "0:5"]
    assert [s["why"] for s in report["skipped"]] == [
        "origin topic 'elsewhere' is not a pipeline input"
    ]
    assert await read_topic(kafka.bootstrap, changes) == [
        ("mbx-1", b'{"n":1}'),
        ("mbx-2", b'{"n":3}'),
        ("mbx-1", b'{"n":5}'),
    ]
    again = _cli(kafka, "replay")
    assert again.returncode == 0 and "replayed 0, skipped 0" in again.stdout
    assert len(await read_topic(kafka.bootstrap, changes)) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--reason", "DROP TABLE"], "expected a reason"),
        (["replay", "--mailbox", "a b"], "'--mailbox': expected 1-512 characters"),
        (["replay", "--timeout", "-3"], "expected seconds within [0.5, 600]"),
        (["purge"], "No such command 'purge'"),
    ],
)
def test_garbage_arguments_are_refused(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "dlq", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stdout == ""


def test_unreachable_kafka_is_a_clear_error() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "dlq",
            "list",
            "--bootstrap",
            "127.0.0.1:1",
            "--timeout",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("dynasync: Kafka: cannot reach 127.0.0.1:1: ")
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
