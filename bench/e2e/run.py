"""The end-to-end section: every scenario of ``params`` for each worker count, one after the
other, each on its own emulators, worker(s) and topics; then the section's JSON document."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.args import BenchParams
from bench.e2e.report import E2E_TARGETS, failures, judge
from bench.e2e.rss import rss_scenario
from bench.e2e.scenarios import Direction, Where, idle_scenario, sync_scenario

NOTES = {
    "setup": "per scenario: python -m emulators.graph and python -m emulators.dataverse with "
    "--throttle-scale 1 (Graph: 10,000 requests / 10 min and 4 concurrent per app and "
    "mailbox, each request inside a $batch counted; Dataverse: 6,000 requests / 5 min and 52 "
    "concurrent per user, a $batch counted once) and `python -m pipeline.cli run --bootstrap "
    "... --graph-url ...` (as make up runs it) as separate processes; fresh topics on the "
    "real broker; webhooks on as make up runs them (the worker's receiver on a free port is "
    "the notification URL; --e2e-polling polls every stream instead); mailboxes registered "
    "and enabled on the config topic (ConfigStore)",
    "items_per_s": "contacts applied on the other side per second, from the worker's first "
    "request for the new mailboxes (`pickup_s` after enabling them: its config reload) to the "
    "last applied create seen on the outcomes topic; `items_per_s_from_enable` counts the "
    "pickup wait too",
    "requests": "emulator counters (GET /_emulator/stats) over the same span, read before "
    "enabling and after the last item; Graph counts each request inside a $batch, Dataverse "
    "counts a $batch once (as their throttles do)",
    "check": "after timing, the target side is listed: each contact exactly once (by its "
    "unique last name), in its own mailbox / owned by its mailbox's CRM user",
    "workers": "N > 1: N `python -m pipeline.cli run` processes with "
    "DYNASYNC_RECEIVER__ENABLED=false and one `python -m pipeline.cli receiver` on the "
    "notification URL's port, the same app id and topic prefix (6 partitions), as make up "
    "WORKERS=N runs them; cpu_s.workers_total sums the workers",
    "rss": "one worker; the mailboxes registered and enabled on the config topic and the "
    "active ones' CRM contacts created before it starts; VmRSS from /proc/<pid>/status at "
    "ready, when the Graph emulator has served a request for every mailbox, when every "
    "contact is applied and after the settle period; peak_vmhwm is VmHWM (the kernel's peak)",
    "idle": "mailboxes enabled with nothing changing; after the settle period, requests over "
    "the window per mailbox (Graph counter) and per table (a counting proxy in front of the "
    "Dataverse emulator); last_poll_gap_s: per stream, the last gap between two polls",
}


async def run_e2e(
    params: BenchParams,
    say: Callable[[str], None],
    run_dir: Path | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the end-to-end scenarios of ``params``; the ``e2e`` JSON document. ``progress``
    gets the document as it stands after each scenario (so a crash later loses nothing)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_dir = run_dir or params.e2e_logs / f"e2e-{stamp}"
    where = Where(
        params.bootstrap,
        log_dir,
        worker_args=params.e2e_worker_args,
        webhooks=not params.e2e_polling,
        count_paths=params.e2e_count_paths,
        keep_topics=params.e2e_keep_topics,
    )
    doc: dict[str, Any] = {
        "ran_at": stamp,
        "kafka_version": params.kafka_version,
        "logs": str(log_dir),
        "params": {
            "mailboxes": list(params.e2e_mailboxes),
            "reverse_mailboxes": list(params.e2e_reverse_mailboxes),
            "items_per_mailbox": params.e2e_items,
            "scenarios": list(params.e2e_scenarios),
            "idle_mailboxes": params.e2e_idle_mailboxes,
            "idle_settle_s": params.e2e_idle_settle,
            "idle_window_s": params.e2e_idle_window,
            "workers": list(params.e2e_workers),
            "rss": {
                "mailboxes": params.e2e_rss_mailboxes,
                "active": params.e2e_rss_active,
                "items_per_active": params.e2e_rss_items,
                "settle_s": params.e2e_rss_settle,
            },
            "timeout_s": params.e2e_timeout,
            "worker_args": list(params.e2e_worker_args),
            "webhooks": not params.e2e_polling,
            "count_paths": params.e2e_count_paths,
        },
        "first_sync": [],
        "reverse": [],
        "idle": [],
        "rss": [],
    }
    plan: list[tuple[str, Direction, tuple[int, ...]]] = []
    if "first-sync" in params.e2e_scenarios:
        plan.append(("first_sync", "crm_to_outlook", params.e2e_mailboxes))
    if "reverse" in params.e2e_scenarios:
        plan.append(("reverse", "outlook_to_crm", params.e2e_reverse_mailboxes))
    for workers in params.e2e_workers:
        for key, direction, sizes in plan:
            for n in sizes:
                started = time.monotonic()
                try:
                    result = await sync_scenario(
                        where,
                        direction,
                        n,
                        params.e2e_items,
                        workers=workers,
                        timeout_s=params.e2e_timeout,
                        say=say,
                    )
                except Exception as exc:  # one broken scenario must not hide the others
                    result = _broken(direction, n, params.e2e_items, workers, exc)
                doc[key].append(result)
                say(_line(result, time.monotonic() - started))
                if progress is not None:
                    progress(doc)
        if "idle" in params.e2e_scenarios:
            try:
                idle = await idle_scenario(
                    where,
                    params.e2e_idle_mailboxes,
                    params.e2e_idle_settle,
                    params.e2e_idle_window,
                    workers=workers,
                    say=say,
                )
            except Exception as exc:
                idle = {
                    "scenario": f"idle-{params.e2e_idle_mailboxes}-w{workers}",
                    "mailboxes": params.e2e_idle_mailboxes,
                    "workers": workers,
                    "settle_s": params.e2e_idle_settle,
                    "window_s": params.e2e_idle_window,
                    "ok": False,
                    "error": f"{type(exc).__name__}: {exc}",
                }
            doc["idle"].append(idle)
            if progress is not None:
                progress(doc)
    if "rss" in params.e2e_scenarios:
        started = time.monotonic()
        try:
            rss = await rss_scenario(
                where,
                params.e2e_rss_mailboxes,
                params.e2e_rss_active,
                params.e2e_rss_items,
                params.e2e_rss_settle,
                timeout_s=max(params.e2e_timeout, 900.0),
                say=say,
            )
        except Exception as exc:
            rss = {
                "scenario": f"rss-{params.e2e_rss_mailboxes}a{params.e2e_rss_active}",
                "mailboxes": params.e2e_rss_mailboxes,
                "active": params.e2e_rss_active,
                "ok": False,
                "error": f"{type(exc).__name__}: {str(exc)[:2000]}",
            }
        doc["rss"].append(rss)
        say(
            f"  {rss['scenario']}: {rss.get('rss_mb')} MB, {rss.get('steps')} "
            f"[{time.monotonic() - started:.0f} s] {rss.get('error') or 'ok'}"
        )
        if progress is not None:
            progress(doc)
    doc["targets"] = E2E_TARGETS
    doc["judged"] = judge(doc)
    doc["failures"] = failures(doc)
    doc["notes"] = NOTES
    return doc


def _broken(
    direction: Direction, mailboxes: int, items: int, workers: int, exc: Exception
) -> dict[str, Any]:
    short = "c2o" if direction == "crm_to_outlook" else "o2c"
    return {
        "scenario": f"{short}-{mailboxes}x{items}-w{workers}",
        "direction": direction,
        "mailboxes": mailboxes,
        "items_per_mailbox": items,
        "items": mailboxes * items,
        "workers": workers,
        "items_per_s": None,
        "ok": False,
        "error": f"{type(exc).__name__}: {str(exc)[:2000]}",
    }


def _line(result: dict[str, Any], took_s: float) -> str:
    if result.get("items_per_s") is None:
        return f"  {result['scenario']}: FAILED {str(result.get('error'))[:300]}"
    graph = result.get("graph") or {}
    state = "ok" if result.get("ok") else f"FAILED {str(result.get('error'))[:300]}"
    return (
        f"  {result['scenario']}: {result['items_per_s']} items/s over {result['seconds']} s "
        f"(pickup {result.get('pickup_s')} s), Graph {graph.get('per_item')}/item; "
        f"{state} [{took_s:.0f} s]"
    )
