"""Service protection limits per user: requests and execution time per window, concurrency."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .config import ThrottleLimits
from .errors import CONCURRENCY_LIMIT, EXECUTION_TIME_LIMIT, REQUESTS_LIMIT, ApiError


@dataclass
class _UserWindow:
    requests: deque[float] = field(default_factory=deque)
    executions: deque[tuple[float, float]] = field(default_factory=deque)
    execution_ms: float = 0.0
    in_flight: int = 0


class Throttle:
    """Admits or rejects (429 + Retry-After) each request of a user."""

    def __init__(
        self,
        limits: ThrottleLimits,
        enabled: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.enabled = enabled
        self.clock = clock
        self._users: dict[str, _UserWindow] = {}

    def reset(self) -> None:
        """Forget every user's history."""
        self._users.clear()

    def _prune(self, window: _UserWindow, now: float) -> None:
        horizon = now - self.limits.window_seconds
        while window.requests and window.requests[0] <= horizon:
            window.requests.popleft()
        while window.executions and window.executions[0][0] <= horizon:
            window.execution_ms -= window.executions.popleft()[1]

    def acquire(self, user: str) -> None:
        """Admit a request (count it and mark it in flight) or raise the 429 ApiError."""
        window = self._users.setdefault(user, _UserWindow())
        if not self.enabled:
            window.in_flight += 1
            return
        now = self.clock()
        self._prune(window, now)
        limits = self.limits
        seconds = int(limits.window_seconds)
        if window.in_flight >= limits.max_concurrent:
            raise _throttled(
                CONCURRENCY_LIMIT,
                f"Number of concurrent requests exceeded the limit of {limits.max_concurrent}.",
                1,
            )
        if len(window.requests) >= limits.requests_per_window:
            wait = window.requests[0] + limits.window_seconds - now
            raise _throttled(
                REQUESTS_LIMIT,
                f"Number of requests exceeded the limit of {limits.requests_per_window} "
                f"over time window of {seconds} seconds.",
                wait,
            )
        if window.execution_ms >= limits.execution_ms_per_window:
            wait = window.executions[0][0] + limits.window_seconds - now
            raise _throttled(
                EXECUTION_TIME_LIMIT,
                "Combined execution time of incoming requests exceeded limit of "
                f"{limits.execution_ms_per_window} milliseconds over time window of {seconds} "
                "seconds. Decrease number of concurrent requests or reduce the duration of "
                "requests and try again later.",
                wait,
            )
        window.requests.append(now)
        window.in_flight += 1

    def release(self, user: str, elapsed_ms: float) -> None:
        """Mark an admitted request finished, charging its execution time."""
        window = self._users.setdefault(user, _UserWindow())
        window.in_flight = max(0, window.in_flight - 1)
        if self.enabled:
            window.executions.append((self.clock(), elapsed_ms))
            window.execution_ms += elapsed_ms


def _throttled(code: str, message: str, wait: float) -> ApiError:
    retry_after = max(1, math.ceil(wait))
    return ApiError(429, code, message, {"Retry-After": str(retry_after)})
