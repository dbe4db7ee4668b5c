"""Per-mailbox write lanes and partition progress: concurrency across mailboxes, order within
one, batches that never hold one item twice, and commits that never pass an open record."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from aiokafka import TopicPartition

from pipeline.app import SendFailedError
from pipeline.stages.lanes import Lanes, Progress

TP0 = TopicPartition("commands.outlook", 0)
TP1 = TopicPartition("commands.outlook", 1)


def _done(
    loop: asyncio.AbstractEventLoop, exc: BaseException | None = None
) -> asyncio.Future[None]:
    fut: asyncio.Future[None] = loop.create_future()
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)
    return fut


async def test_a_stuck_mailbox_holds_up_no_other_and_order_holds_within_one() -> None:
    applied: list[tuple[str, int]] = []
    gate = asyncio.Event()

    async def apply(batch: Sequence[tuple[str, int]]) -> None:
        if batch[0][0] == "stuck":
            await gate.wait()
        applied.extend(batch)

    lanes: Lanes[tuple[str, int]] = Lanes(apply, item_of=lambda job: job, max_batch=3)
    async with lanes:
        for n in range(4):
            lanes.put("stuck", ("stuck", n))
            lanes.put("free", ("free", n))
        for _ in range(20):
            await asyncio.sleep(0)
        assert applied == [("free", n) for n in range(4)]
        assert lanes.queued == 4 and lanes.active() == 1
        gate.set()
        for _ in range(20):
            await asyncio.sleep(0)
        assert [job for job in applied if job[0] == "stuck"] == [("stuck", n) for n in range(4)]
        assert lanes.queued == 0 and lanes.active() == 0


async def test_a_batch_never_holds_one_item_twice_and_is_capped() -> None:
    batches: list[list[str]] = []
    gate = asyncio.Event()

    async def apply(batch: Sequence[str]) -> None:  # the first batch waits: a backlog builds
        await gate.wait()
        batches.append(list(batch))

    lanes: Lanes[str] = Lanes(apply, item_of=lambda job: job.split(":")[0], max_batch=3)
    async with lanes:
        for job in ["a:1", "a:2", "b:1", "c:1", "d:1", "e:1", "a:3"]:
            lanes.put("mbx", job)
        gate.set()
        for _ in range(20):
            await asyncio.sleep(0)
        assert lanes.queued == 0
    assert batches == [["a:1"], ["a:2", "b:1", "c:1"], ["d:1", "e:1", "a:3"]]


async def test_a_failing_apply_stops_the_lanes_with_its_error() -> None:
    async def apply(batch: Sequence[int]) -> None:
        raise ZeroDivisionError("bug")

    lanes: Lanes[int] = Lanes(apply, item_of=lambda job: job)
    async with lanes:
        lanes.put("mbx", 1)
        for _ in range(5):
            await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="ZeroDivisionError"):
            lanes.put("mbx", 2)


async def test_drop_cancels_work_in_flight() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def apply(batch: Sequence[int]) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    lanes: Lanes[int] = Lanes(apply, item_of=lambda job: job)
    lanes.put("mbx", 1)
    lanes.put("mbx", 2)
    await started.wait()
    await lanes.drop()
    assert cancelled.is_set() and lanes.queued == 0 and lanes.active() == 0


async def test_progress_commits_only_past_leading_done_records_with_acknowledged_sends() -> None:
    loop = asyncio.get_running_loop()
    progress = Progress()
    a, b, c = (progress.hold(TP0, n) for n in (10, 11, 12))
    other = progress.hold(TP1, 5)
    pending: asyncio.Future[None] = loop.create_future()
    Progress.complete(b, [_done(loop)])
    Progress.complete(c, [_done(loop)])
    Progress.complete(other, [pending])
    assert progress.committable() == {}  # 10 is open, 5's outcome not acknowledged
    Progress.complete(a, [_done(loop)])
    assert progress.committable() == {TP0: 13}
    pending.set_result(None)
    assert progress.committable() == {TP1: 6}
    assert progress.committable() == {} and len(progress) == 0


async def test_a_refused_send_stops_commits_and_forget_drops_the_rest() -> None:
    loop = asyncio.get_running_loop()
    progress = Progress()
    first = progress.hold(TP0, 0)
    progress.hold(TP0, 1)
    Progress.complete(first, [_done(loop, OSError("refused"))])
    with pytest.raises(SendFailedError, match="refused"):
        progress.committable()
    assert progress.held(TP0) == 2
    assert progress.forget() == 2 and progress.held(TP0) == 0


def test_garbage_lane_settings_are_refused() -> None:
    async def apply(batch: Sequence[int]) -> None:
        return None

    with pytest.raises(ValueError, match="max_batch"):
        Lanes(apply, item_of=lambda job: job, max_batch=0)
