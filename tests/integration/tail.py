"""A consumer that keeps every record of a topic, for tests on the real broker."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer


class Tail:
    """Reads a topic from the beginning, keeping every record."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        self.records: list[Any] = []

    async def __aenter__(self) -> Tail:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def until(self, pred: Callable[[list[Any]], bool], within: float = 60) -> list[Any]:
        deadline = time.monotonic() + within
        while not pred(self.records):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; saw {len(self.records)} records"
            batch = await self.consumer.getmany(timeout_ms=int(min(left, 1) * 1000))
            for records in batch.values():
                self.records.extend(records)
        return self.records

    async def quiet(self, seconds: float) -> list[Any]:
        """Keep reading for ``seconds``; every record seen so far."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            batch = await self.consumer.getmany(timeout_ms=500)
            for records in batch.values():
                self.records.extend(records)
        return self.records
