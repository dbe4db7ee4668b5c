"""``dynasync dlq list`` and ``dynasync dlq replay``: what the pipeline parked, and sending it
back once the cause is fixed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from pipeline.cli.common import (
    emit,
    json_option,
    kafka_options,
    kafka_settings,
    load_settings,
    run_kafka,
)
from pipeline.cli.params import IDENT, REASON

if TYPE_CHECKING:
    from pipeline.dlq import DlqRecord, Selection


@click.group(name="dlq")
def dlq() -> None:
    """Records the pipeline parked: poison, refused, paused, alert."""


def _line(r: DlqRecord) -> str:
    error = r.error if len(r.error) <= 100 else r.error[:97] + "..."
    return (
        f"{r.partition}:{r.offset}  {r.reason:<8} {r.mailbox_id or '-':<38} "
        f"{r.origin_topic}:{r.origin_partition}:{r.origin_offset}  {error}"
    )


def _selection(reasons: tuple[str, ...], mailboxes: tuple[str, ...]) -> Selection:
    from pipeline.dlq import Selection

    return Selection(frozenset(reasons), frozenset(mailboxes))


def _filters(func: Any) -> Any:
    func = click.option(
        "--mailbox", "mailboxes", multiple=True, type=IDENT, help="only this mailbox (repeatable)"
    )(func)
    return click.option(
        "--reason", "reasons", multiple=True, type=REASON, help="only this reason (repeatable)"
    )(func)


@dlq.command("list")
@_filters
@kafka_options
@json_option
def list_(
    reasons: tuple[str, ...],
    mailboxes: tuple[str, ...],
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """List parked records (every reason unless --reason)."""
    from pipeline.dlq import list_dlq

    kafka = kafka_settings(bootstrap, topic_prefix)
    selection = _selection(reasons, mailboxes)
    records = run_kafka(
        kafka, lambda: list_dlq(kafka, selection, timeout_s=timeout), timeout_s=timeout
    )
    lines = [*(_line(r) for r in records), f"{len(records)} record(s)"]
    emit(as_json, [r.summary() for r in records], lines)
    return 0


@dlq.command("replay")
@_filters
@click.option("--dry-run", is_flag=True, help="show, send nothing")
@kafka_options
@json_option
def replay(
    reasons: tuple[str, ...],
    mailboxes: tuple[str, ...],
    dry_run: bool,
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """Send parked records back to their topic, each only once (reasons poison, refused
    unless --reason)."""
    from pipeline import dlq as parked

    kafka = kafka_settings(bootstrap, topic_prefix)
    app_id = load_settings().app_id
    selection = _selection(reasons, mailboxes)
    report = run_kafka(
        kafka,
        lambda: parked.replay(kafka, app_id, selection, dry_run=dry_run, timeout_s=timeout),
        timeout_s=timeout,
    )
    verb = "would replay" if dry_run else "replayed"
    data = {
        "dry_run": dry_run,
        "replayed": [r.summary() for r in report.replayed],
        "skipped": [{**r.summary(), "why": why} for r, why in report.skipped],
    }
    lines = [
        *(f"{verb} {_line(r)}" for r in report.replayed),
        *(f"skipped {r.partition}:{r.offset}: {why}" for r, why in report.skipped),
        f"{verb} {len(report.replayed)}, skipped {len(report.skipped)}",
    ]
    emit(as_json, data, lines)
    return 0
