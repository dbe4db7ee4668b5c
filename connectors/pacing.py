"""How long a polling reader waits before its next pass.

A pass that found changes brings the wait back to the floor; every pass that found none
doubles it, less a little jitter, up to the ceiling. At the ceiling the wait is exact, so an
idle stream costs at most one pass per ceiling; below it the jitter spreads readers that
started together. :class:`Pacer` is pure (the random source is injected; it neither sleeps
nor reads a clock); :func:`idle` is the interruptible wait the readers use with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import Callable


class Pacer:
    """The adaptive wait of one polling reader: ``floor_s`` while changes flow, growing by
    ``factor`` per idle pass to ``ceiling_s`` (``None``: no growth, a fixed ``floor_s``)."""

    def __init__(
        self,
        floor_s: float,
        ceiling_s: float | None = None,
        *,
        factor: float = 2.0,
        jitter: float = 0.1,
        rand: Callable[[], float] = random.random,
    ) -> None:
        ceiling = floor_s if ceiling_s is None else ceiling_s
        if not (math.isfinite(floor_s) and floor_s > 0):
            raise ValueError(f"floor_s must be a positive number of seconds, got {floor_s!r}")
        if not (math.isfinite(ceiling) and ceiling >= floor_s):
            raise ValueError(f"ceiling_s must be >= floor_s ({floor_s!r}), got {ceiling!r}")
        if not (math.isfinite(factor) and factor > 1):
            raise ValueError(f"factor must be > 1, got {factor!r}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be within [0, 1), got {jitter!r}")
        self.floor_s = floor_s
        self.ceiling_s = ceiling
        self.factor = factor
        self.jitter = jitter
        self._rand = rand
        self._level = floor_s

    @property
    def level_s(self) -> float:
        """The wait the pacer has grown to (before jitter)."""
        return self._level

    def next_wait(self, changed: bool) -> float:
        """The wait after a pass; ``changed``: the pass found (published) something."""
        if changed:
            self._level = self.floor_s
            return self.floor_s
        self._level = min(self.ceiling_s, self._level * self.factor)
        if self._level >= self.ceiling_s:
            return self.ceiling_s
        return max(self.floor_s, self._level * (1 - self.jitter * self._rand()))

    def reset(self) -> None:
        """Back to the floor (something outside the reader saw activity)."""
        self._level = self.floor_s


async def idle(seconds: float, wake: asyncio.Event) -> bool:
    """Wait ``seconds``, or until ``wake`` is set; True if woken (``wake`` is cleared)."""
    if not wake.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=max(seconds, 0.0))
    woken = wake.is_set()
    wake.clear()
    return woken
