"""Per app + mailbox throttling, injected faults, and request statistics."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass
from typing import Any

from .config import ThrottleLimits
from .errors import GraphError


class Throttle:
    """Graph's Outlook limits: concurrent requests and requests per window, per app + mailbox."""

    def __init__(self, limits: ThrottleLimits, enabled: bool) -> None:
        self.limits = limits
        self.enabled = enabled
        self._active: Counter[tuple[str, str]] = Counter()
        self._recent: dict[tuple[str, str], deque[float]] = defaultdict(deque)

    def reset(self) -> None:
        """Forget all counters."""
        self._active.clear()
        self._recent.clear()

    def enter(self, key: tuple[str, str]) -> None:
        """Count one request or raise 429; pair every successful call with ``leave``."""
        if not self.enabled:
            self._active[key] += 1
            return
        now = time.monotonic()
        recent = self._recent[key]
        while recent and recent[0] <= now - self.limits.window_seconds:
            recent.popleft()
        if self._active[key] >= self.limits.max_concurrent:
            raise GraphError(
                429,
                "MailboxConcurrency",
                "Application is over its MailboxConcurrency limit.",
                {"Retry-After": "1"},
            )
        if len(recent) >= self.limits.requests_per_window:
            wait = max(1, math.ceil(recent[0] + self.limits.window_seconds - now))
            raise GraphError(
                429,
                "ApplicationThrottled",
                "Application is over its request limit for this mailbox; retry later.",
                {"Retry-After": str(wait)},
            )
        recent.append(now)
        self._active[key] += 1

    def leave(self, key: tuple[str, str]) -> None:
        """End a request counted by ``enter``."""
        self._active[key] -= 1
        if self._active[key] <= 0:
            del self._active[key]


_FAULT_CODES = {
    # a mailbox that Graph will not serve: consent revoked, access policy, licence removed
    401: ("InvalidAuthenticationToken", "Access token validation failure."),
    403: ("ErrorAccessDenied", "Access is denied. Check credentials and try again."),
    404: (
        "MailboxNotEnabledForRESTAPI",
        "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
    ),
    429: ("TooManyRequests", "Too many requests."),
    500: ("InternalServerError", "An internal server error occurred."),
    503: ("ServiceNotAvailable", "The service is temporarily unavailable."),
    504: ("GatewayTimeout", "The gateway timed out."),
}


@dataclass(frozen=True)
class Fault:
    """An injected failure: ``status`` with probability ``rate``, plus latency."""

    status: int
    rate: float
    retry_after: int
    latency_ms: int
    mailbox: str | None

    @staticmethod
    def parse(body: Any) -> Fault | None:
        """Validate a control-API body; ``None`` means clear (rate 0 and no latency; rate 0 with
        ``latency_ms`` slows requests without failing them). Raises ``ValueError``."""
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        unknown = set(body) - {"status", "rate", "retry_after", "latency_ms", "mailbox"}
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
        rate = body.get("rate", 1.0)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ValueError("rate must be a number between 0 and 1")
        if rate == 0 and not body.get("latency_ms"):
            return None
        status = body.get("status", 503)
        if status not in _FAULT_CODES or isinstance(status, bool):
            raise ValueError("status must be one of 401, 403, 404, 429, 500, 503, 504")
        retry_after = body.get("retry_after", 1)
        if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0:
            raise ValueError("retry_after must be a non-negative integer (seconds)")
        latency = body.get("latency_ms", 0)
        if isinstance(latency, bool) or not isinstance(latency, int) or not 0 <= latency <= 60000:
            raise ValueError("latency_ms must be an integer between 0 and 60000")
        mailbox = body.get("mailbox")
        if mailbox is not None and (not isinstance(mailbox, str) or not mailbox):
            raise ValueError("mailbox must be a non-empty string")
        return Fault(status, float(rate), retry_after, latency, mailbox)


class Faults:
    """The active fault rule and the random source deciding when it fires."""

    def __init__(self, seed: int | None) -> None:
        self.rule: Fault | None = None
        self._random = random.Random(seed)

    async def apply(self, mailbox_keys: set[str]) -> None:
        """Sleep the latency, then maybe raise the configured error."""
        rule = self.rule
        if rule is None or (rule.mailbox is not None and rule.mailbox.lower() not in mailbox_keys):
            return
        if rule.latency_ms:
            await asyncio.sleep(rule.latency_ms / 1000)
        if self._random.random() < rule.rate:
            code, message = _FAULT_CODES[rule.status]
            headers = {"Retry-After": str(rule.retry_after)} if rule.status in (429, 503) else {}
            raise GraphError(rule.status, code, message, headers)


class Stats:
    """Request counts by mailbox, method and status."""

    def __init__(self) -> None:
        self.total = 0
        self.by_mailbox: Counter[str] = Counter()
        self.by_method: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()

    def record(self, mailbox: str, method: str, status: int) -> None:
        """Count one request."""
        self.total += 1
        self.by_mailbox[mailbox or "-"] += 1
        self.by_method[method] += 1
        self.by_status[str(status)] += 1

    def as_json(self) -> dict[str, Any]:
        """The ``GET /_emulator/stats`` body."""
        return {
            "total": self.total,
            "by_mailbox": dict(self.by_mailbox),
            "by_method": dict(self.by_method),
            "by_status": dict(self.by_status),
        }

    def reset(self) -> None:
        """Zero every counter."""
        self.total = 0
        self.by_mailbox.clear()
        self.by_method.clear()
        self.by_status.clear()


class RequestLog:
    """The last ``limit`` requests (``$batch`` members one by one): when each started and
    ended, its mailbox, method, path, status and the caller's User-Agent (a ``$batch``
    member carries its ``$batch``'s). ``GET /_emulator/requests`` serves it, so a test can
    tell which process wrote a mailbox when."""

    def __init__(self, limit: int = 50_000) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=limit)

    def record(
        self,
        mailbox: str,
        method: str,
        path: str,
        status: int,
        agent: str,
        started: float,
        ended: float,
    ) -> None:
        """Log one request (times from ``time.time()``)."""
        self.entries.append(
            {
                "mailbox": mailbox or "-",
                "method": method,
                "path": path,
                "status": status,
                "agent": agent,
                "started": started,
                "ended": ended,
            }
        )

    def as_json(self, mailbox: str | None = None) -> dict[str, Any]:
        """The ``GET /_emulator/requests`` body (one mailbox's, or all)."""
        rows = [e for e in self.entries if mailbox is None or e["mailbox"] == mailbox]
        return {"value": rows}

    def reset(self) -> None:
        """Forget every request."""
        self.entries.clear()
