"""The HTTP choke point: what is retried, how long it waits, and the per-key limiter."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from connectors.errors import (
    BadRequestError,
    PreconditionFailedError,
    ThrottledError,
    TransientError,
)
from connectors.http import (
    KeyedLimiter,
    RetryPolicy,
    parse_retry_after,
    safe_to_repeat,
    with_retries,
)


@pytest.mark.parametrize(
    ("method", "headers", "upsert", "safe"),
    [
        ("GET", {}, False, True),
        ("DELETE", {}, False, True),
        ("POST", {}, False, False),
        ("PATCH", {}, False, False),
        ("PATCH", {"If-Match": 'W/"3"'}, False, True),
        ("PATCH", {"if-none-match": "*"}, False, True),
        ("PATCH", {}, True, True),
    ],
)
def test_safe_to_repeat(method: str, headers: dict[str, str], upsert: bool, safe: bool) -> None:
    assert safe_to_repeat(method, headers, upsert=upsert) is safe


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") is None
    when = datetime.now(UTC) + timedelta(seconds=30)
    parsed = parse_retry_after(format_datetime(when, usegmt=True))
    assert parsed is not None and 25 <= parsed <= 31


class _Flaky:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


async def test_retries_transient_errors_of_safe_requests() -> None:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    call = _Flaky([TransientError("503", status=503), TransientError("504", status=504)])
    assert await with_retries(call, policy=RetryPolicy(), safe=True, sleep=sleep) == "ok"
    assert call.calls == 3 and len(slept) == 2


async def test_honours_retry_after_even_for_unsafe_requests() -> None:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    call = _Flaky([ThrottledError("429", retry_after=4)])
    assert await with_retries(call, policy=RetryPolicy(), safe=False, sleep=sleep) == "ok"
    assert slept == [4]


async def test_unsafe_request_is_not_repeated_after_a_5xx() -> None:
    call = _Flaky([TransientError("500", status=500)])
    with pytest.raises(TransientError):
        await with_retries(call, policy=RetryPolicy(), safe=False)
    assert call.calls == 1


@pytest.mark.parametrize("exc", [BadRequestError("400"), PreconditionFailedError("412")])
async def test_permanent_errors_are_not_retried(exc: Exception) -> None:
    call = _Flaky([exc])
    with pytest.raises(type(exc)):
        await with_retries(call, policy=RetryPolicy(), safe=True)
    assert call.calls == 1


async def test_gives_up_after_the_attempt_budget() -> None:
    async def sleep(s: float) -> None:
        return None

    call = _Flaky([TransientError("x") for _ in range(10)])
    with pytest.raises(TransientError):
        await with_retries(call, policy=RetryPolicy(attempts=3), safe=True, sleep=sleep)
    assert call.calls == 3


def test_backoff_is_bounded() -> None:
    policy = RetryPolicy(base_delay=1, max_delay=5, max_retry_after=60)
    assert all(0.5 <= policy.delay(1) <= 1 for _ in range(50))
    assert all(policy.delay(10) <= 5 for _ in range(50))
    assert policy.delay(1, retry_after=600) == 60


async def test_limiter_caps_concurrency_per_key() -> None:
    limiter = KeyedLimiter(concurrency=2, budget=1000, window_s=60)
    peak = {"a": 0, "b": 0}

    async def work(key: str) -> None:
        async with limiter.slot(key):
            peak[key] = max(peak[key], limiter.in_flight(key))
            await asyncio.sleep(0.01)

    await asyncio.gather(*(work("a") for _ in range(8)), *(work("b") for _ in range(3)))
    assert peak == {"a": 2, "b": 2}
    assert limiter.in_flight("a") == 0


async def test_limiter_keeps_to_the_window_budget() -> None:
    limiter = KeyedLimiter(concurrency=10, budget=3, window_s=0.3)
    started = time.monotonic()
    for _ in range(6):
        async with limiter.slot("m"):
            pass
    assert time.monotonic() - started >= 0.29


async def test_limiter_backoff_holds_the_key() -> None:
    limiter = KeyedLimiter(concurrency=4, budget=100, window_s=60)
    limiter.backoff("m", 0.2)
    started = time.monotonic()
    async with limiter.slot("m"):
        pass
    assert time.monotonic() - started >= 0.19
    started = time.monotonic()
    async with limiter.slot("other"):
        pass
    assert time.monotonic() - started < 0.1


def test_limiter_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        KeyedLimiter(concurrency=0, budget=1, window_s=1)
