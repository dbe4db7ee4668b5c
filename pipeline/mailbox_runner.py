"""One mailbox's Outlook reader under supervision.

A passing failure (5xx, 429, timeouts, connection resets, or anything unexpected) is retried
with capped exponential backoff: one WARNING line when it starts, a summary at most every
``summary_every_s``, one INFO line when it recovers. A failure of the mailbox itself (Graph
says the user or mailbox is not there, or refuses access: 401/403/404) first drops the cached
stream list (a To Do list id may be stale) and tries once more; if that fails the same way the
mailbox becomes *failing*: the runtime raises an alert, records the state and drops its
subscriptions, the reader tries again ``failing_tries`` times ``failing_retry_s`` apart, each
time from freshly looked-up ids and subscriptions, and then the mailbox is disabled.

Between passes the runner waits as a :class:`connectors.pacing.Pacer` says: ``poll_s`` after a
pass that published changes, growing to ``max_poll_s`` while passes find nothing; ``wake()``
(a webhook pass of the mailbox found changes) brings it back to ``poll_s`` at once. With
``full_every_s`` a full pass (every stream, subscriptions ensured) runs at least that often: the
safety net under webhooks, in case a notification was lost. Full passes go through
``full_gate`` when one is given, shared by every runner of the process, so a worker starting
with thousands of mailboxes makes their first passes a bounded number at a time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias

from connectors.errors import AuthError, ConnectorError, ForbiddenError, NotFoundError
from connectors.pacing import Pacer, idle

log = logging.getLogger(__name__)

#: Graph error codes that mean the mailbox itself cannot be served, whatever the status.
MAILBOX_CODES = frozenset(
    {
        "MailboxNotEnabledForRESTAPI",
        "MailboxNotSupportedForRESTAPI",
        "ResourceNotFound",
        "Request_ResourceNotFound",
        "ErrorItemNotFound",
        "ErrorInvalidUser",
        "ErrorNonExistentMailbox",
        "ErrorAccessDenied",
        "Authorization_RequestDenied",
        "InvalidAuthenticationToken",
    }
)

RunnerState: TypeAlias = Literal["ok", "retrying", "failing", "disabled"]

SyncPass = Callable[[bool], Awaitable[int]]
"""One pass over the mailbox; ``True``: a full one (subscriptions ensured, every stream).
Returns how many changes it published."""


def mailbox_level(exc: BaseException) -> bool:
    """Whether Graph answered that it will not serve this mailbox (user or mailbox gone,
    consent revoked, access denied, licence removed), as opposed to a failure that passes."""
    if not isinstance(exc, ConnectorError) or exc.retriable or exc.status is None:
        return False  # a token that cannot be had is the app's problem, not the mailbox's
    if isinstance(exc, NotFoundError | ForbiddenError | AuthError):
        return True
    return exc.code in MAILBOX_CODES


def describe(exc: BaseException, limit: int = 300) -> str:
    """One line: the error's type and message."""
    text = " ".join(str(exc).split()) or "no message"
    line = f"{type(exc).__name__}: {text}"
    return line if len(line) <= limit else line[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class RunnerPolicy:
    """How one mailbox's reader polls and retries."""

    poll_s: float = 1.0
    """The wait after a pass that published changes (the floor)."""
    max_poll_s: float | None = None
    """The wait idle passes grow to (None: ``poll_s``, no growth)."""
    full_every_s: float | None = None
    """A full pass at least this often (None: only the first and after failing)."""
    restart_delay_s: float = 2.0
    max_restart_delay_s: float = 60.0
    summary_every_s: float = 60.0
    failing_tries: int = 10
    failing_retry_s: float = 300.0

    def __post_init__(self) -> None:
        for name in ("poll_s", "restart_delay_s", "max_restart_delay_s", "summary_every_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if self.max_poll_s is not None and not self.max_poll_s >= self.poll_s:
            raise ValueError("max_poll_s must be >= poll_s")
        if self.full_every_s is not None and not self.full_every_s > 0:
            raise ValueError("full_every_s must be > 0")
        if self.max_restart_delay_s < self.restart_delay_s:
            raise ValueError("max_restart_delay_s must be >= restart_delay_s")
        if self.failing_tries < 1 or not self.failing_retry_s > 0:
            raise ValueError("failing_tries must be >= 1 and failing_retry_s > 0")


class MailboxHooks(Protocol):
    """What the runner asks of the runtime around one mailbox."""

    def forget(self, mailbox_id: str) -> None:
        """Drop the cached streams (To Do list ids) so the next pass looks them up again."""

    async def failing(self, mailbox_id: str, error: str) -> None:
        """Graph refuses the mailbox: alert, record the failing state, drop subscriptions."""

    async def recovered(self, mailbox_id: str) -> None:
        """A failing mailbox synced again: clear the failing state."""

    async def disable(self, mailbox_id: str, reason: str) -> None:
        """The mailbox kept failing: disable it, with ``reason``."""


class MailboxRunner:
    """Runs ``sync`` for one mailbox until cancelled, or until it disabled the mailbox."""

    def __init__(
        self,
        mailbox_id: str,
        label: str,
        sync: SyncPass,
        hooks: MailboxHooks,
        policy: RunnerPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        full_gate: asyncio.Semaphore | None = None,
    ) -> None:
        self.mailbox_id = mailbox_id
        self._full_gate = full_gate
        self.label = label
        self._sync = sync
        self._hooks = hooks
        self.policy = policy
        self._clock = clock
        self.pacer = Pacer(policy.poll_s, policy.max_poll_s, rand=rand)
        """How long it waits between passes (read it; the runner drives it)."""
        self._woken = asyncio.Event()
        self._last_full: float | None = None
        self.state: RunnerState = "ok"
        self.passes = 0
        self.full_passes = 0
        self.wakes = 0
        self.wait_s = policy.poll_s
        """The wait after the last pass."""
        self.failed_tries = 0
        self.last_error: str | None = None
        self.last_pass_at: float | None = None
        """When the last pass succeeded (seconds since the epoch), None before one."""
        self._retries = 0
        self._since = 0.0
        self._logged = 0.0

    def wake(self) -> None:
        """Changes were seen elsewhere (a webhook pass): back to ``poll_s``, and end the
        current wait so the next pass runs now."""
        self.wakes += 1
        self.pacer.reset()
        self._woken.set()

    def _full_due(self) -> bool:
        every, last = self.policy.full_every_s, self._last_full
        return every is not None and last is not None and self._clock() - last >= every

    def _next_wait(self, published: int) -> float:
        wait = self.pacer.next_wait(published > 0)
        every, last = self.policy.full_every_s, self._last_full
        if every is not None and last is not None:
            wait = min(wait, max(0.0, last + every - self._clock()))
        return wait

    async def run(self) -> None:
        """Pass, wait, pass again; failures as the module docstring says."""
        full, refreshed = True, False
        while True:
            full = full or self._full_due()
            try:
                published = await self._pass(full)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, NotFoundError) and not refreshed:
                    # a cached id (a To Do list, a recreated user's) may be stale: look again
                    self._hooks.forget(self.mailbox_id)
                    refreshed = True
                    continue
                refreshed = False
                if not mailbox_level(exc):
                    await self._passing(exc)
                    continue
                if await self._failing(exc):
                    return
                full, refreshed = True, True  # _failing forgot the caches: rebuild them all
                continue
            if full:
                self.full_passes += 1
                self._last_full = self._clock()
            refreshed, full = False, False
            self.last_pass_at = time.time()
            await self._succeeded()
            self.wait_s = self._next_wait(published)
            await idle(self.wait_s, self._woken)

    async def _pass(self, full: bool) -> int:
        if not full or self._full_gate is None:
            return await self._sync(full)
        async with self._full_gate:
            return await self._sync(full)

    async def _succeeded(self) -> None:
        self.passes += 1
        if self.state == "failing":
            log.warning(
                "%s: syncing again after %d failed tries; no longer failing",
                self.label,
                self.failed_tries,
            )
            await self._call("recovered", self._hooks.recovered(self.mailbox_id))
        elif self._retries:
            log.info(
                "%s recovered after %.0f s (%d tries)",
                self.label,
                self._clock() - self._since,
                self._retries,
            )
        self.state, self.failed_tries, self._retries, self.last_error = "ok", 0, 0, None

    async def _passing(self, exc: Exception) -> None:
        now = self._clock()
        self.last_error = describe(exc)
        if self._retries == 0:
            self._since = self._logged = now
            log.warning(
                "%s failing, retrying with backoff: %s",
                self.label,
                self.last_error,
                exc_info=not isinstance(exc, ConnectorError),  # a bug: show where, once
            )
        self._retries += 1
        if self._retries > 1 and now - self._logged >= self.policy.summary_every_s:
            self._logged = now
            log.warning(
                "%s failing for %.0f s (%d tries): %s",
                self.label,
                now - self._since,
                self._retries,
                self.last_error,
            )
        if self.state == "ok":
            self.state = "retrying"
        cap = min(
            self.policy.max_restart_delay_s,
            self.policy.restart_delay_s * 2 ** min(self._retries - 1, 30),
        )
        await asyncio.sleep(random.uniform(cap / 2, cap))

    async def _failing(self, exc: Exception) -> bool:
        """Count a mailbox-level failure; True once the mailbox is disabled."""
        self.failed_tries += 1
        self.last_error = error = describe(exc)
        tries, retry_s = self.policy.failing_tries, self.policy.failing_retry_s
        if self.state != "failing":
            self.state = "failing"
            log.warning(
                "%s: the mailbox is refused (%s); failing: %d more tries %.0f s apart, "
                "then it is disabled",
                self.label,
                error,
                tries - 1,
                retry_s,
            )
            await self._call("failing", self._hooks.failing(self.mailbox_id, error))
        else:
            log.warning(
                "%s still failing (try %d of %d): %s", self.label, self.failed_tries, tries, error
            )
        if self.failed_tries >= tries:
            reason = f"disabled after {self.failed_tries} failed tries: {error}"
            log.error("%s: %s", self.label, reason)
            await self._call("disable", self._hooks.disable(self.mailbox_id, reason))
            self.state = "disabled"
            return True
        await asyncio.sleep(retry_s)
        self._hooks.forget(self.mailbox_id)
        return False

    async def _call(self, what: str, step: Awaitable[None]) -> None:
        """Run a hook; its failure is logged, never the end of the runner."""
        try:
            await step
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s: %s step failed: %s", self.label, what, describe(exc))
