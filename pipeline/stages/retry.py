"""How a writer retries a command: forever while the other side is unreachable or throttling
(its partition waits, so order holds and nothing is lost while it is offline), a bounded
number of times for anything else.

Commands are safe to repeat: creates carry deterministic ids or are looked up before they are
made, updates and deletes are conditional on the version the planner saw.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from connectors.base import CommandSink
from connectors.errors import ConnectorError, ThrottledError
from schemas.models import WriteCommand, WriteOutcome

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class WritePolicy:
    """Backoff of a writer: ``first_s`` doubling up to ``cap_s``; ``max_attempts`` for errors
    that retrying is unlikely to fix."""

    first_s: float = 0.2
    cap_s: float = 30.0
    max_attempts: int = 5

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.cap_s:
            raise ValueError(f"backoff must satisfy 0 < first_s <= cap_s, got {self}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")


class GaveUpError(Exception):
    """A command failed ``max_attempts`` times with an error that is not transient."""


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` says the other side is unreachable or busy (so waiting helps)."""
    if isinstance(exc, ConnectorError):
        return exc.retriable
    return isinstance(exc, (OSError, TimeoutError))


async def apply_with_retries(
    sink: CommandSink,
    command: WriteCommand,
    policy: WritePolicy,
    sleep: Sleep = asyncio.sleep,
) -> WriteOutcome:
    """Apply one command through ``sink``; the first outcome that is not a retriable failure.

    Transient errors and retriable failed outcomes are retried without limit (a ``retry_after``
    is honoured); other exceptions ``max_attempts`` times, then :class:`GaveUpError`.
    """
    delay = policy.first_s
    failures = 0
    attempt = 0
    while True:
        attempt += 1
        wait = delay
        try:
            (outcome,) = await sink.apply([command])
        except Exception as exc:
            if not transient(exc):
                failures += 1
                if failures >= policy.max_attempts:
                    raise GaveUpError(
                        f"{command.action} on {command.target} failed {failures} times: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
            if isinstance(exc, ThrottledError):
                wait = max(wait, exc.retry_after)
            reason = f"{type(exc).__name__}: {exc}"
        else:
            if not (outcome.status == "failed" and outcome.retriable):
                return outcome
            reason = f"{outcome.error_code}: {outcome.error_message}"
        if attempt == 1 or attempt % 10 == 0:
            log.warning(
                "write %s to %s not done (attempt %d): %s; retrying in %.1fs",
                command.command_id,
                command.target,
                attempt,
                reason,
                wait,
            )
        await sleep(min(wait, policy.cap_s))
        delay = min(delay * 2, policy.cap_s)
