"""One soak run: the schedule of chaos, the users, the final checks and the summary."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.dlq import Selection, list_dlq
from soak.checks import (
    disagreements,
    dlq_entries,
    duplicates,
    read_sides,
    rss_figures,
    versions,
)
from soak.edits import Editor
from soak.stack import Stack, cluster, kafka_sh, open_stack
from soak.worker import Worker, WorkerConfig

CLUSTER_BOOTSTRAP = "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
KINDS = ("500", "503", "429", "timeout", "reset")
SIDES = ("graph", "dataverse")


@dataclass(frozen=True)
class Options:
    """How long and how hard (validated by the command line)."""

    minutes: float
    mailboxes: int = 20
    partitions: int = 6
    seed: int = 0
    outage_s: float = 60.0
    kill_min_s: float = 6.0
    kill_max_s: float = 24.0
    ops_per_s: float = 2.0
    contacts_per_mailbox: int = 30
    settle_s: float = 300.0
    max_rss_growth: float = 1.3
    max_log_kib_per_min: float = 256.0
    out: Path = Path(".run/soak/latest.json")


@dataclass(frozen=True)
class Outage:
    """One side failing one way from ``at`` (s into the run) for ``length`` s."""

    side: str
    kind: str
    at: float
    length: float


def schedule(opts: Options, rnd: random.Random) -> tuple[list[Outage], float, float]:
    """The outages (each kind on each side, shuffled, one per slot), and when a broker node
    goes down and for how long."""
    run_s = opts.minutes * 60
    margin = min(60.0, run_s * 0.1)
    slot = (run_s - 2 * margin) / (len(KINDS) * len(SIDES))
    length = min(opts.outage_s, slot * 0.7)
    pairs = [(side, kind) for kind in KINDS for side in SIDES]
    rnd.shuffle(pairs)
    outages = [Outage(s, k, margin + i * slot, length) for i, (s, k) in enumerate(pairs)]
    return outages, run_s * 0.45, min(60.0, run_s * 0.15)


@dataclass
class Journal:
    """What happened when (seconds since the start), printed as it happens."""

    began: float = field(default_factory=time.monotonic)
    events: list[dict[str, Any]] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.began

    def note(self, what: str, **extra: Any) -> None:
        t = round(self.now(), 1)
        self.events.append({"t": t, "what": what, **extra})
        print(f"[{t:7.1f}s] {what}", flush=True)


async def _sleep_until(journal: Journal, t: float) -> None:
    await asyncio.sleep(max(0.0, t - journal.now()))


async def _set_outage(stack: Stack, side: str, kind: str | None) -> None:
    """Start (``kind``) or end (None) an outage of one side."""
    base = stack.graph if side == "graph" else stack.dataverse
    gate = stack.graph_gate if side == "graph" else stack.dataverse_gate
    if kind is None:
        gate.set("open")
        resp = await stack.http.delete(f"{base}/_emulator/faults")
    elif kind in ("timeout", "reset"):
        gate.set("hang" if kind == "timeout" else "reset")
        return
    else:
        body = {"status": int(kind), "rate": 1.0, "retry_after": 5 if kind == "429" else 1}
        resp = await stack.http.post(f"{base}/_emulator/faults", json=body)
    if resp.status_code >= 300:
        raise RuntimeError(f"{side} faults: {resp.status_code} {resp.text}")


async def _outages(stack: Stack, journal: Journal, outages: list[Outage]) -> None:
    for o in outages:
        await _sleep_until(journal, o.at)
        await _set_outage(stack, o.side, o.kind)
        journal.note(f"outage {o.side} {o.kind} for {o.length:.0f}s", side=o.side, kind=o.kind)
        try:
            await asyncio.sleep(o.length)
        finally:
            await _set_outage(stack, o.side, None)
        journal.note(f"outage {o.side} {o.kind} over")


async def _broker(journal: Journal, node: int, at: float, length: float) -> None:
    await _sleep_until(journal, at)
    code, out = await kafka_sh("cluster-node-down", str(node))
    journal.note(f"broker node {node} stopped (exit {code})", node=node)
    try:
        await asyncio.sleep(length)
    finally:
        code, out = await kafka_sh("cluster-up")
        journal.note(f"broker node {node} started again (exit {code})", node=node)
    if code != 0:
        raise RuntimeError(f"kafka.sh cluster-up failed:\n{out[-2000:]}")


async def _start(worker: Worker, journal: Journal) -> None:
    """Start the worker, trying again (and noting it) when a start fails."""
    for attempt in range(1, 6):
        try:
            await worker.start()
            return
        except RuntimeError as exc:
            journal.note(f"worker start {attempt} failed: {exc}", failed_start=True)
            await worker.kill()
            await asyncio.sleep(2)
    raise RuntimeError("the worker did not start five times in a row")


async def _killer(worker: Worker, journal: Journal, opts: Options, rnd: random.Random) -> None:
    end = opts.minutes * 60
    while True:
        pause = rnd.uniform(opts.kill_min_s, opts.kill_max_s)
        if journal.now() + pause >= end:
            return
        await asyncio.sleep(pause)
        await worker.kill()
        await _start(worker, journal)
        if worker.kills % 10 == 0:
            journal.note(f"{worker.kills} kills so far")


async def _sampler(worker: Worker, journal: Journal, out: list[tuple[float, int, int]]) -> None:
    while True:
        kib = worker.rss_kib()
        if kib is not None:
            out.append((journal.now(), worker.starts, kib))
        await asyncio.sleep(2.0)


async def _until_settled(
    probe: Callable[[], Awaitable[list[str]]], within: float
) -> tuple[list[str], float]:
    began = time.monotonic()
    while True:
        problems = await probe()
        took = time.monotonic() - began
        if not problems or took > within:
            return problems, took
        await asyncio.sleep(5)


async def soak(opts: Options) -> dict[str, Any]:
    """Run the soak; its figures and checks."""
    rnd = random.Random(opts.seed)
    run_dir = opts.out.parent / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    outages, broker_at, broker_len = schedule(opts, rnd)
    node = rnd.randint(1, 3)
    journal = Journal()
    async with (
        cluster() as started_cluster,
        open_stack(CLUSTER_BOOTSTRAP, opts.mailboxes, opts.partitions) as stack,
    ):
        journal.note(
            f"seed {opts.seed}; {opts.mailboxes} mailboxes; topics {stack.kafka.topic_prefix}* "
            f"(RF 3) on the cluster{' (started here)' if started_cluster else ''}; "
            f"run dir {run_dir}"
        )
        worker = Worker(
            WorkerConfig(
                bootstrap=CLUSTER_BOOTSTRAP,
                topic_prefix=stack.kafka.topic_prefix,
                app_id=f"dynasync-{stack.kafka.topic_prefix.rstrip('.')}",
                partitions=opts.partitions,
                replication_factor=3,
                graph_url=stack.graph_for_worker,
                dataverse_url=stack.dataverse_for_worker,
                token="soak-token",
                data_dir=run_dir / "data",
                log_path=run_dir / "worker.log",
            )
        )
        editor = Editor(
            stack,
            random.Random(rnd.random()),
            uuid.uuid4().hex[:6],
            opts.ops_per_s,
            opts.contacts_per_mailbox,
        )
        rss: list[tuple[float, int, int]] = []
        try:
            return await _run(
                opts,
                stack,
                worker,
                editor,
                journal,
                rss,
                outages,
                node,
                run_dir,
                (broker_at, broker_len),
                started_cluster,
            )
        finally:
            await worker.kill()


async def _run(
    opts: Options,
    stack: Stack,
    worker: Worker,
    editor: Editor,
    journal: Journal,
    rss: list[tuple[float, int, int]],
    outages: list[Outage],
    node: int,
    run_dir: Path,
    broker: tuple[float, float],
    started_cluster: bool,
) -> dict[str, Any]:
    await _start(worker, journal)
    journal.note(f"worker ready after {worker.start_seconds[-1]:.1f}s; edits and chaos start")
    journal.began = time.monotonic()  # the schedule counts from here
    run_s = opts.minutes * 60
    end = journal.began + run_s
    sampler = asyncio.create_task(_sampler(worker, journal, rss))
    chaos = [
        asyncio.create_task(_killer(worker, journal, opts, random.Random(opts.seed + 1))),
        asyncio.create_task(_outages(stack, journal, outages)),
        asyncio.create_task(_broker(journal, node, *broker)),
        asyncio.create_task(editor.crm_side(end)),
        asyncio.create_task(editor.outlook_side(end)),
    ]
    try:
        await asyncio.gather(*chaos)
    finally:
        for task in chaos:
            task.cancel()
        await asyncio.gather(*chaos, return_exceptions=True)
        for side in ("graph", "dataverse"):
            await _set_outage(stack, side, None)
    journal.note(
        f"edits over: {editor.counts.creates} creates, {editor.counts.crm_edits} CRM edits, "
        f"{editor.counts.outlook_edits} Outlook edits; {worker.kills} kills"
    )
    if not worker.alive:
        await _start(worker, journal)

    async def problems() -> list[str]:
        sides = await read_sides(editor)
        return duplicates(editor, sides) + disagreements(editor, sides)

    left, took = await _until_settled(problems, opts.settle_s)
    journal.note(f"converged after {took:.0f}s" if not left else f"{len(left)} problems left")
    before = versions(await read_sides(editor))
    await asyncio.sleep(15)
    after_sides = await read_sides(editor)
    rewriting = sorted(k for k, v in versions(after_sides).items() if before.get(k) != v)
    dupes = duplicates(editor, after_sides)
    dlq = dlq_entries(await list_dlq(stack.kafka, Selection()))
    sampler.cancel()
    await asyncio.gather(sampler, return_exceptions=True)
    await worker.stop()
    log_path = worker.config.log_path
    log_bytes = log_path.stat().st_size if log_path.exists() else 0
    log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
    minutes = journal.now() / 60
    kib_per_min = log_bytes / 1024 / minutes
    rss_fig = rss_figures(rss, run_s)
    min_kills = math.floor(opts.minutes * 50 / 30)
    failed_starts = sum(1 for e in journal.events if e.get("failed_start"))
    applied = sum(1 for e in journal.events if "kind" in e)
    checks = {
        "no duplicates": not dupes,
        "converged (every final value equal on both sides)": not left,
        "nothing keeps rewriting": not rewriting,
        "nothing retryable in dlq": not any(e["retryable"] for e in dlq),
        f"RSS last/first quarter <= {opts.max_rss_growth}": rss_fig.get("growth", 0)
        <= opts.max_rss_growth,
        f"log <= {opts.max_log_kib_per_min:g} KiB/min": kib_per_min <= opts.max_log_kib_per_min,
        f"kills >= {min_kills}": worker.kills >= min_kills,
        "every outage and the broker stop ran": applied == len(outages)
        and any("broker node" in e["what"] and "again" in e["what"] for e in journal.events),
    }
    result: dict[str, Any] = {
        "ok": all(checks.values()),
        "checks": checks,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()},
        "run_dir": str(run_dir),
        "cluster_started_here": started_cluster,
        "mailboxes": len(stack.users),
        "contacts": len(editor.contacts),
        "edits": asdict(editor.counts),
        "kills": worker.kills,
        "worker_starts": worker.starts,
        "failed_starts": failed_starts,
        "start_seconds": {
            "median": round(sorted(worker.start_seconds)[len(worker.start_seconds) // 2], 1),
            "max": round(max(worker.start_seconds), 1),
        },
        "outages": [asdict(o) for o in outages],
        "broker_node_stopped": node,
        "converged_after_s": round(took, 1),
        "problems": left[:50],
        "duplicates": dupes[:50],
        "rewriting": rewriting[:50],
        "dlq": dlq,
        "rss": rss_fig,
        "log": {
            "bytes": log_bytes,
            "minutes": round(minutes, 1),
            "kib_per_min": round(kib_per_min, 1),
            "error_lines": sum(" ERROR " in ln for ln in log_text.splitlines()),
            "warning_lines": sum(" WARNING " in ln for ln in log_text.splitlines()),
            "tracebacks": log_text.count("Traceback (most recent call last)"),
        },
        "events": journal.events,
    }
    return result


def write(result: dict[str, Any], out: Path) -> None:
    """``out`` and a copy in the run directory."""
    text = json.dumps(result, indent=2, sort_keys=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    with contextlib.suppress(OSError):
        (Path(result["run_dir"]) / "result.json").write_text(text)


def summary(result: dict[str, Any]) -> str:
    """One screen of figures and verdicts."""
    r, rss, log = result, result["rss"], result["log"]
    lines = [
        f"soak {'PASSED' if r['ok'] else 'FAILED'}: {r['options']['minutes']} min, "
        f"{r['mailboxes']} mailboxes, {r['contacts']} contacts (run dir {r['run_dir']})",
        f"  edits: {r['edits']['creates']} creates, {r['edits']['crm_edits']} CRM edits, "
        f"{r['edits']['outlook_edits']} Outlook edits "
        f"({r['edits']['refused_by_outage']} user requests waited out an outage)",
        f"  chaos: {r['kills']} kill -9 ({r['failed_starts']} failed starts; start median "
        f"{r['start_seconds']['median']}s max {r['start_seconds']['max']}s), broker node "
        f"{r['broker_node_stopped']} stopped and started, {len(r['outages'])} outages of "
        f"{r['outages'][0]['length']:.0f}s"
        if r["outages"]
        else "",
        f"  converged {r['converged_after_s']}s after the edits stopped; "
        f"{len(r['problems'])} disagreements, {len(r['duplicates'])} duplicates, "
        f"{len(r['rewriting'])} items still rewriting",
        f"  dlq: {len(r['dlq'])} record(s), {sum(e['retryable'] for e in r['dlq'])} retryable",
        *(f"    {e['reason']} {e['origin']}: {e['error'][:100]}" for e in r["dlq"][:5]),
        f"  RSS MiB: first {rss.get('first_mib')} last {rss.get('last_mib')} max "
        f"{rss.get('max_mib')}; median first quarter {rss.get('first_quarter_median_mib')} "
        f"last quarter {rss.get('last_quarter_median_mib')} ({rss.get('samples')} samples "
        f"over {rss.get('lives')} lives)",
        f"  log: {log['bytes']} bytes in {log['minutes']} min = {log['kib_per_min']} KiB/min "
        f"({log['error_lines']} ERROR, {log['warning_lines']} WARNING, "
        f"{log['tracebacks']} tracebacks)",
        *(f"  [{'ok' if ok else 'FAIL'}] {name}" for name, ok in r["checks"].items()),
        *(f"  problem: {p}" for p in (r["problems"] + r["duplicates"])[:5]),
    ]
    return "\n".join(line for line in lines if line)
