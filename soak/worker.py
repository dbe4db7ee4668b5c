"""``dynasync run`` as a child process the soak kills with SIGKILL and starts again, sampling
its resident memory."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.cli.run import READY_LINE


@dataclass(frozen=True)
class WorkerConfig:
    """What the worker is started with (secrets go through the environment, never argv)."""

    bootstrap: str
    topic_prefix: str
    app_id: str
    partitions: int
    replication_factor: int
    graph_url: str
    dataverse_url: str
    token: str
    data_dir: Path
    log_path: Path
    poll_s: float = 1.0
    poll_max_s: float = 10.0


@dataclass
class Worker:
    """One ``python -m pipeline.cli run`` at a time; every life appends to one log."""

    config: WorkerConfig
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    kills: int = 0
    start_seconds: list[float] = field(default_factory=list)

    def _env(self) -> dict[str, str]:
        c = self.config
        return {
            **os.environ,
            "DYNASYNC_APP_ID": c.app_id,
            "DYNASYNC_KAFKA__TOPIC_PREFIX": c.topic_prefix,
            "DYNASYNC_KAFKA__PARTITIONS": str(c.partitions),
            "DYNASYNC_KAFKA__REPLICATION_FACTOR": str(c.replication_factor),
            "DYNASYNC_KAFKA__SESSION_TIMEOUT_S": "6",
            "DYNASYNC_DATA_DIR": str(c.data_dir),
            "DYNASYNC_DATAVERSE__BASE_URL": c.dataverse_url,
            "DYNASYNC_GRAPH__STATIC_TOKEN": c.token,
            "DYNASYNC_DATAVERSE__STATIC_TOKEN": c.token,
            "DYNASYNC_WEB__PORT": "0",  # the status page on any free port
        }

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, ready_within: float = 180.0) -> None:
        """Start a life and wait for its ready line (RuntimeError if it exits or is late)."""
        if self.alive:
            raise RuntimeError("the worker is already running")
        c = self.config
        offset = c.log_path.stat().st_size if c.log_path.exists() else 0
        began = time.monotonic()
        with c.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "pipeline.cli",
                "run",
                *("--bootstrap", c.bootstrap, "--graph-url", c.graph_url),
                *("--crm-poll", str(c.poll_s), "--crm-poll-max", str(c.poll_max_s)),
                *("--outlook-poll", str(c.poll_s), "--outlook-poll-max", str(c.poll_max_s)),
                env=self._env(),
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.starts += 1
        while True:
            with c.log_path.open("rb") as log:
                log.seek(offset)
                if READY_LINE.encode() in log.read():
                    break
            if self.proc.returncode is not None:
                raise RuntimeError(f"the worker exited ({self.proc.returncode}) before ready")
            if time.monotonic() - began > ready_within:
                raise RuntimeError(f"the worker was not ready within {ready_within:.0f}s")
            await asyncio.sleep(0.2)
        self.start_seconds.append(time.monotonic() - began)

    async def kill(self) -> None:
        """SIGKILL the worker's process group: no shutdown code runs."""
        if self.proc is None or self.proc.returncode is not None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()
        self.kills += 1

    async def stop(self, within: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it is still there after ``within`` seconds."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()

    def rss_kib(self) -> int | None:
        """The live worker's resident set (KiB), or None."""
        if self.proc is None or self.proc.returncode is not None:
            return None
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return None
