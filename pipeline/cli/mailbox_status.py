"""``dynasync mailbox status [MAILBOX]``: what the config, the workers' ``mailbox.status``
records, the consumer groups' lag and ``dlq`` say of one mailbox, or of all of them."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from pipeline.cli.common import (
    emit,
    json_option,
    kafka_options,
    kafka_settings,
    load_settings,
    print_table,
    short,
    with_config,
    write_json,
)
from pipeline.cli.params import IDENT

if TYPE_CHECKING:
    from pipeline.config_store import ConfigStore
    from schemas.models import Mailbox, MailboxHealth

#: A record older than this is shown as stale: its worker publishes at least every minute.
STALE_S = 180.0


def _state(m: Mailbox, problems: list[str]) -> str:
    """One word: what the workers do with the mailbox now."""
    if problems:
        return "refused"  # a clash on the config topic: the runtime does not read it
    if m.status == "enabled":
        return "failing" if m.failing_since else "syncing"
    return m.status


def _age_s(health: MailboxHealth | None) -> float | None:
    if health is None:
        return None
    at = datetime.fromisoformat(health.updated_at.replace("Z", "+00:00"))
    return max(0.0, round(time.time() - at.timestamp(), 1))


def _last_sync(health: MailboxHealth | None) -> str:
    if health is None:
        return ""
    times = [s.last_success for s in health.streams if s.last_success]
    return max(times) if times else ""


@click.command("status")
@click.argument("ident", metavar="[MAILBOX]", type=IDENT, required=False)
@kafka_options
@json_option
def status(
    ident: str | None,
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """A mailbox's state as the config and its worker see it: incoming (Outlook to CRM),
    outgoing (CRM to Outlook) and each kind, the last successful sync per stream, error
    counts and the last error, open conflicts, alerts, the backlog of its partition and what
    dlq holds for it. Without MAILBOX: one line per mailbox."""
    from pipeline.cli.mailbox import find_mailbox
    from pipeline.dlq import Selection, list_dlq
    from pipeline.mailbox_status import backlog, mailbox_partition, read_status

    kafka = kafka_settings(bootstrap, topic_prefix)
    app_id = load_settings().app_id

    async def act(store: ConfigStore) -> dict[str, Any]:
        snapshot = store.snapshot
        boxes = (
            [find_mailbox(snapshot, ident)]
            if ident is not None
            else sorted(snapshot.mailboxes.values(), key=lambda m: m.mailbox_id)
        )
        try:
            health = await read_status(kafka, timeout_s=timeout)
            records, unreadable = health.records, health.unreadable
        except LookupError:  # topics of an older release: no status records yet
            records, unreadable = {}, 0
        try:
            partitions, behind = await backlog(kafka, app_id)
        except LookupError:
            partitions, behind = 0, {}
        wanted = frozenset(m.mailbox_id for m in boxes)
        try:
            parked = await list_dlq(kafka, Selection(mailboxes=wanted), timeout_s=timeout)
        except LookupError:
            parked = []
        reports = []
        for m in boxes:
            problems = [str(p) for p in snapshot.problems if p.key == f"mailbox:{m.mailbox_id}"]
            mine = [r for r in parked if r.mailbox_id == m.mailbox_id]
            counts: dict[str, int] = {}
            for r in mine:
                counts[r.reason] = counts.get(r.reason, 0) + 1
            found = records.get(m.mailbox_id)
            partition = mailbox_partition(m.mailbox_id, partitions) if partitions else None
            reports.append(
                {
                    "mailbox": m,
                    "state": _state(m, problems),
                    "failing_since": m.failing_since,
                    "last_error": m.last_error,
                    "config_problems": problems,
                    "alerts": [
                        {"error": r.error, "dlq": f"{r.partition}:{r.offset}"}
                        for r in mine
                        if r.reason == "alert"
                    ],
                    "parked": counts,
                    "health": found,
                    "health_age_s": _age_s(found),
                    "partition": partition,
                    "backlog": behind.get(partition, {}) if partition is not None else {},
                }
            )
        return {"mailboxes": reports, "unreadable_status_records": unreadable}

    result: dict[str, Any] = with_config(bootstrap, topic_prefix, timeout, act)
    reports = result["mailboxes"]
    if ident is not None:
        emit(as_json, reports[0], _lines(reports[0]))
        return 0
    if as_json:
        write_json(result)
        return 0
    rows = []
    for r in reports:
        h: MailboxHealth | None = r["health"]
        rows.append(
            (
                r["mailbox"].mailbox_id,
                r["state"],
                h.incoming if h else "",
                h.outgoing if h else "",
                _last_sync(h),
                str(sum(h.errors.values())) if h else "",
                str(h.open_conflicts) if h else "",
                str(len(r["alerts"])),
                str(sum(r["backlog"].values())),
            )
        )
    columns = ("MAILBOX", "STATE", "INCOMING", "OUTGOING", "LAST SYNC", "ERRORS", "CONFLICTS")
    print_table((*columns, "ALERTS", "BACKLOG"), rows, empty="no mailboxes")
    return 0


def _lines(report: dict[str, Any]) -> list[str]:
    found: Mailbox = report["mailbox"]
    h: MailboxHealth | None = report["health"]
    lines = [
        f"mailbox      {found.mailbox_id} ({found.upn}, organisation {found.org_id})",
        f"state        {report['state']}",
        f"config       {found.status}",
    ]
    if found.failing_since:
        lines.append(f"failing      since {found.failing_since}")
    if found.last_error:
        lines.append(f"last error   {found.last_error}")
    lines += [f"problem      {p}" for p in report["config_problems"]]
    if h is None:
        lines.append("worker       no status published (not read by a running worker yet)")
    else:
        age = report["health_age_s"]
        stale = " (stale: its worker may be gone)" if age is not None and age > STALE_S else ""
        lines += [
            f"worker       {h.worker}, {h.updated_at}{stale}",
            f"incoming     {h.incoming}   (Outlook -> CRM)",
            f"outgoing     {h.outgoing}   (CRM -> Outlook)",
            "kinds        " + ", ".join(f"{k} {v}" for k, v in sorted(h.kinds.items())),
        ]
        if h.failed_tries:
            lines.append(f"failed tries {h.failed_tries}")
        errors = ", ".join(f"{n} {w}" for w, n in sorted(h.errors.items())) or "none"
        lines.append(f"errors       {errors}")
        if h.last_error:
            lines.append(f"  last       {h.last_error_at}  {short(h.last_error, 100)}")
        lines.append(f"conflicts    {h.open_conflicts} open")
        lines.append("last sync")
        lines += [
            f"  {s.side:<8}{s.kind:<12}{s.last_success or 'never':<22}{short(s.stream, 60)}"
            for s in h.streams
        ]
    behind = report["backlog"]
    if report["partition"] is not None:
        text = ", ".join(f"{k} {v}" for k, v in sorted(behind.items()))
        lines.append(f"backlog      partition {report['partition']}: {text}")
    lines.append(f"alerts       {len(report['alerts'])}")
    lines += [f"  {a['dlq']}  {short(a['error'], 100)}" for a in report["alerts"][-5:]]
    parked = ", ".join(f"{n} {r}" for r, n in sorted(report["parked"].items())) or "none"
    lines.append(f"dlq          {parked}")
    return lines
