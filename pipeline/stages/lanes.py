"""Per-mailbox write lanes, and what of a partition may be committed.

:class:`Lanes` keeps one in-order queue and one task per key (a mailbox): mailboxes are
written concurrently, each one's jobs in order, a batch at a time (up to ``max_batch`` jobs,
never two for the same item in one batch), so a throttled or unreachable mailbox waits alone.

Jobs finish out of order across mailboxes, so :class:`Progress` tracks each partition's records
in offset order and says how far a partition may be committed: past the leading records that
are done and whose sends (their outcomes) the broker acknowledged, never past one still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from aiokafka import TopicPartition

from pipeline.app import SendFailedError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(eq=False, slots=True)
class Held:
    """A record being worked on; ``sends`` is set once its work is done."""

    tp: TopicPartition
    offset: int
    sends: list[asyncio.Future[Any]] | None = None


class Progress:
    """Per partition, the records taken and how far the partition may be committed."""

    def __init__(self) -> None:
        self._parts: dict[TopicPartition, deque[Held]] = {}

    def held(self, tp: TopicPartition) -> int:
        """Records of ``tp`` taken and not yet committable."""
        queue = self._parts.get(tp)
        return len(queue) if queue is not None else 0

    def __len__(self) -> int:
        return sum(len(q) for q in self._parts.values())

    def hold(self, tp: TopicPartition, offset: int) -> Held:
        """Track the record at ``offset`` of ``tp`` (records of a partition come in order)."""
        held = Held(tp, offset)
        self._parts.setdefault(tp, deque()).append(held)
        return held

    @staticmethod
    def complete(held: Held, sends: Iterable[asyncio.Future[Any]]) -> None:
        """``held`` is done; it is committable once ``sends`` are acknowledged."""
        held.sends = list(sends)

    def committable(self) -> dict[TopicPartition, int]:
        """The next offset to commit of each partition that moved on (its leading records are
        done and their sends acknowledged); :class:`SendFailedError` if such a send failed."""
        out: dict[TopicPartition, int] = {}
        for tp, queue in self._parts.items():
            while queue and queue[0].sends is not None:
                head = queue[0]
                sends = head.sends or []
                if not all(sent.done() for sent in sends):
                    break
                for sent in sends:
                    exc = None if sent.cancelled() else sent.exception()
                    if sent.cancelled() or exc is not None:
                        raise SendFailedError(
                            f"{tp.topic}[{tp.partition}]@{head.offset}: {exc or 'cancelled'}"
                        ) from exc
                queue.popleft()
                out[tp] = head.offset + 1
        return out

    def forget(self, tps: Iterable[TopicPartition] | None = None) -> int:
        """Stop tracking ``tps`` (default: all); how many open records were dropped."""
        keys = list(self._parts) if tps is None else [tp for tp in tps if tp in self._parts]
        return sum(len(self._parts.pop(tp)) for tp in keys)


#: Applies one batch of a lane's jobs (all of one mailbox, in order).
Apply = Callable[[Sequence[T]], Awaitable[None]]


@dataclass(slots=True)
class _Lane(Generic[T]):
    queue: deque[T] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


class Lanes(Generic[T]):
    """One in-order queue and worker task per key (a mailbox); see the module docstring.

    ``item_of`` names the item a job writes: a batch never holds two jobs for the same item,
    so a partly failed batch retried later cannot reorder writes to one item.
    """

    def __init__(
        self,
        apply: Apply[T],
        *,
        item_of: Callable[[T], Hashable],
        max_batch: int = 20,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._apply = apply
        self._item_of = item_of
        self._max_batch = max_batch
        self._lanes: dict[str, _Lane[T]] = {}
        self._queued = 0
        self._failure: BaseException | None = None

    @property
    def queued(self) -> int:
        """Jobs waiting or being applied, in all lanes."""
        return self._queued

    def active(self) -> int:
        """Lanes with work."""
        return len(self._lanes)

    def waiting(self, key: str) -> int:
        """Jobs queued on ``key``'s lane, not counting the batch being applied."""
        lane = self._lanes.get(key)
        return len(lane.queue) if lane is not None else 0

    def put(self, key: str, job: T) -> None:
        """Queue ``job`` on ``key``'s lane (after every job queued there before it)."""
        self.check()
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        lane.queue.append(job)
        self._queued += 1
        if lane.task is None:
            lane.task = asyncio.create_task(self._drain(key, lane), name=f"lane:{key}")

    def check(self) -> None:
        """Raise if a lane failed (a bug in ``apply``: nothing more is taken)."""
        if self._failure is not None:
            raise RuntimeError(f"a write lane failed: {self._failure!r}") from self._failure

    def _take(self, queue: deque[T]) -> list[T]:
        batch: list[T] = []
        items: set[Hashable] = set()
        while queue and len(batch) < self._max_batch:
            item = self._item_of(queue[0])
            if item in items:
                break
            items.add(item)
            batch.append(queue.popleft())
        return batch

    async def _drain(self, key: str, lane: _Lane[T]) -> None:
        try:
            while lane.queue:
                batch = self._take(lane.queue)
                try:
                    await self._apply(batch)
                finally:
                    self._queued -= len(batch)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug in apply: stop taking work, tell the agent
            log.exception("write lane %s failed", key)
            self._failure = exc
        finally:
            if self._lanes.get(key) is lane:
                del self._lanes[key]

    async def drop(self) -> None:
        """Cancel every lane and forget what they held."""
        lanes, self._lanes = self._lanes, {}
        tasks = [lane.task for lane in lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._queued = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.drop()
