"""The HTTP choke point shared by both connectors: which requests may be retried, how long to
wait, and a per-key (per mailbox / per user) limiter that keeps to the services' budgets."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal, Protocol, TypeVar

from connectors.errors import ConnectorError, ThrottledError

T = TypeVar("T")

#: Which service a request went to.
ApiSide = Literal["graph", "dataverse"]


class RequestMeter(Protocol):
    """Told of every HTTP request a connector sent (each attempt, retries included)."""

    def request_done(self, side: ApiSide, status: int | None) -> None:
        """``status`` is the HTTP status answered, None when none came (timeout, reset)."""
        ...


RETRIABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def safe_to_repeat(
    method: str, headers: Mapping[str, str] | None = None, *, upsert: bool = False
) -> bool:
    """Whether a request may be sent again without risk of applying it twice.

    GET/PUT/DELETE are; PATCH is when it is conditional (If-Match / If-None-Match) or an
    upsert to a client-chosen key; POST never is (a create, sendMail, $batch of mixed ops).
    """
    method = method.upper()
    if method in _IDEMPOTENT_METHODS:
        return True
    if method == "PATCH":
        lowered = {k.lower() for k in (headers or {})}
        return upsert or "if-match" in lowered or "if-none-match" in lowered
    return False


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from Retry-After (delta-seconds or HTTP date); None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts and by one longest wait."""

    attempts: int = 6
    base_delay: float = 0.2
    max_delay: float = 30.0
    max_retry_after: float = 300.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """How long to sleep before retry number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return random.uniform(cap / 2, cap)


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    safe: bool,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run ``call``; on a retriable ConnectorError try again if the request is ``safe``.

    A ThrottledError's ``retry_after`` is honoured. An unsafe request is tried once, except when
    the service refused it before doing anything (429), which is always safe to repeat.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except ConnectorError as exc:
            retry_after = exc.retry_after if isinstance(exc, ThrottledError) else None
            if not exc.retriable or attempt >= policy.attempts:
                raise
            if not (safe or retry_after is not None):
                raise
            await sleep(policy.delay(attempt, retry_after))


class KeyedLimiter:
    """Per-key concurrency and sliding-window budget, e.g. Graph's 4 concurrent and 10,000
    requests per 10 minutes per mailbox, or Dataverse's 52 concurrent and 6,000 per 5 minutes
    per user. A key told to back off (Retry-After) waits before its next request."""

    def __init__(self, *, concurrency: int, budget: int, window_s: float) -> None:
        if concurrency < 1 or budget < 1 or window_s <= 0:
            raise ValueError("concurrency and budget must be >= 1, window_s > 0")
        self._concurrency = concurrency
        self._budget = budget
        self._window = window_s
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._sent: dict[str, deque[float]] = {}
        self._paused_until: dict[str, float] = {}
        self._in_flight: dict[str, int] = {}

    def backoff(self, key: str, seconds: float) -> None:
        """Hold every request of ``key`` for ``seconds`` (after a 429 with Retry-After)."""
        until = time.monotonic() + seconds
        self._paused_until[key] = max(self._paused_until.get(key, 0.0), until)

    async def _wait_budget(self, key: str) -> None:
        sent = self._sent.setdefault(key, deque())
        while True:
            now = time.monotonic()
            pause = self._paused_until.get(key, 0.0) - now
            while sent and sent[0] <= now - self._window:
                sent.popleft()
            if pause <= 0 and len(sent) < self._budget:
                sent.append(now)
                return
            wait = pause if pause > 0 else sent[0] + self._window - now
            await asyncio.sleep(max(wait, 0.001))

    @asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        """Hold one of ``key``'s concurrent slots, within its budget, for one request."""
        sem = self._semaphores.get(key)
        if sem is None:
            sem = self._semaphores[key] = asyncio.Semaphore(self._concurrency)
        async with sem:
            await self._wait_budget(key)
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
            try:
                yield
            finally:
                self._in_flight[key] -= 1

    def in_flight(self, key: str) -> int:
        """Requests of ``key`` holding a slot now."""
        return self._in_flight.get(key, 0)
