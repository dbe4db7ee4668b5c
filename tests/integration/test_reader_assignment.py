"""One active reader per (organisation, table) with several workers, on the real broker: the
worker owning a stream's partition in the consumer group runs it, and only that worker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.assignment import ReaderAssignment
from pipeline.ownership import partition_of

pytestmark = pytest.mark.kafka

PARTITIONS = 4
STREAMS = [f"crm:org-{i}:contact" for i in range(8)]


@pytest.fixture
async def coordination_topic(kafka_bootstrap: str) -> AsyncIterator[str]:
    name = f"t-dv-assign-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(name, PARTITIONS, 1)])
    yield name
    await admin.delete_topics([name])
    await admin.close()


class Ledger:
    """Which worker runs which stream now; the most that ever ran one stream at once."""

    def __init__(self) -> None:
        self.active: dict[str, set[str]] = {s: set() for s in STREAMS}
        self.peak = 0

    def factory(self, worker: str, stream: str) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            self.active[stream].add(worker)
            self.peak = max(self.peak, len(self.active[stream]))
            try:
                await asyncio.Event().wait()
            finally:
                self.active[stream].discard(worker)

        return run

    def of(self, worker: str) -> set[str]:
        return {s for s, ws in self.active.items() if worker in ws}


def worker(bootstrap: str, topic: str, group: str, name: str, ledger: Ledger) -> ReaderAssignment:
    return ReaderAssignment(
        bootstrap,
        topic=topic,
        group_id=group,
        readers={s: ledger.factory(name, s) for s in STREAMS},
        session_timeout_ms=6000,
    )


async def until(check: Callable[[], bool], within_s: float = 45.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.1)


def test_streams_spread_over_partitions() -> None:
    parts = {partition_of(s, PARTITIONS) for s in STREAMS}
    assert len(parts) >= 2


async def test_each_stream_runs_on_exactly_one_worker(
    kafka_bootstrap: str, coordination_topic: str
) -> None:
    group = f"dv-readers-{uuid.uuid4().hex[:8]}"
    ledger = Ledger()
    a = worker(kafka_bootstrap, coordination_topic, group, "a", ledger)
    await a.start()
    await until(lambda: ledger.of("a") == set(STREAMS))
    b = worker(kafka_bootstrap, coordination_topic, group, "b", ledger)
    await b.start()
    try:
        await until(
            lambda: (
                bool(ledger.of("b"))
                and ledger.of("a") | ledger.of("b") == set(STREAMS)
                and not ledger.of("a") & ledger.of("b")
            )
        )
        assert a.running == ledger.of("a") and b.running == ledger.of("b")
    finally:
        await b.stop()
    await until(lambda: ledger.of("a") == set(STREAMS))
    # the configuration changes: a stream goes, one comes
    new = "crm:org-new:contact"
    ledger.active[new] = set()
    readers = {s: ledger.factory("a", s) for s in [*STREAMS[1:], new]}
    await a.set_readers(readers)
    await until(lambda: ledger.of("a") == {*STREAMS[1:], new})
    await a.stop()
    assert ledger.peak == 1
    assert all(not ws for ws in ledger.active.values())
