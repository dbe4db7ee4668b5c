"""``dynasync resync MAILBOX (--full | --since TIME)``: reconcile a mailbox's two sides, or
replay its changes since a time, through the running engine (see :mod:`pipeline.resync`).

A progress bar on stderr when it is a terminal; ``--json`` prints one document at the end.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from pipeline.cli.common import (
    CommandError,
    UsageError,
    emit,
    json_option,
    kafka_options,
    load_settings,
    run_kafka,
)
from pipeline.cli.params import Checked, seconds

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pipeline.resync import Progress, ResyncReport
    from schemas.models import Mailbox

WAIT = Checked("seconds", seconds(1, 86_400, low_open=False))


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (``Z`` or an offset; none means UTC) not in the future, or a
    duration back from now: ``90s``, ``15m``, ``2h``, ``7d``. ValueError with the reason."""
    raw = text.strip()
    at = now or datetime.now(UTC)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
    if raw[-1:] in units and raw[:-1].isdigit():
        return at - timedelta(seconds=int(raw[:-1]) * units[raw[-1]])
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"expected an ISO 8601 time (2024-05-01T10:00:00Z) or 15m / 2h / 7d, got {text!r}"
        ) from None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if parsed > at + timedelta(seconds=5):
        raise ValueError(f"{text!r} is in the future")
    return parsed


class _Bar:
    """A rich progress bar on stderr, one task per phase (only on a terminal)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from pipeline.cli.common import console

        self.progress = Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console(stderr=True),
            transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        task = self.tasks.get(phase)
        if task is None:
            task = self.tasks[phase] = self.progress.add_task(phase, total=total)
        self.progress.update(task, completed=done, total=total)


def _lines(r: ResyncReport) -> list[str]:
    if r.mode == "since":
        return [
            f"replayed {r.sent} records of {r.mailbox_id} ({r.outlook_items} Outlook, "
            f"{r.crm_items} CRM); the engine handled {r.handled} in {r.seconds:g} s"
        ]
    lines = [
        f"{r.mailbox_id}: {r.outlook_items} Outlook items, {r.crm_items} CRM rows in its filters",
        f"linked {r.links} pairs, {r.updates} known items and {r.creates} unmatched items sent "
        f"again, {r.left} left; the engine handled {r.handled} of {r.sent} records "
        f"in {r.seconds:g} s",
    ]
    if not r.enabled:
        lines.append(
            "the mailbox is not enabled: its first sync after `mailbox enable` does the rest"
        )
    return lines


@click.command("resync")
@click.argument("mailbox")
@click.option("--full", "full", is_flag=True, help="list both sides, link what matches")
@click.option(
    "--since",
    "since",
    type=Checked("TIME", parse_since),
    help="replay the mailbox's changes since TIME",
)
@click.option(
    "--wait",
    "wait_s",
    type=WAIT,
    default=600.0,
    show_default=True,
    help="seconds to wait for the engine to handle what was sent",
)
@kafka_options
@json_option
def resync(
    mailbox: str,
    full: bool,
    since: datetime | None,
    wait_s: float,
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Resync MAILBOX (id or UPN): --full reconciles both sides item by item and links what
    matches (contacts by address and name, appointments by iCalUId, email by
    internetMessageId, tasks by subject and due date) without creating duplicates; run it
    before `mailbox enable` to take over a mailbox another engine synced. --since TIME
    replays its changes since TIME (ISO 8601, or 15m / 2h / 7d back)."""
    if full == (since is not None):
        raise UsageError("give exactly one of --full and --since TIME")
    settings = load_settings({"kafka": {"bootstrap": bootstrap, "topic_prefix": topic_prefix}})
    bar: _Bar | None = None
    if not as_json and sys.stderr.isatty():
        bar = _Bar()

    async def body() -> ResyncReport:
        from pipeline.config_store import ConfigStore
        from pipeline.resync import full_resync, replay_since

        async with ConfigStore(settings.kafka, timeout_s=timeout) as store:
            snapshot = store.snapshot
        found = _find(snapshot.mailboxes, mailbox)
        if found.org_id not in snapshot.organisations:
            raise UsageError(f"mailbox {mailbox!r}: organisation {found.org_id!r} does not exist")
        progress: Progress = bar if bar is not None else _silent
        if since is not None:
            return await replay_since(settings, found, since, progress=progress, wait_s=wait_s)
        return await full_resync(settings, snapshot, found, progress=progress, wait_s=wait_s)

    from connectors.errors import ConnectorError
    from pipeline.resync import ResyncError

    try:
        if bar is not None:
            with bar.progress:
                report = run_kafka(settings.kafka, body, timeout_s=timeout)
        else:
            report = run_kafka(settings.kafka, body, timeout_s=timeout)
    except (ResyncError, ConnectorError) as exc:
        raise CommandError(str(exc)) from None
    emit(as_json, report, _lines(report))


def _silent(phase: str, done: int, total: int | None) -> None:
    return None


def _find(mailboxes: Mapping[str, Mailbox], ident: str) -> Mailbox:
    wanted = ident.casefold()
    for found in mailboxes.values():
        if wanted in (found.upn.casefold(), found.mailbox_id.casefold()):
            return found
    raise UsageError(f"mailbox {ident!r} does not exist")
