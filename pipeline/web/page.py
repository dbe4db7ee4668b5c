"""The status page, rendered on the server (no script). Everything shown that comes from
mail, the CRM or the configuration is escaped."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from urllib.parse import quote

from pipeline.web.feed import AlertView, ConflictView
from pipeline.web.status import MailboxRow

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#1d2330;background:#f6f7f9}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;background:#fff;min-width:40%}
th,td{border:1px solid #d0d4dc;padding:.3em .6em;text-align:left;font-size:.9em}
th{background:#e8ebf0}.ok{color:#176b2c}.bad{color:#a3201b;font-weight:600}
.muted{color:#6b7280}a{color:#1b4fa3}
"""

_BAD_STATES = frozenset({"failing", "retrying", "disabled", "paused"})


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="muted">{_e(empty)}</p>'
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _doc(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _state(state: str) -> str:
    css = "bad" if state in _BAD_STATES else "ok"
    return f'<span class="{css}">{_e(state)}</span>'


def mailbox_href(mailbox_id: str) -> str:
    """The drill-down path of a mailbox."""
    return "/mailbox/" + quote(mailbox_id, safe="")


def _conflicts(conflicts: Iterable[ConflictView]) -> str:
    rows = [
        [
            _e(c.decided_at),
            f'<a href="{_e(mailbox_href(c.mailbox_id))}">{_e(c.mailbox_id)}</a>',
            _e(c.kind),
            _e(c.field),
            _e(c.policy),
            _e(c.winner),
        ]
        for c in reversed(list(conflicts))
    ]
    head = ["decided", "mailbox", "kind", "field", "policy", "winner"]
    return _table(head, rows, "no conflicts recorded recently")


def _alerts(alerts: Iterable[AlertView]) -> str:
    rows = [
        [
            _e(a.at),
            f'<a href="{_e(mailbox_href(a.mailbox_id))}">{_e(a.mailbox_id)}</a>',
            _e(a.reason),
        ]
        for a in reversed(list(alerts))
    ]
    return _table(["at", "mailbox", "alert"], rows, "no alerts recently")


def render_index(
    *,
    app_id: str,
    ready: bool,
    failure: str | None,
    rows: Sequence[MailboxRow],
    stages: Sequence[tuple[str, int, int, int, int]],
    conflicts: Sequence[ConflictView],
    alerts: Sequence[AlertView],
) -> str:
    """The worker's page: its state, every mailbox, its stages, recent conflicts and alerts.
    ``stages``: (name, records in, records out, in flight, lag)."""
    state = "crashed: " + failure if failure else ("ready" if ready else "starting")
    mailbox_rows = [
        [
            f'<a href="{_e(mailbox_href(r.mailbox.mailbox_id))}">{_e(r.mailbox.mailbox_id)}</a>',
            _e(r.mailbox.upn),
            _e(r.mailbox.org_id),
            _state(r.state),
            _state(r.reader) if r.reader else '<span class="muted">other worker</span>',
            _e(r.last_pass),
            _e(sum(r.backlog.values())),
            _e(r.mailbox.last_error or r.reader_error),
            _e(r.alerts),
            _e(r.conflicts),
        ]
        for r in rows
    ]
    head = ["mailbox", "UPN", "org", "state", "reader here", "last sync", "backlog", "error"]
    stage_rows = [[_e(v) for v in stage] for stage in stages]
    body = (
        f"<h1>Dynasync worker {_e(app_id)}</h1>"
        f'<p>state: <span id="worker-state">{_state(state)}</span> · '
        f'<a href="/metrics">metrics</a> · <a href="/healthz">healthz</a> · '
        f'<a href="/readyz">readyz</a></p>'
        f"<h2>Mailboxes ({len(rows)})</h2>"
        + _table([*head, "alerts", "conflicts"], mailbox_rows, "no mailboxes configured")
        + "<h2>Stages</h2>"
        + _table(["stage", "records in", "records out", "in flight", "lag"], stage_rows, "none")
        + "<h2>Recent conflicts</h2>"
        + _conflicts(conflicts)
        + "<h2>Recent alerts</h2>"
        + _alerts(alerts)
    )
    return _doc(f"Dynasync {app_id}", body)


def render_mailbox(
    row: MailboxRow, conflicts: Sequence[ConflictView], alerts: Sequence[AlertView]
) -> str:
    """One mailbox: its configuration, its reader here, its backlog, conflicts and alerts."""
    m = row.mailbox
    facts = [
        ("mailbox id", m.mailbox_id),
        ("UPN", m.upn),
        ("SMTP address", m.smtp_address or ""),
        ("organisation", m.org_id),
        ("CRM user", m.systemuser_id),
        ("state", row.state),
        ("failing since", m.failing_since or ""),
        ("last error", m.last_error or ""),
        ("auto-track", m.auto_track),
        ("tracked folders", ", ".join(f.folder_id for f in m.tracked_folders)),
        ("reader here", row.reader or "not read by this worker"),
        ("passes (full)", f"{row.passes} ({row.full_passes})"),
        ("last sync", row.last_pass),
        ("reader error", row.reader_error),
        ("backlog", ", ".join(f"{k}: {v}" for k, v in sorted(row.backlog.items()))),
        ("parked on dlq (recent)", str(row.parked)),
    ]
    table = _table(["", ""], [[_e(k), _e(v)] for k, v in facts], "")
    body = (
        f'<p><a href="/">all mailboxes</a></p><h1>Mailbox {_e(m.mailbox_id)}</h1>'
        + table
        + "<h2>Recent conflicts</h2>"
        + _conflicts(conflicts)
        + "<h2>Recent alerts</h2>"
        + _alerts(alerts)
    )
    return _doc(f"Dynasync mailbox {m.mailbox_id}", body)
