"""One worker's memory with many registered mailboxes: ``mailboxes`` registered and enabled
on the config topic before the worker starts, ``active`` of them with CRM contacts to sync (the
rest idle). The worker's VmRSS is sampled from /proc while it starts, reads every mailbox,
applies the contacts and then settles; VmHWM is its peak."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.e2e.progress import OutcomeTail
from bench.e2e.scenarios import Where, _make_items, _sleep_watching
from bench.e2e.stack import E2EStack, StackOptions
from pipeline.topics import OUTCOMES, topic_name

#: The stated target: one worker's resident memory with 10,000 registered mailboxes.
RSS_TARGET_MB = 512.0


def memory_mb(pid: int) -> tuple[float, float] | None:
    """(VmRSS, VmHWM) of process ``pid`` in MB (None once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024  # kB
    if len(found) != 2:
        return None
    return found["VmRSS"], found["VmHWM"]


class _Sampler:
    """VmRSS of the stack's first worker every ``every_s``, from the moment it exists."""

    def __init__(self, stack: E2EStack, every_s: float = 0.5) -> None:
        self.stack = stack
        self.every_s = every_s
        self.samples: list[tuple[float, float]] = []
        self.hwm: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._began = time.perf_counter()

    def now(self) -> float | None:
        pid = self.stack.workers[0].pid if self.stack.workers else None
        read = None if pid is None else memory_mb(pid)
        if read is None:
            return None
        self.hwm = read[1]
        return read[0]

    async def _run(self) -> None:
        while True:
            rss = self.now()
            if rss is not None:
                self.samples.append((round(time.perf_counter() - self._began, 1), round(rss, 1)))
            await asyncio.sleep(self.every_s)

    def start(self) -> None:
        self._began = time.perf_counter()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def _all_read(stack: E2EStack, mailbox_ids: set[str], timeout_s: float) -> float | None:
    """Seconds until the Graph emulator has served a request for every one of
    ``mailbox_ids`` (None on timeout or a worker failure)."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout_s:
        if stack.worker_failure():
            return None
        resp = await stack.http.get(f"{stack.graph}/_emulator/stats")
        by_mailbox = resp.json()["by_mailbox"]
        if all(int(by_mailbox.get(m, 0)) > 0 for m in mailbox_ids):
            return time.perf_counter() - began
        await asyncio.sleep(1.0)
    return None


async def rss_scenario(
    where: Where,
    mailboxes: int,
    active: int,
    items: int,
    settle_s: float,
    *,
    timeout_s: float = 900.0,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The ``rss`` scenario's JSON: memory at each step, how long each step took."""
    name = f"rss-{mailboxes}a{active}"
    options = StackOptions(
        where.bootstrap,
        name,
        where.log_dir,
        workers=1,
        worker_args=where.worker_args,
        webhooks=where.webhooks,
        keep_topics=where.keep_topics,
        start_timeout_s=timeout_s,
        start_workers=False,
    )
    result: dict[str, Any] = {
        "scenario": name,
        "mailboxes": mailboxes,
        "active": active,
        "items_per_active": items,
        "target_mb": RSS_TARGET_MB,
    }
    steps: dict[str, float | None] = {}
    rss: dict[str, float | None] = {}
    async with E2EStack(options) as stack:
        result["logs"] = str(stack.log_dir)
        t = time.perf_counter()
        say(f"  {name}: creating {mailboxes} users on both sides")
        users = await stack.add_users(mailboxes)
        steps["setup_users_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        say(f"  {name}: {items} CRM contacts for each of {active} mailboxes")
        await _make_items(stack, "crm_to_outlook", users[:active], items)
        steps["setup_contacts_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        say(f"  {name}: registering {mailboxes} mailboxes on the config topic")
        await stack.enable(users)
        steps["setup_register_s"] = round(time.perf_counter() - t, 1)
        tail = OutcomeTail(where.bootstrap, topic_name(OUTCOMES, stack.kafka), "outlook")
        await tail.start()
        sampler = _Sampler(stack)
        try:
            say(f"  {name}: starting the worker")
            sampler.start()
            began = time.perf_counter()
            ready = await stack.start_workers()
            steps["ready_s"] = round(ready, 1)
            rss["at_ready"] = sampler.now()
            read = await _all_read(stack, {u.mailbox_id for u in users}, timeout_s)
            steps["all_mailboxes_read_s"] = (
                None if read is None else round(time.perf_counter() - began, 1)
            )
            rss["all_read"] = sampler.now()
            say(
                f"  {name}: ready {ready:.1f} s, every mailbox read at "
                f"{steps['all_mailboxes_read_s']} s"
            )
            total = active * items
            done = await tail.wait_for(total, timeout_s, stack.worker_failure)
            steps["all_applied_s"] = round(time.perf_counter() - began, 1) if done else None
            rss["all_applied"] = sampler.now()
            result["applied"] = len(tail.progress.applied)
            say(f"  {name}: {len(tail.progress.applied)}/{total} applied; settling {settle_s:g} s")
            await _sleep_watching(stack, settle_s)
            rss["settled"] = sampler.now()
            rss["peak_vmhwm"] = sampler.hwm
        finally:
            await sampler.stop()
            await tail.stop()
    samples = sampler.samples
    result.update(
        {
            "steps": steps,
            "rss_mb": {k: None if v is None else round(v, 1) for k, v in rss.items()},
            "samples": samples[:: max(1, len(samples) // 200)],
        }
    )
    peak = rss.get("peak_vmhwm")
    problems = []
    if steps.get("all_mailboxes_read_s") is None:
        problems.append(f"not every mailbox read within {timeout_s:.0f} s")
    if steps.get("all_applied_s") is None:
        problems.append(f"{result.get('applied')} of {active * items} contacts applied")
    result["met"] = None if peak is None else peak <= RSS_TARGET_MB
    result["ok"] = not problems
    result["error"] = "; ".join(problems) or None
    return result
