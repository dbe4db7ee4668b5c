"""What the status page and the metrics read of a running worker."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from pipeline.app import App
from pipeline.config_store import ConfigSnapshot
from pipeline.mailbox_runner import MailboxRunner
from pipeline.stages.stream import GroupConsumer
from pipeline.stages.writers import CommandWriter
from pipeline.web.feed import RecentFeed
from schemas.models import Mailbox


class WorkerView(Protocol):
    """The worker as the web side sees it (:class:`pipeline.runtime.Pipeline`)."""

    @property
    def config(self) -> ConfigSnapshot: ...

    @property
    def app(self) -> App | None: ...

    @property
    def ready(self) -> bool: ...

    def failure(self) -> str | None: ...

    def mailbox_runner(self, mailbox_id: str) -> MailboxRunner | None: ...


def stages(worker: WorkerView) -> list[GroupConsumer]:
    """The stages running now (processors and writers)."""
    app = worker.app
    if app is None:
        return []
    return [part for part in app.running().values() if isinstance(part, GroupConsumer)]


def _when(epoch_s: float | None) -> str:
    if epoch_s is None:
        return ""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class MailboxRow:
    """One mailbox as the status page shows it."""

    mailbox: Mailbox
    reader: str
    """How its reader fares here (ok, retrying, failing, disabled), or "" if not read here."""
    passes: int
    full_passes: int
    last_pass: str
    reader_error: str
    backlog: dict[str, int]
    """Commands waiting in its write lanes here, per target (crm, outlook)."""
    alerts: int
    conflicts: int
    parked: int

    @property
    def state(self) -> str:
        """Its configured status, ``failing`` when Graph refuses it."""
        m = self.mailbox
        return "failing" if m.status == "enabled" and m.failing_since else m.status


def mailbox_rows(worker: WorkerView, feed: RecentFeed | None) -> list[MailboxRow]:
    """Every configured mailbox, by id."""
    writers = [s for s in stages(worker) if isinstance(s, CommandWriter)]
    alerts: dict[str, int] = {}
    conflicts: dict[str, int] = {}
    if feed is not None:
        for alert in feed.alerts:
            alerts[alert.mailbox_id] = alerts.get(alert.mailbox_id, 0) + 1
        for conflict in feed.conflicts:
            conflicts[conflict.mailbox_id] = conflicts.get(conflict.mailbox_id, 0) + 1
    rows = []
    for mailbox_id, mailbox in sorted(worker.config.mailboxes.items()):
        runner = worker.mailbox_runner(mailbox_id)
        rows.append(
            MailboxRow(
                mailbox=mailbox,
                reader=runner.state if runner is not None else "",
                passes=runner.passes if runner is not None else 0,
                full_passes=runner.full_passes if runner is not None else 0,
                last_pass=_when(runner.last_pass_at) if runner is not None else "",
                reader_error=(runner.last_error or "") if runner is not None else "",
                backlog={w.side: w.backlog(mailbox_id) for w in writers},
                alerts=alerts.get(mailbox_id, 0),
                conflicts=conflicts.get(mailbox_id, 0),
                parked=feed.parked.get(mailbox_id, 0) if feed is not None else 0,
            )
        )
    return rows
