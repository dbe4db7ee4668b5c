"""Child processes of the end-to-end benchmark: the two emulators and the workers, each in its
own session with its own log, and what CPU each has used."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """(In the child, before exec) ask Linux for SIGTERM when the benchmark dies, however it
    dies, so no emulator or worker outlives it; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    """A TCP port of 127.0.0.1 nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (None where /proc is missing)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)


def own_cpu_seconds() -> float:
    """CPU seconds of this process (the benchmark's driver)."""
    return time.process_time()


class ChildProcess:
    """``python -m <module> <args>`` with ``env`` added, stdout and stderr to ``log_path``."""

    def __init__(
        self,
        name: str,
        module: str,
        args: list[str],
        env: dict[str, str],
        log_path: Path,
        cwd: Path,
    ) -> None:
        self.name = name
        self.cwd = cwd
        self.argv = [sys.executable, "-m", module, *args]
        self.env = env
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_bytes()[-chars:].decode(errors="replace")
        except OSError:
            return ""

    def cpu(self) -> float | None:
        return None if self.pid is None else cpu_seconds(self.pid)

    async def start(self, ready: Callable[[], Awaitable[bool]], within_s: float) -> None:
        """Start it and wait until ``ready()``; RuntimeError with its log if it exits or
        does not get ready in time."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + within_s
        while not await ready():
            if not self.running:
                raise RuntimeError(
                    f"{self.name} exited during start ({self.proc.returncode}): {self.log_tail()}"
                )
            if time.monotonic() > deadline:
                await self.stop()
                raise RuntimeError(
                    f"{self.name} not ready within {within_s:.0f} s: {self.log_tail()}"
                )
            await asyncio.sleep(0.2)

    async def stop(self, within_s: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL to its session after ``within_s``; its exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), within_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        return proc.returncode


def log_has(path: Path, text: str) -> Callable[[], Awaitable[bool]]:
    """A readiness probe: ``text`` is in the log at ``path``."""

    def holds() -> bool:
        try:
            return text in path.read_text(errors="replace")
        except OSError:
            return False

    async def probe() -> bool:
        return holds()

    return probe


def port_answers(port: int) -> Callable[[], Awaitable[bool]]:
    """A readiness probe: something accepts TCP connections on 127.0.0.1:``port``."""

    async def probe() -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    return probe
