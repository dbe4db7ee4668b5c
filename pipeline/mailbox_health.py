"""What a worker knows of the mailboxes it owns, as :class:`schemas.models.MailboxHealth`
records: the state of each direction and kind, the last success of each stream, error counts,
the last error, open conflicts and recent alerts.

:class:`HealthBook` is fed by the runtime (each Outlook reader pass and its errors, each write
result of both writers) and builds a mailbox's record on demand; :class:`HealthPublisher`
publishes the records of the mailboxes read here on the compacted ``mailbox.status`` topic when
one changes (at most every ``min_interval_s`` per mailbox) and at least every ``heartbeat_s``,
so ``dynasync mailbox status`` and the status pages read the same thing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Protocol

from schemas.models import Mailbox, MailboxHealth, StreamSync, SyncState, WriteCommand, WriteOutcome
from schemas.types import KINDS, Kind, Side

log = logging.getLogger(__name__)

#: Worst last: a direction is as bad as the worst of what it is made of.
_RANK: Final[dict[SyncState, int]] = {
    "idle": 0,
    "ok": 1,
    "retrying": 2,
    "paused": 3,
    "failing": 4,
    "disabled": 5,
}
#: Outcomes that are an error of the write (the engine records them; they are counted here).
_FAILED_OUTCOMES: Final = frozenset({"failed", "forbidden"})
MAX_ALERTS: Final = 20
MAX_ERROR: Final = 500


def worst(states: Iterable[SyncState]) -> SyncState:
    """The worst of ``states`` (``idle`` when there are none)."""
    return max(states, key=_RANK.__getitem__, default="idle")


def stamp(epoch_s: float) -> str:
    """An RFC 3339 UTC time, to the second."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ReaderView(Protocol):
    """What the book reads of a mailbox's Outlook reader (:class:`MailboxRunner`)."""

    @property
    def state(self) -> str: ...

    @property
    def failed_tries(self) -> int: ...


@dataclass(slots=True)
class _Mailbox:
    streams: dict[tuple[Side, Kind, str], float | None] = field(default_factory=dict)
    """Last success per (side, kind, stream): Outlook reads, and each side's writes."""
    writes: dict[tuple[Side, Kind], SyncState] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    last_error_at: float | None = None
    failing_since: float | None = None


class HealthBook:
    """The facts of each mailbox this worker has seen (see the module docstring)."""

    def __init__(self, worker: str, *, clock: Callable[[], float] = time.time) -> None:
        self.worker = worker
        self._clock = clock
        self._boxes: dict[str, _Mailbox] = {}

    def _box(self, mailbox_id: str) -> _Mailbox:
        return self._boxes.setdefault(mailbox_id, _Mailbox())

    def forget(self, mailbox_id: str) -> None:
        """The mailbox is no longer this worker's: drop what was counted."""
        self._boxes.pop(mailbox_id, None)

    def read(self, mailbox_id: str, streams: Sequence[tuple[Kind, str]]) -> None:
        """An Outlook reader pass over ``streams`` (kind, stream id) succeeded."""
        box, now = self._box(mailbox_id), self._clock()
        for kind, stream in streams:
            box.streams[("outlook", kind, stream)] = now

    def error(self, mailbox_id: str, where: str, error: str) -> None:
        """Count an error of ``where`` (``reader``, ``crm_writes``, ...) and keep it as the last."""
        box = self._box(mailbox_id)
        box.errors[where] = box.errors.get(where, 0) + 1
        box.last_error, box.last_error_at = error[:MAX_ERROR], self._clock()

    def failing(self, mailbox_id: str, failing: bool) -> None:
        """The mailbox became failing (a permanent refusal), or recovered."""
        box = self._box(mailbox_id)
        if not failing:
            box.failing_since = None
        elif box.failing_since is None:
            box.failing_since = self._clock()

    def wrote(
        self, side: Side, command: WriteCommand, result: WriteOutcome | BaseException
    ) -> None:
        """A writer's result for ``command`` on ``side``: an outcome, or the error it parked."""
        box = self._box(command.mailbox_id)
        key = (side, command.kind)
        if isinstance(result, BaseException):
            box.writes[key] = "retrying"
            self.error(command.mailbox_id, f"{side}_writes", f"{type(result).__name__}: {result}")
            return
        if result.status in _FAILED_OUTCOMES:
            text = result.error_message or result.error_code or result.status
            self.error(command.mailbox_id, f"{side}_writes", f"{result.status}: {text}")
            return
        box.writes[key] = "ok"
        box.streams[(side, command.kind, f"{side} writes")] = self._clock()

    def record(
        self,
        mailbox: Mailbox,
        reader: ReaderView | None,
        *,
        open_conflicts: int = 0,
        alerts: Sequence[str] = (),
    ) -> MailboxHealth:
        """The mailbox's record now."""
        box = self._boxes.get(mailbox.mailbox_id) or _Mailbox()
        reading = _reader_state(reader)
        if mailbox.status in ("disabled", "paused"):
            override: SyncState | None = mailbox.status
        else:
            override = None
        kinds: dict[str, SyncState] = {}
        for kind in KINDS:
            parts = [reading, box.writes.get(("crm", kind), "idle")]
            parts.append(box.writes.get(("outlook", kind), "idle"))
            kinds[kind] = override or worst(parts)
        crm_writes = [s for (side, _), s in box.writes.items() if side == "crm"]
        outlook_writes = [s for (side, _), s in box.writes.items() if side == "outlook"]
        refused: SyncState = "failing" if reading == "failing" else "idle"  # the whole mailbox
        streams = [
            StreamSync(side, kind, stream, None if at is None else stamp(at))
            for (side, kind, stream), at in sorted(box.streams.items())
        ][:64]
        since = box.failing_since
        return MailboxHealth(
            mailbox_id=mailbox.mailbox_id,
            worker=self.worker,
            updated_at=stamp(self._clock()),
            incoming=override or worst([reading, *crm_writes]),
            outgoing=override or worst([refused, *outlook_writes]),
            kinds=kinds,
            streams=streams,
            errors=dict(sorted(box.errors.items())),
            last_error=box.last_error,
            last_error_at=None if box.last_error_at is None else stamp(box.last_error_at),
            failing_since=mailbox.failing_since or (None if since is None else stamp(since)),
            failed_tries=reader.failed_tries if reader is not None else 0,
            open_conflicts=open_conflicts,
            alerts=list(alerts)[-MAX_ALERTS:],
        )


_READER: Final[dict[str, SyncState]] = {
    "ok": "ok",
    "retrying": "retrying",
    "failing": "failing",
    "disabled": "disabled",
}


def _reader_state(reader: ReaderView | None) -> SyncState:
    return "idle" if reader is None else _READER.get(reader.state, "idle")


def same(a: MailboxHealth, b: MailboxHealth) -> bool:
    """Whether two records say the same thing (their times of making aside)."""
    return dataclasses.replace(a, updated_at=b.updated_at) == b


Send = Callable[[str, MailboxHealth], Awaitable[None]]
"""Publish one mailbox's record (key: the mailbox id)."""


class HealthPublisher:
    """Publishes ``records()`` on change, at most every ``min_interval_s`` per mailbox, and
    each at least every ``heartbeat_s``; ``run()`` until cancelled."""

    def __init__(
        self,
        records: Callable[[], Iterable[MailboxHealth]],
        send: Send,
        *,
        every_s: float = 1.0,
        min_interval_s: float = 2.0,
        heartbeat_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < every_s <= min_interval_s <= heartbeat_s:
            raise ValueError("need 0 < every_s <= min_interval_s <= heartbeat_s")
        self._records = records
        self._send = send
        self._every_s = every_s
        self._min_s = min_interval_s
        self._heartbeat_s = heartbeat_s
        self._clock = clock
        self._last: dict[str, tuple[float, MailboxHealth]] = {}
        self.sent = 0

    async def tick(self) -> int:
        """Publish what is due now; how many records were sent."""
        now, sent = self._clock(), 0
        seen: set[str] = set()
        for record in self._records():
            seen.add(record.mailbox_id)
            last = self._last.get(record.mailbox_id)
            if last is not None:
                at, before = last
                changed = not same(record, before)
                if now - at < (self._min_s if changed else self._heartbeat_s):
                    continue
            await self._send(record.mailbox_id, record)
            self._last[record.mailbox_id] = (now, record)
            sent += 1
        for gone in set(self._last) - seen:
            del self._last[gone]
        self.sent += sent
        return sent

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker away: try again at the next tick
                log.warning("mailbox status not published: %s", exc)
            await asyncio.sleep(self._every_s)
