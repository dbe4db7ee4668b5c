"""Reading again what Faust fetched but never delivered.

Faust's fetch loop hands each fetched record to the agent's stream and then moves its read
position on. If the flow is suspended (a rebalance, a recovery) while a record is being handed
over, that hand-over is cancelled, but the position still moves on: the record is never
delivered in this process and, never acked, it holds its partition's commits back until the
worker restarts. The tests in ``tests/chaos/`` show this after a kill -9 and restart.

:class:`StallWatch` notices it. An agent reports each event it takes (:meth:`StallWatch.took`)
and finishes (:meth:`StallWatch.done`). When the agent has been idle for ``after_s`` while a
partition it reads has records beyond the last one it took, the watch seeks that partition
back to the record after it, and Faust delivers the rest again. Records delivered twice are
harmless: every stage drops what it has seen, and every writer is idempotent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Consumer(Protocol):
    """What the watch needs of Faust's consumer."""

    def assignment(self) -> Iterable[Any]: ...

    def highwater(self, tp: Any) -> int | None: ...

    async def seek(self, partition: Any, offset: int) -> None: ...


class StallWatch:
    """Per agent: the last offset taken per partition, and whether the agent is busy."""

    def __init__(
        self,
        consumer: Callable[[], Consumer],
        *,
        flowing: Callable[[], bool],
        after_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if after_s <= 0:
            raise ValueError(f"after_s must be > 0, got {after_s!r}")
        self._consumer = consumer
        self._flowing = flowing
        self._after = after_s
        self._clock = clock
        self._last: dict[Any, int] = {}
        self._busy = False
        self._since = clock()
        self._next_check = 0.0
        self.seeks = 0

    def took(self, tp: Any, offset: int) -> None:
        """The agent took the record at ``offset`` of ``tp``."""
        self._last[tp] = max(offset, self._last.get(tp, -1))
        self._busy = True
        self._since = self._clock()

    def done(self) -> None:
        """The agent finished the record it took and waits for the next."""
        self._busy = False
        self._since = self._clock()

    async def check(self) -> int:
        """Seek back every partition whose next records were not delivered; how many."""
        now = self._clock()
        if self._busy or now - self._since < self._after or now < self._next_check:
            return 0
        self._next_check = now + 1.0
        if not self._flowing():  # a rebalance or recovery moves positions itself
            return 0
        consumer = self._consumer()
        assigned = set(consumer.assignment())
        seeks = 0
        for tp, last in list(self._last.items()):
            if tp not in assigned:
                del self._last[tp]
                continue
            end = consumer.highwater(tp)
            if end is None or end <= last + 1:
                continue
            log.warning(
                "%s: records %d-%d were fetched but not delivered; reading them again",
                tp,
                last + 1,
                end - 1,
            )
            await consumer.seek(tp, last + 1)
            seeks += 1
        if seeks:
            self.seeks += seeks
            self._since = self._clock()
        return seeks
