"""How a writer retries a command: forever while the other side is unreachable or throttling
(its partition waits, so order holds and nothing is lost while it is offline), a bounded
number of times for anything else.

Commands are safe to repeat: creates carry deterministic ids or are looked up before they are
made, updates and deletes are conditional on the version the planner saw.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
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
    """Apply one command through ``sink`` (:func:`apply_batch`); :class:`GaveUpError` when it
    failed ``max_attempts`` times with an error that is not transient."""
    (result,) = await apply_batch(sink, [command], policy, sleep)
    if isinstance(result, GaveUpError):
        raise result
    return result


async def apply_batch(
    sink: CommandSink,
    commands: Sequence[WriteCommand],
    policy: WritePolicy,
    sleep: Sleep = asyncio.sleep,
) -> list[WriteOutcome | GaveUpError]:
    """Apply ``commands`` (one mailbox's, in order, no two for the same item) through ``sink``;
    per command its first outcome that is not a retriable failure, or a :class:`GaveUpError`.

    Transient errors and retriable failed outcomes are retried without limit, only the commands
    not yet done (a ``retry_after`` is honoured). Any other exception is retried
    ``max_attempts`` times; a batch of several is then applied one command at a time, so one
    bad command does not take the others down with it.
    """
    results: list[WriteOutcome | GaveUpError | None] = [None] * len(commands)
    pending = list(range(len(commands)))
    delay = policy.first_s
    failures = 0
    attempt = 0
    while pending:
        attempt += 1
        wait = delay
        try:
            outcomes = await sink.apply([commands[i] for i in pending])
        except Exception as exc:
            if not transient(exc):
                failures += 1
                if failures >= policy.max_attempts:
                    await _give_up(sink, commands, pending, results, policy, sleep, exc)
                    break
            if isinstance(exc, ThrottledError):
                wait = max(wait, exc.retry_after)
            reason = f"{type(exc).__name__}: {exc}"
        else:
            if len(outcomes) != len(pending):
                raise RuntimeError(
                    f"the sink answered {len(outcomes)} outcomes for {len(pending)} commands"
                )
            again: list[int] = []
            for i, outcome in zip(pending, outcomes, strict=True):
                if outcome.status == "failed" and outcome.retriable:
                    again.append(i)
                    reason = f"{outcome.error_code}: {outcome.error_message}"
                else:
                    results[i] = outcome
            pending = again
            if not pending:
                break
        if attempt == 1 or attempt % 10 == 0:
            log.warning(
                "%d write(s) of mailbox %s to %s not done (attempt %d): %s; retrying in %.1fs",
                len(pending),
                commands[pending[0]].mailbox_id,
                commands[pending[0]].target,
                attempt,
                reason,
                min(wait, policy.cap_s),
            )
        await sleep(min(wait, policy.cap_s))
        delay = min(delay * 2, policy.cap_s)
    return [r if r is not None else GaveUpError("not applied") for r in results]


async def _give_up(
    sink: CommandSink,
    commands: Sequence[WriteCommand],
    pending: list[int],
    results: list[WriteOutcome | GaveUpError | None],
    policy: WritePolicy,
    sleep: Sleep,
    exc: Exception,
) -> None:
    if len(pending) > 1:  # find the bad one(s): each on its own
        for i in pending:
            (results[i],) = await apply_batch(sink, [commands[i]], policy, sleep)
        return
    (i,) = pending
    command = commands[i]
    failure = GaveUpError(
        f"{command.action} on {command.target} failed {policy.max_attempts} times: "
        f"{type(exc).__name__}: {exc}"
    )
    failure.__cause__ = exc
    results[i] = failure
