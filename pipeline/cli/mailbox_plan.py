"""``dynasync mailbox plan MAILBOX [--limit N]``: a dry run of a mailbox's first sync (see
:mod:`pipeline.mailbox_plan`): what would be created, linked, updated or left alone on each
side, and which filter admits each CRM row. Reads both sides; writes nothing anywhere."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from pipeline.cli.common import (
    CommandError,
    UsageError,
    json_option,
    kafka_options,
    load_settings,
    print_table,
    run_kafka,
    write_json,
)
from pipeline.cli.params import IDENT, POSITIVE

if TYPE_CHECKING:
    from pipeline.mailbox_plan import MailboxPlanReport, PlanItem


def _action_text(item: PlanItem) -> str:
    if item.action == "create" and item.target is not None:
        return f"create in {item.target}"
    return item.action


def _print(report: MailboxPlanReport) -> None:
    click.echo(
        f"plan of mailbox {report.mailbox_id} ({report.upn}, {report.status}): "
        f"{report.outlook_items} Outlook items, {report.crm_rows} CRM rows its filters concern; "
        "nothing written"
    )
    rows = [
        (
            item.label,
            f"{item.side} {item.kind}",
            _action_text(item),
            item.filter or "-",
            item.reason,
        )
        for item in report.items
    ]
    print_table(("ITEM", "SIDE", "ACTION", "FILTER", "WHY"), rows, empty="nothing to sync")
    if report.listed < report.total:
        click.echo(f"... {report.total - report.listed} more (--limit {report.listed})")
    for side, counts in report.counts.items():
        click.echo(f"{side:<8}" + ", ".join(f"{n} {action}" for action, n in counts.items()))


@click.command("plan")
@click.argument("ident", metavar="MAILBOX", type=IDENT)
@click.option(
    "--limit",
    type=POSITIVE,
    default=None,
    help="list at most N items (the counts cover all of them)",
)
@kafka_options
@json_option
def plan(
    ident: str,
    limit: int | None,
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Dry run of MAILBOX's first sync (id or UPN): list both sides as `resync --full` does
    and say what would be created, linked, updated or left alone on each side, and which
    filter (its id, or the default template's name) admits each CRM row. Writes nothing."""
    settings = load_settings({"kafka": {"bootstrap": bootstrap, "topic_prefix": topic_prefix}})

    async def body() -> MailboxPlanReport:
        from pipeline.config_store import ConfigStore
        from pipeline.mailbox_plan import mailbox_plan

        async with ConfigStore(settings.kafka, timeout_s=timeout) as store:
            snapshot = store.snapshot
        wanted = ident.casefold()
        found = next(
            (
                m
                for m in snapshot.mailboxes.values()
                if wanted in (m.upn.casefold(), m.mailbox_id.casefold())
            ),
            None,
        )
        if found is None:
            raise UsageError(f"mailbox {ident!r} does not exist")
        if found.org_id not in snapshot.organisations:
            raise UsageError(f"mailbox {ident!r}: organisation {found.org_id!r} does not exist")
        return await mailbox_plan(settings, snapshot, found, limit=limit)

    from connectors.errors import ConnectorError

    try:
        report = run_kafka(settings.kafka, body, timeout_s=timeout)
    except ConnectorError as exc:
        raise CommandError(str(exc)) from None
    if as_json:
        write_json(report)
    else:
        _print(report)
