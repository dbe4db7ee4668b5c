"""Acknowledging a stream's events only once what they caused is durable, without waiting for
the broker event by event.

An agent iterates a manual-ack stream (``stream.noack()``), sends what each event causes without
awaiting the broker, and hands the event with its send futures to an :class:`AckWindow`. The
window acks events strictly in order, each only after every record it caused was acknowledged
(acks=all), so Faust can never commit an offset past an event whose output is not durable.
Many events' records are in flight at once; the window is flushed when it holds
``max_events``, or ``max_delay_s`` after its oldest event (a ticker does that while the stream
is idle). A failed send stops the window for good: that event and every later one stay
un-acked (read again after a restart), the agent stops with :class:`SendFailedError`, and
``on_fatal`` is told — by default :func:`exit_process` ends the worker like a crash, because
Faust cannot stop gracefully while it holds events that will never be acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import faust

from pipeline.stages.stall import StallWatch

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WindowSize:
    """How many events may wait for their sends, and for how long at most when idle."""

    events: int = 1000
    delay_s: float = 0.005

    def __post_init__(self) -> None:
        if self.events < 1 or not 0 < self.delay_s <= 1:
            raise ValueError(f"a window needs events >= 1 and delay_s within (0, 1], got {self}")


def manual_acks(stream: faust.StreamT[Any]) -> faust.StreamT[Any]:
    """The manual-ack clone of an agent's stream (iterate the clone, not the original)."""
    if not isinstance(stream, faust.Stream):
        raise TypeError(f"expected a Faust stream, got {type(stream).__name__}")
    return stream.noack()


#: Exit status of a worker that stopped because the broker refused a record.
EXIT_SEND_FAILED = 70


async def exit_process(exc: BaseException) -> None:
    """End the worker at once, like a crash: what is uncommitted is read again on restart.

    A graceful stop is not possible here: Faust waits for held events to be acked first.
    """
    log.critical(
        "a record was refused by the broker (%s); exiting to restart from the last commit", exc
    )
    logging.shutdown()
    os._exit(EXIT_SEND_FAILED)


class SendFailedError(RuntimeError):
    """A record an event caused was not accepted by the broker; that event stays un-acked."""


class AckWindow:
    """Events waiting for their sends; see the module docstring."""

    def __init__(
        self,
        stream: faust.StreamT[Any],
        *,
        max_events: int = 1000,
        max_delay_s: float = 0.005,
        on_fatal: Callable[[BaseException], Awaitable[None]] | None = exit_process,
        stall_after_s: float | None = 10.0,
    ) -> None:
        if max_events < 1 or not 0 < max_delay_s <= 1:
            raise ValueError("max_events must be >= 1 and max_delay_s within (0, 1]")
        self._stream = stream
        self._watch = (
            None
            if stall_after_s is None
            else StallWatch(
                lambda: stream.app.consumer,
                flowing=lambda: getattr(stream.app.consumer, "flow_active", False) is True,
                after_s=stall_after_s,
            )
        )
        self._max = max_events
        self._delay = max_delay_s
        self._pending: deque[tuple[faust.EventT[Any], list[Awaitable[Any]], float]] = deque()
        self._lock = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None
        self._owner: asyncio.Task[Any] | None = None
        self._on_fatal = on_fatal
        self.failure: BaseException | None = None

    def __len__(self) -> int:
        return len(self._pending)

    async def events(self) -> AsyncIterator[faust.EventT[Any]]:
        """The stream's events; iterate this rather than the stream, so records Faust fetched
        but never delivered are noticed and read again (:mod:`pipeline.stages.stall`)."""
        watch = self._watch
        async for event in self._stream.events():
            if watch is not None:
                watch.took(event.message.tp, event.message.offset)
            yield event
            if watch is not None:
                watch.done()

    async def add(self, event: faust.EventT[Any], sends: Iterable[Awaitable[Any]]) -> None:
        """Hold ``event`` until ``sends`` are acknowledged; acks the events whose sends are done
        and, while the window is full, waits for the oldest."""
        self.check()
        self._pending.append((event, list(sends), time.monotonic()))
        if len(self._pending) >= self._max:
            await self._release(wait=True)

    def check(self) -> None:
        """Raise if a flush failed (nothing after the failed event may be acked)."""
        if self.failure is not None:
            raise SendFailedError(f"a send failed, events stay un-acked: {self.failure}")

    async def flush(self) -> None:
        """Wait for every held event's sends, acking each event in order as they complete."""
        async with self._lock:
            await self._ack_while(lambda: True)

    async def _release(self, *, wait: bool) -> None:
        """Ack the oldest events whose sends are done; with ``wait``, first wait for the oldest
        events until the window has room."""
        async with self._lock:
            if wait:
                await self._ack_while(lambda: len(self._pending) >= self._max)
            await self._ack_while(self._head_done)

    def _head_done(self) -> bool:
        return all(_done(sent) for sent in self._pending[0][1])

    async def _ack_while(self, more: Callable[[], bool]) -> None:
        while self._pending and more():
            self.check()
            event, sends, _ = self._pending[0]
            for sent in sends:
                try:
                    await sent
                except Exception as exc:
                    await self._fail(event, exc)
                    raise SendFailedError(str(exc)) from exc
            self._pending.popleft()
            await self._stream.ack(event)

    async def _fail(self, event: faust.EventT[Any], exc: BaseException) -> None:
        """Stop for good: nothing held is acked; the agent stops; ``on_fatal`` is told."""
        self.failure = exc
        held = len(self._pending)
        self._pending.clear()  # un-acked and unreferenced: Faust can stop without waiting
        log.error(
            "send failed; %s and %d later event(s) stay uncommitted: %s", _where(event), held, exc
        )
        owner = self._owner
        if owner is not None and owner is not asyncio.current_task() and not owner.done():
            owner.cancel()
        if self._on_fatal is not None:
            await self._on_fatal(exc)

    async def _tick(self) -> None:
        while self.failure is None:
            await asyncio.sleep(self._delay)
            if self._pending and time.monotonic() - self._pending[0][2] >= self._delay:
                with contextlib.suppress(SendFailedError):
                    await self.flush()
            if self._watch is not None and not self._pending:
                try:
                    await self._watch.check()
                except Exception as exc:  # the watch must never take the agent down
                    log.warning("stall check failed: %s", exc)

    async def __aenter__(self) -> Self:
        self._owner = asyncio.current_task()
        self._ticker = asyncio.create_task(self._tick())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self.failure is not None and isinstance(exc, asyncio.CancelledError):
            raise SendFailedError(f"a send failed: {self.failure}") from self.failure
        if exc is None and self.failure is None:
            await self.flush()


def _done(sent: Awaitable[Any]) -> bool:
    return isinstance(sent, asyncio.Future) and sent.done()


def _where(event: faust.EventT[Any]) -> str:
    msg = event.message
    return f"{msg.topic}[{msg.partition}]@{msg.offset}"
