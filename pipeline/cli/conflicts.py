"""``dynasync conflicts list|resolve``: conflicts the engine recorded, and the way out of the
``manual`` policy.

``list`` reads the ``conflicts`` topic and shows the open ones (:mod:`pipeline.conflicts`).
``resolve ID --take outlook|crm`` sends a resolution to the engine on ``changes.crm`` (a
control record keyed by the mailbox, in order with its changes); the engine writes the chosen
value to the other side and closes the conflict on ``conflicts``, after which ``list`` no
longer shows it.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

import click

from pipeline.cli.common import (
    CommandError,
    emit,
    json_option,
    kafka_options,
    kafka_settings,
    print_table,
    run_kafka,
    short,
)
from pipeline.cli.params import IDENT, Checked

if TYPE_CHECKING:
    from pipeline.conflicts import ConflictLog
    from pipeline.settings import KafkaSettings

_CONFLICT_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,512}$")


def conflict_id_text(text: str) -> str:
    """A conflict id as ``conflicts list`` shows it."""
    if not _CONFLICT_ID.match(text):
        raise ValueError(f"expected a conflict id as `conflicts list` shows it, got {text!r}")
    return text


CONFLICT_ID = Checked("id", conflict_id_text)


@click.group(name="conflicts")
def conflicts() -> None:
    """Recorded conflicts: list the open ones, resolve one held by the manual policy."""


async def read_log(kafka: KafkaSettings, timeout_s: float) -> ConflictLog:
    """The whole ``conflicts`` topic, read to its current end."""
    from pipeline.cli.topic_read import read_to_end
    from pipeline.conflicts import ConflictLog
    from pipeline.topics import CONFLICTS, topic_name

    log = ConflictLog()
    async for rec in read_to_end(kafka, topic_name(CONFLICTS, kafka), timeout_s=timeout_s):
        log.add(rec.value, rec.partition, rec.offset)
    return log


@conflicts.command("list")
@click.option("--mailbox", "mailboxes", multiple=True, type=IDENT, help="only this mailbox")
@click.option("--values/--no-values", default=True, help="show both sides' values (default on)")
@kafka_options
@json_option
def list_(
    mailboxes: tuple[str, ...],
    values: bool,
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """List the open conflicts (the manual policy's, not yet resolved), oldest first."""
    kafka = kafka_settings(bootstrap, topic_prefix)
    log = run_kafka(kafka, lambda: read_log(kafka, timeout))
    found = log.open(mailboxes)
    if as_json:
        emit(
            True,
            {"open": [r.summary(values=values) for r in found], "unreadable": log.unreadable},
            [],
        )
        return 0
    rows = [
        (
            r.conflict_id,
            r.mailbox_id,
            r.kind,
            r.field,
            short(repr(r.outlook), 40) if values else "-",
            short(repr(r.crm), 40) if values else "-",
            r.decided_at,
        )
        for r in found
    ]
    cols = ("CONFLICT", "MAILBOX", "KIND", "FIELD", "OUTLOOK", "CRM", "DECIDED")
    print_table(cols, rows, empty="no open conflicts")
    if log.unreadable:
        click.echo(f"dynasync: warning: {log.unreadable} unreadable record(s) skipped", err=True)
    return 0


@conflicts.command("resolve")
@click.argument("conflict_id", metavar="ID", type=CONFLICT_ID)
@click.option(
    "--take", required=True, type=click.Choice(("outlook", "crm")), help="the side whose value wins"
)
@kafka_options
@json_option
def resolve(
    conflict_id: str,
    take: str,
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """Resolve open conflict ID: write the value of the --take side to the other side."""
    kafka = kafka_settings(bootstrap, topic_prefix)

    async def body() -> dict[str, object]:
        from pipeline.cli.clients import producer
        from pipeline.stages.guard import CONTROL_HEADER
        from pipeline.stages.publish import utc_now
        from pipeline.topics import CHANGES_CRM, topic_name
        from schemas.conflicts import RESOLVE_CONTROL, ConflictResolution, encode_resolution

        log = await read_log(kafka, timeout)
        found = log.find(conflict_id)
        if found is None:
            raise CommandError(f"conflict {conflict_id!r} is not on the conflicts topic")
        if found not in log.open():
            raise CommandError(f"conflict {conflict_id!r} is not open (resolved or superseded)")
        resolution = ConflictResolution(
            resolution_id=str(uuid.uuid4()),
            mailbox_id=found.mailbox_id,
            conflict_id=found.conflict_id,
            correlation_id=found.correlation_id,
            field=found.field,
            conflict_key=found.key,
            take="outlook" if take == "outlook" else "crm",
            requested_at=utc_now(),
        )
        sender = producer(kafka, acks="all", enable_idempotence=True)
        await sender.start()
        try:
            await sender.send_and_wait(
                topic_name(CHANGES_CRM, kafka),
                encode_resolution(resolution),
                key=found.mailbox_id.encode(),
                headers=[(CONTROL_HEADER, RESOLVE_CONTROL)],
            )
        finally:
            await sender.stop()
        return {
            **found.summary(values=False),
            "take": take,
            "resolution_id": resolution.resolution_id,
        }

    data = run_kafka(kafka, body)
    emit(
        as_json,
        data,
        [
            f"resolution sent: {conflict_id} ({data['mailbox_id']} {data['kind']}.{data['field']}) "
            f"takes {take}; the engine applies it in order with the mailbox's changes"
        ],
    )
    return 0
