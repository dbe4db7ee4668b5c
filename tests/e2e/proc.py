"""``dynasync run`` as a child process over a :class:`tests.e2e.world.World`: start it, wait
until it is ready, stop it with SIGTERM or kill it with SIGKILL (no clean-up at all)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from pipeline.cli.run import READY_LINE
from tests.e2e.world import TOKEN, World


class PipelineProcess:
    """One ``python -m pipeline.cli run`` over ``world``; its log goes to ``log_path``.

    Each :meth:`start` appends to the same log, so a restarted process continues it.
    """

    def __init__(
        self,
        world: World,
        log_path: Path,
        *,
        poll_s: float = 0.5,
        config_refresh_s: float = 2.0,
    ) -> None:
        self.world = world
        self.log_path = log_path
        self.poll_s = poll_s
        self.config_refresh_s = config_refresh_s
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.kills = 0

    def _env(self) -> dict[str, str]:
        s = self.world.settings
        return {
            **os.environ,
            "DYNASYNC_APP_ID": s.app_id,
            "DYNASYNC_KAFKA__TOPIC_PREFIX": s.kafka.topic_prefix,
            "DYNASYNC_KAFKA__PARTITIONS": str(s.kafka.partitions),
            "DYNASYNC_KAFKA__SESSION_TIMEOUT_S": str(s.kafka.session_timeout_s),
            "DYNASYNC_DATA_DIR": str(s.data_dir),
            # secrets through the environment, never argv (ps shows argv)
            "DYNASYNC_GRAPH__STATIC_TOKEN": TOKEN,
            "DYNASYNC_DATAVERSE__STATIC_TOKEN": TOKEN,
        }

    async def start(self, ready_within: float = 90.0) -> None:
        """Start the process and wait for its ready line."""
        assert self.proc is None or self.proc.returncode is not None, "already running"
        s = self.world.settings
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "pipeline.cli",
                "run",
                "--bootstrap",
                s.kafka.bootstrap,
                "--graph-url",
                s.graph.base_url,
                # steady polls: these tests time recoveries, not idle backoff
                *("--crm-poll", str(self.poll_s), "--crm-poll-max", str(self.poll_s)),
                *("--outlook-poll", str(self.poll_s), "--outlook-poll-max", str(self.poll_s)),
                "--config-refresh",
                str(self.config_refresh_s),
                env=self._env(),
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.starts += 1
        await self._wait_for(READY_LINE, offset, ready_within)

    async def _wait_for(self, text: str, offset: int, within: float) -> None:
        deadline = time.monotonic() + within
        while True:
            tail = self.log_path.read_bytes()[offset:].decode(errors="replace")
            if text in tail:
                return
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise AssertionError(f"pipeline exited ({self.proc.returncode}): {tail[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged within {within:.0f}s: {tail[-3000:]}")
            await asyncio.sleep(0.1)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def kill(self) -> None:
        """SIGKILL the process (and anything it started): no shutdown code runs."""
        if self.proc is None or self.proc.returncode is not None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()
        self.kills += 1

    async def stop(self, within: float = 30.0) -> int:
        """SIGTERM and wait for a clean exit; its exit code."""
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc and self.proc.returncode is not None else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            await self.kill()
            raise AssertionError(f"pipeline did not stop within {within:.0f}s") from None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.stop()
        else:
            await self.kill()
