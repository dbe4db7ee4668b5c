"""How far a sync has got, read from the pipeline's ``outcomes`` topic: the writers publish
one outcome per applied write after the other side answered, so counting applied creates tells
when every item has arrived without sending the emulators a single request (polling Graph
while timing would count against the mailboxes and compete with the worker)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from connectors.kafka_clients import KafkaClients


@dataclass
class Progress:
    """Applied creates seen so far, and when."""

    applied: set[tuple[str, str]] = field(default_factory=set)
    per_mailbox: Counter[str] = field(default_factory=Counter)
    mailbox_last_at: dict[str, float] = field(default_factory=dict)
    other: Counter[str] = field(default_factory=Counter)
    """Every other outcome, by ``target:kind:action:status``."""
    seen_at: float | None = None
    """When the last outcome of any kind arrived."""
    first_at: float | None = None
    last_at: float | None = None


class OutcomeTail:
    """Reads ``topic`` from its start and counts applied ``create`` outcomes of ``kind`` on
    ``target`` (``outlook`` or ``crm``), each (mailbox, correlation id) once."""

    def __init__(self, bootstrap: str, topic: str, target: str, kind: str = "contact") -> None:
        self._consumer = KafkaClients(bootstrap).consumer(topic, auto_offset_reset="earliest")
        self.target = target
        self.kind = kind
        self.progress = Progress()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    def _take(self, raw: bytes, now: float) -> None:
        outcome = orjson.loads(raw)
        p = self.progress
        p.seen_at = now
        what = ":".join(str(outcome.get(k)) for k in ("target", "kind", "action", "status"))
        if (
            outcome.get("target") != self.target
            or outcome.get("kind") != self.kind
            or outcome.get("action") != "create"
            or outcome.get("status") != "applied"
        ):
            p.other[what] += 1
            return
        key = (str(outcome.get("mailbox_id")), str(outcome.get("correlation_id")))
        if key in p.applied:
            p.other[f"{what} again"] += 1
            return
        p.applied.add(key)
        p.per_mailbox[key[0]] += 1
        p.mailbox_last_at[key[0]] = now
        if p.first_at is None:
            p.first_at = now
        p.last_at = now

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    if record.value is not None:
                        self._take(record.value, now)

    async def quiet(self, quiet_s: float, within_s: float) -> float:
        """Until no outcome has arrived for ``quiet_s`` (at most ``within_s``): writes still
        on their way, an echo written back among them, land before the sides are checked.
        The seconds waited."""
        started = time.perf_counter()
        while time.perf_counter() - started < within_s:
            last = self.progress.seen_at or started
            if time.perf_counter() - max(last, started) >= quiet_s:
                break
            await asyncio.sleep(0.1)
        return time.perf_counter() - started

    async def wait_for(
        self, count: int, within_s: float, alive: Callable[[], str | None] | None = None
    ) -> bool:
        """True once ``count`` applied creates were seen; False after ``within_s``. ``alive``
        (a callable returning a failure or None) ends the wait early with RuntimeError."""
        deadline = time.monotonic() + within_s
        while len(self.progress.applied) < count:
            if self._task is not None and self._task.done():
                self._task.result()
            failure = alive() if alive is not None else None
            if failure:
                raise RuntimeError(failure)
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True
