"""The worker app: the stages of one process, started and stopped together.

There is no module-level app: every process builds its own with :func:`build_app`. A stage
registers what it runs (a stream processor, the writers) with :meth:`App.run`; each runs in its
own task while the app runs. A refused send ends the process at once, like a crash
(:func:`exit_process`): what was not committed is read again by whoever owns the partition
next. Any other failure *crashes* the app: :attr:`App.crashed` says so and the runner exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

from pipeline.settings import Settings

log = logging.getLogger(__name__)

#: Exit status of a worker that stopped because the broker refused a record.
EXIT_SEND_FAILED = 70


class SendFailedError(RuntimeError):
    """A record a done record caused was refused by the broker: nothing after it may commit."""


async def exit_process(exc: BaseException) -> None:
    """End the worker at once, like a crash: what is uncommitted is read again on restart."""
    log.critical(
        "a record was refused by the broker (%s); exiting to restart from the last commit", exc
    )
    logging.shutdown()
    os._exit(EXIT_SEND_FAILED)


@dataclass(frozen=True, slots=True)
class WindowSize:
    """How many records a stage takes in one batch (and holds open per partition)."""

    events: int = 1000

    def __post_init__(self) -> None:
        if self.events < 1:
            raise ValueError(f"a window needs events >= 1, got {self}")


class Runnable(Protocol):
    """A processor or writer: ``async with`` starts and stops it; :meth:`wait` returns only
    when it fails (it raises)."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def wait(self) -> None: ...


#: A stage registers what it runs on an app.
Stage = Callable[["App", Settings], None]


class StageMeter(Protocol):
    """What the stages report as they work (the worker's metrics implement it)."""

    def write_done(self, target: str, seconds: float) -> None:
        """A write to ``target`` (crm / outlook) completed ``seconds`` after the change that
        caused it was published on its ``changes.*`` topic."""
        ...


class App:
    """The stages of one worker (see the module docstring). ``start()``/``stop()`` or
    ``async with``."""

    def __init__(self, settings: Settings, meter: StageMeter | None = None) -> None:
        self.settings = settings
        self.meter = meter
        """Where the stages report what they do (None: nowhere)."""
        self._parts: list[tuple[str, Callable[[], Runnable]]] = []
        self._running: dict[str, object] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._started: list[asyncio.Event] = []
        self.crash_reason: BaseException | None = None

    @property
    def crashed(self) -> bool:
        """Whether a stage failed."""
        return self.crash_reason is not None

    def running(self) -> dict[str, object]:
        """What each stage runs now (a processor, a writer), by name."""
        return dict(self._running)

    def run(self, name: str, make: Callable[[], Runnable]) -> None:
        """Run what ``make`` builds while the app runs."""
        if self._tasks:
            raise RuntimeError("register stages before the app starts")
        self._parts.append((name, make))

    async def start(self) -> None:
        """Start every stage and wait until each has joined its group (or failed)."""
        for name, make in self._parts:
            started = asyncio.Event()
            self._started.append(started)
            self._tasks.append(asyncio.create_task(self._keep(name, make, started), name=name))
        for started in self._started:
            await started.wait()

    async def _keep(self, name: str, make: Callable[[], Runnable], started: asyncio.Event) -> None:
        try:
            async with make() as running:
                self._running[name] = running
                started.set()
                await running.wait()
        except asyncio.CancelledError:
            raise
        except SendFailedError as exc:
            await exit_process(exc)
        except Exception as exc:
            log.exception("%s failed", name)
            self.crash(exc)
        finally:
            self._running.pop(name, None)
            started.set()

    def crash(self, exc: BaseException) -> None:
        """Record that a stage failed (the first failure is kept)."""
        if self.crash_reason is None:
            self.crash_reason = exc

    async def stop(self) -> None:
        """Stop every stage (each commits what it has done)."""
        tasks, self._tasks, self._started = self._tasks, [], []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def build_app(
    settings: Settings, stages: Iterable[Stage] = (), *, meter: StageMeter | None = None
) -> App:
    """An app for ``settings`` with ``stages`` registered on it, reporting to ``meter``."""
    app = App(settings, meter)
    for stage in stages:
        stage(app, settings)
    return app
