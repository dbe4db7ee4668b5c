"""The end-to-end scenarios: a first sync each way, timed from enabling the mailboxes until the
last item is applied on the other side, then checked item by item; and the idle cost of
registered mailboxes where nothing changes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bench.e2e.procs import own_cpu_seconds
from bench.e2e.progress import OutcomeTail
from bench.e2e.stack import BenchUser, E2EStack, StackOptions, Stats
from bench.e2e.verify import Tally
from pipeline.rules.tracking_settings import TRACKED_CATEGORY
from pipeline.topics import OUTCOMES, topic_name

Direction = Literal["crm_to_outlook", "outlook_to_crm"]

#: Before the sides are checked: no outcome for this long (seconds), waiting at most the max.
QUIET_S = 3.0
QUIET_MAX_S = 30.0

#: Called after the timed part and before the check (a test plants a duplicate here).
BeforeCheck = Callable[[E2EStack, list[BenchUser]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Where:
    """Where a scenario runs: the broker, the log directory, what the workers get."""

    bootstrap: str
    log_dir: Path
    worker_args: tuple[str, ...] = ()
    webhooks: bool = True
    """As ``make up`` runs the worker (off: every Outlook stream polled)."""
    count_paths: bool = False
    """Count the workers' requests by table / stream through a proxy (adds a hop)."""
    keep_topics: bool = False


def _short(direction: Direction) -> str:
    return "c2o" if direction == "crm_to_outlook" else "o2c"


def item_name(stack: E2EStack, direction: Direction, user: BenchUser, index: int) -> str:
    """The unique last name of item ``index`` of ``user`` (what the check counts by)."""
    side = "C" if direction == "crm_to_outlook" else "O"
    return f"{side}{stack.tag}-{user.index:03d}-{index:05d}"


async def _each(jobs: list[Coroutine[Any, Any, None]], at_once: int = 8) -> None:
    gate = asyncio.Semaphore(at_once)

    async def one(job: Coroutine[Any, Any, None]) -> None:
        async with gate:
            await job

    await asyncio.gather(*(one(j) for j in jobs))


def _delta(after: Mapping[str, Any], before: Mapping[str, Any]) -> dict[str, int]:
    keys = set(after) | set(before)
    out = {k: int(after.get(k, 0)) - int(before.get(k, 0)) for k in sorted(keys)}
    return {k: v for k, v in out.items() if v}


def _cpu(after: Stats, before: Stats, driver_s: float) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, end in after.cpu.items():
        start = before.cpu.get(name)
        out[name] = None if end is None or start is None else round(end - start, 2)
    workers = [v for k, v in out.items() if k.startswith("worker-")]
    out["workers_total"] = None if None in workers else round(sum(v or 0.0 for v in workers), 2)
    out["bench driver"] = round(driver_s, 2)
    return out


def _requests(after: Stats, before: Stats, items: int) -> dict[str, Any]:
    graph_status = _delta(after.graph["by_status"], before.graph["by_status"])
    graph_total = int(after.graph["total"]) - int(before.graph["total"])
    dv_total = int(after.dataverse["total"]) - int(before.dataverse["total"])
    paths: dict[str, Any] = {}
    if after.graph_paths or after.dataverse_paths:
        paths = {
            "paths": {
                "graph": _delta(after.graph_paths, before.graph_paths),
                "dataverse": _delta(after.dataverse_paths, before.dataverse_paths),
            }
        }
    return {
        **paths,
        "graph": {
            "requests": graph_total,
            "per_item": round(graph_total / items, 3) if items else None,
            "by_method": _delta(after.graph["by_method"], before.graph["by_method"]),
            "by_status": graph_status,
            "throttled_429": graph_status.get("429", 0),
        },
        "dataverse": {
            "requests": dv_total,
            "per_item": round(dv_total / items, 3) if items else None,
            "by_method": _delta(after.dataverse["by_method"], before.dataverse["by_method"]),
            "by_status": _delta(after.dataverse["by_status"], before.dataverse["by_status"]),
            "throttled_429": int(after.dataverse["throttled"]) - int(before.dataverse["throttled"]),
        },
    }


def item_names(
    stack: E2EStack, direction: Direction, users: list[BenchUser], items: int
) -> dict[str, list[str]]:
    """Each user's item names (by mailbox id)."""
    return {u.mailbox_id: [item_name(stack, direction, u, i) for i in range(items)] for u in users}


async def _make_items(
    stack: E2EStack, direction: Direction, users: list[BenchUser], items: int
) -> dict[str, list[str]]:
    """Create ``items`` contacts per user on the source side; each user's names."""
    names = {u.mailbox_id: [item_name(stack, direction, u, i) for i in range(items)] for u in users}
    jobs: list[Coroutine[Any, Any, None]] = []
    for u in users:
        mine = names[u.mailbox_id]
        if direction == "crm_to_outlook":
            # owned by the mailbox's CRM user and active: "My active contacts" holds them
            rows = [
                {
                    "firstname": "Bench",
                    "lastname": last,
                    "emailaddress1": f"{last.lower()}@fabrikam.test",
                    "jobtitle": "Buyer",
                }
                for last in mine
            ]
            jobs.append(stack.crm_create(u, "contacts", rows))
        else:
            # tracked to Dynamics 365 by its category, as a user marks it in Outlook
            contacts = [
                {
                    "givenName": "Bench",
                    "surname": last,
                    "emailAddresses": [{"address": f"{last.lower()}@fabrikam.test", "name": last}],
                    "jobTitle": "Buyer",
                    "categories": [TRACKED_CATEGORY],
                }
                for last in mine
            ]
            jobs.append(stack.outlook_create(u, "contacts", contacts))
    await _each(jobs)
    return names


Side = Literal["outlook", "crm"]


async def count_side(
    stack: E2EStack, side: Side, prefix: str, users: list[BenchUser], names: dict[str, list[str]]
) -> Tally:
    """Count the benchmark's contacts (last names starting ``prefix``) on one side: each of
    ``names`` once, in its own mailbox (Outlook) or owned by its mailbox's user (CRM)."""
    tally = Tally()
    every = {n for mine in names.values() for n in mine}
    if side == "outlook":
        listed = await asyncio.gather(
            *(stack.outlook_list(u, "contacts", "id,surname") for u in users)
        )
        for u, contacts in zip(users, listed, strict=True):
            seen = [
                str(c.get("surname")) for c in contacts if str(c.get("surname")).startswith(prefix)
            ]
            mine = names[u.mailbox_id]
            tally.add(mine, seen, every - set(mine))
        return tally
    rows = await stack.crm_list(
        "contacts", f"$select=lastname,_ownerid_value&$filter=startswith(lastname,'{prefix}')"
    )
    by_owner: dict[str, list[str]] = {}
    for row in rows:
        owner = str(row.get("_ownerid_value") or "").lower()
        by_owner.setdefault(owner, []).append(str(row.get("lastname")))
    for u in users:
        mine = names[u.mailbox_id]
        tally.add(mine, by_owner.pop(u.systemuser_id.lower(), []), every - set(mine))
    for seen in by_owner.values():  # owned by nobody it belongs to
        tally.add([], seen, every)
    return tally


def _sides(direction: Direction) -> tuple[Side, Side]:
    """(source, target) of a direction."""
    return ("crm", "outlook") if direction == "crm_to_outlook" else ("outlook", "crm")


async def check(
    stack: E2EStack, direction: Direction, users: list[BenchUser], names: dict[str, list[str]]
) -> tuple[Tally, Tally]:
    """(target, source): every item once on the side it was synced to, and still once on the
    side it was made on (an echo written back would show there as a second copy)."""
    prefix = ("C" if direction == "crm_to_outlook" else "O") + stack.tag + "-"
    source, target = _sides(direction)
    return (
        await count_side(stack, target, prefix, users, names),
        await count_side(stack, source, prefix, users, names),
    )


async def sync_scenario(
    where: Where,
    direction: Direction,
    mailboxes: int,
    items: int,
    *,
    workers: int = 1,
    timeout_s: float = 600.0,
    before_check: BeforeCheck | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """One first sync: ``mailboxes`` x ``items`` contacts made on one side, the mailboxes
    enabled, timed until every create is applied on the other side, then checked there."""
    name = f"{_short(direction)}-{mailboxes}x{items}-w{workers}"
    total = mailboxes * items
    target = "outlook" if direction == "crm_to_outlook" else "crm"
    result: dict[str, Any] = {
        "scenario": name,
        "direction": direction,
        "mailboxes": mailboxes,
        "items_per_mailbox": items,
        "items": total,
        "workers": workers,
    }
    options = StackOptions(
        where.bootstrap,
        name,
        where.log_dir,
        workers=workers,
        worker_args=where.worker_args,
        webhooks=where.webhooks,
        count_paths=where.count_paths,
        keep_topics=where.keep_topics,
    )
    async with E2EStack(options) as stack:
        result["logs"] = str(stack.log_dir)
        say(f"  {name}: creating {total} contacts on the {direction.split('_')[0]} side")
        users = await stack.add_users(mailboxes)
        names = await _make_items(stack, direction, users, items)
        tail = OutcomeTail(where.bootstrap, topic_name(OUTCOMES, stack.kafka), target)
        await tail.start()
        try:
            before = await stack.stats()
            driver0 = own_cpu_seconds()
            say(f"  {name}: enabling {mailboxes} mailbox(es); timing")
            enabled = time.perf_counter()
            await stack.enable(users)
            pickup = asyncio.create_task(_pickup(stack, users, before))
            try:
                done = await tail.wait_for(total, timeout_s, stack.worker_failure)
            finally:
                if not pickup.done():
                    pickup.cancel()
            ended = time.perf_counter()
            after = await stack.stats()
            driver_s = own_cpu_seconds() - driver0
            picked = pickup.result() if pickup.done() and not pickup.cancelled() else None
            # what is still on its way (an echo written back among it) lands before the check
            quiet_s = await tail.quiet(QUIET_S, QUIET_MAX_S)
        finally:
            await tail.stop()
        p = tail.progress
        applied = len(p.applied)
        last = p.last_at if done and p.last_at is not None else ended
        began = picked if picked is not None else enabled
        elapsed = last - began
        finished = sorted(t - began for t in p.mailbox_last_at.values())
        result.update(
            {
                "items_per_s": round(applied / elapsed, 1) if elapsed > 0 else None,
                "seconds": round(elapsed, 2),
                "pickup_s": None if picked is None else round(picked - enabled, 2),
                "first_item_s": None if p.first_at is None else round(p.first_at - began, 2),
                "enable_to_last_s": round(last - enabled, 2),
                "items_per_s_from_enable": round(applied / (last - enabled), 1),
                "mailbox_done_s": (
                    {
                        "first": round(finished[0], 2),
                        "median": round(finished[len(finished) // 2], 2),
                        "last": round(finished[-1], 2),
                    }
                    if finished
                    else None
                ),
                "applied": applied,
                "outcomes_other": dict(p.other),
                "creates_back": sum(
                    n
                    for k, n in p.other.items()
                    if k.startswith(f"{_sides(direction)[0]}:contact:create:")
                ),
                "quiet_wait_s": round(quiet_s, 1),
                **_requests(after, before, applied),
                "cpu_s": _cpu(after, before, driver_s),
            }
        )
        if before_check is not None:
            await before_check(stack, users)
        tally, source_tally = await check(stack, direction, users, names)
    result["check"] = tally.as_json()
    result["source_check"] = source_tally.as_json()
    problems = []
    if not done:
        problems.append(f"timed out after {timeout_s:.0f} s with {applied} of {total} applied")
    target_name, source_name = (
        ("Outlook", "the CRM (source)")
        if direction == "crm_to_outlook"
        else ("the CRM", "Outlook (source)")
    )
    for found in (tally.problem(target_name), source_tally.problem(source_name)):
        if found:
            problems.append(found)
    if result["creates_back"]:  # an echo: the item made again where it came from
        problems.append(
            f"ECHO: {result['creates_back']} create(s) written back to {source_name}: "
            f"{dict(p.other)}"
        )
    result["ok"] = not problems
    result["error"] = "; ".join(problems) or None
    return result


async def idle_scenario(
    where: Where,
    mailboxes: int,
    settle_s: float,
    window_s: float,
    *,
    workers: int = 1,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """``mailboxes`` registered, nothing changing: after ``settle_s``, the requests each side
    gets over ``window_s``, per mailbox (Graph) and per table (Dataverse) per minute."""
    name = f"idle-{mailboxes}-w{workers}"
    options = StackOptions(
        where.bootstrap,
        name,
        where.log_dir,
        workers=workers,
        worker_args=where.worker_args,
        webhooks=where.webhooks,
        count_paths=True,
        keep_topics=where.keep_topics,
    )
    result: dict[str, Any] = {
        "scenario": name,
        "mailboxes": mailboxes,
        "workers": workers,
        "settle_s": settle_s,
        "window_s": window_s,
    }
    async with E2EStack(options) as stack:
        result["logs"] = str(stack.log_dir)
        users = await stack.add_users(mailboxes)
        await stack.enable(users)
        say(f"  {name}: {mailboxes} mailbox(es) enabled; settling {settle_s:g} s")
        await _sleep_watching(stack, settle_s)
        say(f"  {name}: measuring {window_s:g} s")
        before = await stack.stats()
        driver0 = own_cpu_seconds()
        window_from = time.monotonic()
        await _sleep_watching(stack, window_s)
        after = await stack.stats()
        driver_s = own_cpu_seconds() - driver0
        graph_gaps = stack.proxies["graph"].intervals(window_from)
        dataverse_gaps = stack.proxies["dataverse"].intervals(window_from)
    minutes = window_s / 60
    per_mailbox = {
        u.upn: round(
            (
                int(after.graph["by_mailbox"].get(u.mailbox_id, 0))
                - int(before.graph["by_mailbox"].get(u.mailbox_id, 0))
            )
            / minutes,
            2,
        )
        for u in users
    }
    graph_paths = _delta(after.graph_paths, before.graph_paths)
    dv_paths = _delta(after.dataverse_paths, before.dataverse_paths)
    per_table = {k: round(v / minutes, 2) for k, v in dv_paths.items()}
    dv_total = int(after.dataverse["total"]) - int(before.dataverse["total"])
    graph_total = int(after.graph["total"]) - int(before.graph["total"])
    result.update(
        {
            "graph": {
                "requests": graph_total,
                "per_mailbox_per_min": {
                    "mean": round(sum(per_mailbox.values()) / len(per_mailbox), 2),
                    "max": max(per_mailbox.values()),
                },
                "per_path_per_mailbox_per_min": {
                    k: round(v / minutes / mailboxes, 2) for k, v in graph_paths.items()
                },
                "last_poll_gap_s": graph_gaps,
                "by_status": _delta(after.graph["by_status"], before.graph["by_status"]),
            },
            "dataverse": {
                "requests": dv_total,
                "last_poll_gap_s": dataverse_gaps,
                "per_table_per_min": per_table,
                "max_per_table_per_min": max(per_table.values(), default=0.0),
                "by_status": _delta(after.dataverse["by_status"], before.dataverse["by_status"]),
            },
            "cpu_s": _cpu(after, before, driver_s),
            "ok": True,
            "error": None,
        }
    )
    counted = sum(dv_paths.values())
    if counted != dv_total:  # the proxy saw what the emulator served, or the figures lie
        result["ok"] = False
        result["error"] = f"Dataverse proxy counted {counted}, the emulator {dv_total}"
    return result


async def _pickup(stack: E2EStack, users: list[BenchUser], before: Stats) -> float:
    """When a worker first touched the enabled mailboxes: the start of the last check that
    found nothing (the earliest it can have been, so a rate is never flattered)."""
    asked = time.perf_counter()
    while True:
        checking = time.perf_counter()
        if await stack.picked_up(users, before):
            return asked
        asked = checking
        await asyncio.sleep(0.02)


async def _sleep_watching(stack: E2EStack, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        failure = stack.worker_failure()
        if failure:
            raise RuntimeError(failure)
        await asyncio.sleep(min(left, 1.0))
