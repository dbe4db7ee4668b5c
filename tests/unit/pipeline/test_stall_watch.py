"""StallWatch: a partition whose next records were fetched but never delivered is sought back
to the record after the last one the agent took, once the agent has been idle long enough;
never while the agent is busy, the flow is stopped, or nothing is missing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from pipeline.stages.stall import StallWatch


@dataclass
class FakeConsumer:
    ends: dict[str, int]
    flowing: bool = True
    sought: list[tuple[str, int]] = field(default_factory=list)

    def assignment(self) -> Iterable[str]:
        return self.ends.keys()

    def highwater(self, tp: str) -> int | None:
        return self.ends.get(tp)

    async def seek(self, partition: str, offset: int) -> None:
        self.sought.append((partition, offset))


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def watch(consumer: FakeConsumer, clock: Clock) -> StallWatch:
    return StallWatch(lambda: consumer, flowing=lambda: consumer.flowing, after_s=10, clock=clock)


async def test_an_undelivered_record_is_read_again_once_the_agent_is_idle() -> None:
    consumer, clock = FakeConsumer({"t-0": 4, "t-1": 8}), Clock()
    w = watch(consumer, clock)
    w.took("t-0", 2)  # record 3 of t-0 was fetched but never delivered
    w.done()
    w.took("t-1", 7)  # t-1 is complete
    w.done()
    clock.now = 5
    assert await w.check() == 0  # not idle long enough
    clock.now = 20
    assert await w.check() == 1
    assert consumer.sought == [("t-0", 3)]
    clock.now = 20.5
    assert await w.check() == 0  # checks at most once a second, and waits again after a seek


async def test_no_seek_while_busy_stopped_complete_or_revoked() -> None:
    consumer, clock = FakeConsumer({"t-0": 4}), Clock()
    w = watch(consumer, clock)
    w.took("t-0", 2)  # busy with it: record 3 is simply next
    clock.now = 60
    assert await w.check() == 0
    w.done()
    consumer.flowing = False  # a rebalance moves positions itself
    clock.now = 120
    assert await w.check() == 0
    consumer.flowing = True
    consumer.ends = {"t-0": 3}  # nothing after the last record taken
    clock.now = 180
    assert await w.check() == 0
    consumer.ends = {}  # revoked: forgotten
    clock.now = 240
    assert await w.check() == 0 and consumer.sought == []


def test_after_must_be_positive() -> None:
    consumer = FakeConsumer({})
    with pytest.raises(ValueError, match="after_s"):
        StallWatch(lambda: consumer, flowing=lambda: True, after_s=0)
