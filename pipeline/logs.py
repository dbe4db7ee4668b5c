"""Logging of long-running Dynasync processes: the setup (one line per event an operator
cares about, not per HTTP request) and a summary of a failure that repeats."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal, TextIO

import orjson

#: Loggers that log every request at INFO (httpx: one line per Graph/Dataverse call, the
#: aiohttp access log: one per webhook POST, aiokafka: one per config reload's assign);
#: unless at DEBUG they only say WARNING and worse.
CHATTY_LOGGERS = (
    "httpx",
    "httpcore",
    "aiohttp.access",
    "azure.core.pipeline.policies.http_logging_policy",
    "aiokafka.consumer.subscription_state",
)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ms), ``level``, ``logger``, ``msg`` and, with
    an exception, ``exc`` (its traceback as text)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(
    level: str, *, stream: TextIO | None = None, fmt: Literal["text", "json"] = "text"
) -> None:
    """Set up the root logger at ``level`` (DEBUG, INFO, WARNING or ERROR), as text lines or,
    with ``fmt="json"``, JSON lines (:class:`JsonFormatter`). Unless it is DEBUG, the
    per-request loggers of :data:`CHATTY_LOGGERS` are raised to WARNING."""
    level = level.upper()
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=stream)
    root = logging.getLogger()
    root.setLevel(level)
    if fmt == "json":
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
    quiet = logging.NOTSET if level == "DEBUG" else logging.WARNING
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(quiet)


def _describe(exc: BaseException) -> str:
    name, text = type(exc).__name__, str(exc).strip()
    if text.startswith(name):  # aiokafka's errors name themselves
        return text
    return f"{name}: {text}" if text else name


class RepeatedFailure:
    """Log a failure that repeats (a reload every few seconds) as a summary, not a line per
    attempt: the first failure is one WARNING; while it keeps failing, one WARNING per
    ``every_s`` seconds says for how long and how many attempts, with the last error; the
    first success after failures is one INFO line."""

    def __init__(
        self,
        what: str,
        logger: logging.Logger,
        *,
        every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._what = what
        self._log = logger
        self._every_s = every_s
        self._clock = clock
        self._since: float | None = None
        self._attempts = 0
        self._last_summary = 0.0

    @property
    def failing(self) -> bool:
        """True between a failure and the next success."""
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        """Count one failed attempt."""
        now = self._clock()
        self._attempts += 1
        if self._since is None:
            self._since = self._last_summary = now
            self._log.warning("%s failed: %s (retrying)", self._what, _describe(exc))
            return
        if now - self._last_summary >= self._every_s:
            self._last_summary = now
            self._log.warning(
                "%s failing for %.0f s (%d attempts): %s",
                self._what,
                now - self._since,
                self._attempts,
                _describe(exc),
            )

    def succeeded(self) -> None:
        """Count one successful attempt; logs the recovery if it had been failing."""
        if self._since is None:
            return
        self._log.info(
            "%s recovered after %.0f s (%d failed attempts)",
            self._what,
            self._clock() - self._since,
            self._attempts,
        )
        self._since = None
        self._attempts = 0
