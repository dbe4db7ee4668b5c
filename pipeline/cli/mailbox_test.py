"""``dynasync mailbox test MAILBOX [--enable]``: server-side sync's "Test & Enable"
(:mod:`pipeline.mailbox_check`): Graph access, Dataverse access with impersonation, the
webhook validation round trip; exit 1 if any check fails; ``--enable`` enables the mailbox
when every check passed."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

import click

from pipeline.cli.common import (
    emit,
    json_option,
    kafka_options,
    load_settings,
    with_config,
)
from pipeline.cli.params import IDENT

if TYPE_CHECKING:
    from pipeline.config_store import ConfigStore
    from pipeline.mailbox_check import Check
    from schemas.models import Mailbox, Organisation

_MARK = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}


@click.command("test")
@click.argument("ident", metavar="MAILBOX", type=IDENT)
@click.option("--enable", is_flag=True, help="enable the mailbox if every check passes")
@kafka_options
@json_option
def test(
    ident: str,
    enable: bool,
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """Test a mailbox as server-side sync's Test & Enable does: Graph (token, user, one read
    of mail, contacts, calendar, To Do), Dataverse (WhoAmI, impersonating its CRM user, a read
    as that user) and the webhook validation round trip. Reads only; exit 1 if a check fails."""
    from pipeline.cli.mailbox import find_mailbox
    from pipeline.mailbox_check import check_mailbox

    settings = load_settings()

    async def act(store: ConfigStore) -> tuple[Mailbox, list[Check], bool]:
        found: Mailbox = find_mailbox(store.snapshot, ident)
        org: Organisation | None = store.snapshot.organisations.get(found.org_id)
        checks = await asyncio.wait_for(check_mailbox(settings, found, org), 120)
        passed = all(c.result != "fail" for c in checks)
        enabled = False
        if enable and passed and found.status != "enabled":
            record = dataclasses.replace(
                found, status="enabled", failing_since=None, last_error=None
            )
            await store.put(record)
            found, enabled = record, True
        return found, checks, enabled

    found, checks, enabled = with_config(bootstrap, topic_prefix, timeout, act)
    failed = [c for c in checks if c.result == "fail"]
    report: dict[str, Any] = {
        "mailbox_id": found.mailbox_id,
        "passed": not failed,
        "enabled": enabled,
        "status": found.status,
        "checks": checks,
    }
    lines = [f"testing mailbox {found.mailbox_id} ({found.upn}, CRM user {found.systemuser_id})"]
    lines += [
        f"  {_MARK[c.result]}  {c.area:<10}{c.name:<38}{c.detail}"
        + (f" ({c.took_ms} ms)" if c.result != "skip" else "")
        for c in checks
    ]
    if failed:
        lines.append(f"{len(failed)} check(s) failed: fix what they say, then test again")
    elif enabled:
        lines.append(f"every check passed; mailbox {found.mailbox_id} is now enabled")
    else:
        lines.append("every check passed" + ("" if enable else " (--enable to enable it)"))
    emit(as_json, report, lines)
    if failed:
        click.echo(f"dynasync: mailbox test: {len(failed)} check(s) failed", err=True)
        return 1
    return 0
