"""``dynasync replay --topic T --from OFFSET|TIME [--mailbox M] [--dry-run]``: publish a
topic's records again, from an offset or a time (per partition, ``offsets_for_times``), onto
the same topic, where their consumer reads them again.

Only the pipeline's input topics are replayed: ``changes.outlook`` and ``changes.crm`` (the
engine sees the changes again; it drops versions it has seen and projections it already
has, so replaying what is in sync changes nothing), ``crm.raw`` (fanned out again) and
``graph.notifications`` (the mailbox is read again). Control records (resume, link,
resolve) are never replayed: they were operator decisions, not observations.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from pipeline.cli.common import (
    UsageError,
    emit,
    json_option,
    kafka_options,
    kafka_settings,
    run_kafka,
)
from pipeline.cli.params import IDENT

if TYPE_CHECKING:
    from pipeline.settings import KafkaSettings

#: The catalogue names that may be replayed.
REPLAYABLE = ("changes.outlook", "changes.crm", "crm.raw", "graph.notifications")


def parse_from(text: str) -> tuple[int | None, int | None]:
    """``(offset, None)`` for a whole number, ``(None, epoch ms)`` for an ISO time with a
    zone; ValueError otherwise."""
    if text.isdigit():
        return int(text), None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"expected an offset or a time like 2030-01-01T09:00:00Z, got {text!r}"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"the time needs a zone (Z or +01:00), got {text!r}")
    if moment > datetime.now(UTC):
        raise ValueError(f"the time {text!r} is in the future")
    return None, int(moment.timestamp() * 1000)


@click.command(name="replay")
@click.option("--topic", required=True, type=click.Choice(REPLAYABLE), help="topic to replay")
@click.option("--from", "start", required=True, help="offset (per partition) or ISO time")
@click.option("--mailbox", "mailboxes", multiple=True, type=IDENT, help="only this mailbox")
@click.option("--dry-run", is_flag=True, help="count, send nothing")
@kafka_options
@json_option
def replay(
    topic: str,
    start: str,
    mailboxes: tuple[str, ...],
    dry_run: bool,
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """Publish a topic's records again from an offset or a time, so they are consumed again."""
    try:
        offset, at_ms = parse_from(start)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if mailboxes and topic == "crm.raw":
        raise UsageError("crm.raw is keyed by CRM record, not mailbox: --mailbox does not apply")
    kafka = kafka_settings(bootstrap, topic_prefix)
    wanted = {m.encode() for m in mailboxes}

    async def body() -> dict[str, object]:
        return await _replay(kafka, topic, offset, at_ms, wanted, dry_run, timeout, as_json)

    data = run_kafka(kafka, body)
    verb = "would replay" if dry_run else "replayed"
    emit(
        as_json,
        data,
        [f"{verb} {data['replayed']} record(s) of {data['topic']}, skipped {data['skipped']}"],
    )
    return 0


async def _replay(
    kafka: KafkaSettings,
    spec: str,
    offset: int | None,
    at_ms: int | None,
    wanted: set[bytes],
    dry_run: bool,
    timeout_s: float,
    quiet: bool,
) -> dict[str, object]:
    from aiokafka import TopicPartition

    from pipeline.cli.clients import consumer, producer
    from pipeline.cli.topic_read import read_to_end
    from pipeline.dlq import topic_partitions
    from pipeline.stages.guard import CONTROL_HEADER
    from pipeline.topics import ALL_TOPICS, topic_name

    name = topic_name(next(t for t in ALL_TOPICS if t.name == spec), kafka)
    parts = await topic_partitions(kafka, name)
    if offset is not None:
        start = dict.fromkeys(parts, offset)
    else:
        probe = consumer(kafka, enable_auto_commit=False)
        await probe.start()
        try:
            tps = [TopicPartition(name, p) for p in parts]
            found = await probe.offsets_for_times(dict.fromkeys(tps, at_ms))
            ends = await probe.end_offsets(tps)
        finally:
            await probe.stop()
        start = {tp.partition: (o.offset if o is not None else ends[tp]) for tp, o in found.items()}
    sender = None if dry_run else producer(kafka, acks="all", enable_idempotence=True)
    replayed = skipped = 0
    if sender is not None:
        await sender.start()
    try:
        async for rec in read_to_end(kafka, name, start=start, timeout_s=timeout_s):
            headers = dict(rec.headers or ())
            if CONTROL_HEADER in headers or (wanted and rec.key not in wanted):
                skipped += 1
                continue
            if sender is not None:
                await sender.send_and_wait(name, rec.value, key=rec.key)
            replayed += 1
            if not quiet and replayed % 1000 == 0:
                click.echo(f"... {replayed} replayed", err=True)
    finally:
        if sender is not None:
            await sender.stop()
    return {
        "topic": name,
        "from": {str(p): o for p, o in sorted(start.items())},
        "replayed": replayed,
        "skipped": skipped,
        "dry_run": dry_run,
    }
