"""Reading and replaying ``dlq``: records the pipeline could not handle, with why and where
they came from (headers written by :mod:`pipeline.stages.publish`).

``replay`` sends matching records back to their original topic, in the order they were
parked per dlq partition, and commits how far it got in the consumer group
``<app_id>-dlq-replay``, so a second replay continues after the first. Records parked by a
mass-delete pause (reason ``paused``) are replayed by ``dynasync mailbox resume`` instead, and
alerts carry no record at all; neither is replayable here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from connectors.kafka_clients import KafkaClients, KafkaConnection, stop_consumer
from pipeline.settings import KafkaSettings
from pipeline.stages.publish import DLQ_ERROR, DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC
from pipeline.topics import (
    CHANGES_CRM,
    CHANGES_OUTLOOK,
    COMMANDS_CRM,
    COMMANDS_OUTLOOK,
    CRM_RAW,
    DLQ,
    GRAPH_NOTIFICATIONS,
    OUTCOMES,
    topic_name,
)

#: Reasons ``replay`` takes by default.
REPLAYABLE_REASONS = frozenset({"poison", "refused"})
#: Catalogue topics a parked record may go back to.
_INPUTS = (
    GRAPH_NOTIFICATIONS,
    CRM_RAW,
    CHANGES_OUTLOOK,
    CHANGES_CRM,
    COMMANDS_CRM,
    COMMANDS_OUTLOOK,
    OUTCOMES,
)


@dataclass(frozen=True, slots=True)
class DlqRecord:
    """One parked record and what its headers say."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    reason: str
    error: str
    origin_topic: str
    origin_partition: int | None
    origin_offset: int | None
    headers: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)

    @property
    def mailbox_id(self) -> str:
        return (self.key or b"").decode(errors="replace")

    def summary(self) -> dict[str, object]:
        """A JSON-friendly description (values are not included)."""
        return {
            "dlq": f"{self.partition}:{self.offset}",
            "mailbox_id": self.mailbox_id,
            "reason": self.reason,
            "error": self.error,
            "origin": f"{self.origin_topic}:{self.origin_partition}:{self.origin_offset}",
            "bytes": len(self.value),
        }


def _int(raw: bytes | None) -> int | None:
    try:
        return int(raw.decode()) if raw else None
    except ValueError:
        return None


def parse_record(
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] | None,
) -> DlqRecord:
    """A dlq record from what the consumer returned (tolerant: dlq holds what failed)."""
    pairs = tuple((str(k), bytes(v or b"")) for k, v in (headers or ()))
    found = dict(pairs)
    return DlqRecord(
        partition=partition,
        offset=offset,
        key=key,
        value=value or b"",
        reason=found.get(DLQ_REASON, b"").decode(errors="replace") or "unknown",
        error=found.get(DLQ_ERROR, b"").decode(errors="replace"),
        origin_topic=found.get(DLQ_TOPIC, b"").decode(errors="replace"),
        origin_partition=_int(found.get(DLQ_PARTITION)),
        origin_offset=_int(found.get(DLQ_OFFSET)),
        headers=pairs,
    )


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dlq records an operator means (empty sets: any)."""

    reasons: frozenset[str] = frozenset()
    mailboxes: frozenset[str] = frozenset()

    def __call__(self, record: DlqRecord) -> bool:
        return (not self.reasons or record.reason in self.reasons) and (
            not self.mailboxes or record.mailbox_id in self.mailboxes
        )


def group_id(app_id: str) -> str:
    """The consumer group remembering how far ``replay`` got."""
    return f"{app_id}-dlq-replay"


async def topic_partitions(kafka: KafkaConnection | str, name: str) -> list[int]:
    """The partition numbers of topic ``name`` (LookupError if it does not exist)."""
    admin = KafkaClients(kafka).admin()
    try:
        await admin.start()
        (meta,) = await admin.describe_topics([name])
    finally:
        await admin.close()
    if meta.get("error_code", 0) != 0 or not meta.get("partitions"):
        raise LookupError(f"topic {name} does not exist (run `dynasync topics create`)")
    return sorted(int(p["partition"]) for p in meta["partitions"])


async def _scan(
    consumer: AIOKafkaConsumer, kafka: KafkaSettings, name: str, *, resume: bool, timeout_s: float
) -> tuple[list[DlqRecord], dict[TopicPartition, int]]:
    parts = await topic_partitions(kafka, name)
    tps = [TopicPartition(name, p) for p in sorted(parts)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    if resume:
        for tp in tps:
            committed = await consumer.committed(tp)
            if committed is not None:
                consumer.seek(tp, committed)
    ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    out: list[DlqRecord] = []
    pending = {tp for tp in tps if ends[tp] > await consumer.position(tp)}
    while pending:
        if loop.time() > deadline:
            raise TimeoutError(f"timed out reading {name}")
        batch = await consumer.getmany(*pending, timeout_ms=500)
        for tp, records in batch.items():
            for rec in records:
                if rec.offset < ends[tp]:
                    out.append(
                        parse_record(tp.partition, rec.offset, rec.key, rec.value, rec.headers)
                    )
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
    return out, ends


async def list_dlq(
    kafka: KafkaSettings, select: Selection, *, timeout_s: float = 30.0
) -> list[DlqRecord]:
    """Every dlq record ``select`` takes, oldest first per partition."""
    consumer = KafkaClients(kafka).consumer(enable_auto_commit=False)
    try:
        await consumer.start()
        records, _ = await _scan(
            consumer, kafka, topic_name(DLQ, kafka), resume=False, timeout_s=timeout_s
        )
    finally:
        await stop_consumer(consumer)
    return [r for r in records if select(r)]


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What ``replay`` did."""

    replayed: list[DlqRecord]
    skipped: list[tuple[DlqRecord, str]]


async def replay(
    kafka: KafkaSettings,
    app_id: str,
    select: Selection,
    *,
    dry_run: bool = False,
    timeout_s: float = 30.0,
    on_record: Callable[[DlqRecord], None] | None = None,
) -> ReplayReport:
    """Send the selected records not replayed before back to their original topics."""
    inputs = {topic_name(spec, kafka) for spec in _INPUTS}
    if not select.reasons:
        select = Selection(REPLAYABLE_REASONS, select.mailboxes)
    clients = KafkaClients(kafka)
    consumer = clients.consumer(group_id=group_id(app_id), enable_auto_commit=False)
    producer = clients.producer(acks="all", enable_idempotence=True)
    replayed: list[DlqRecord] = []
    skipped: list[tuple[DlqRecord, str]] = []
    try:
        await consumer.start()
        await producer.start()
        records, ends = await _scan(
            consumer, kafka, topic_name(DLQ, kafka), resume=True, timeout_s=timeout_s
        )
        for record in records:
            if not select(record):
                continue
            if record.reason in ("paused", "alert"):
                skipped.append((record, f"reason {record.reason} is not replayed here"))
                continue
            if record.origin_topic not in inputs:
                skipped.append(
                    (record, f"origin topic {record.origin_topic!r} is not a pipeline input")
                )
                continue
            if not dry_run:
                await producer.send_and_wait(record.origin_topic, record.value, key=record.key)
            replayed.append(record)
            if on_record is not None:
                on_record(record)
        if not dry_run:
            await consumer.commit({tp: OffsetAndMetadata(end, "") for tp, end in ends.items()})
    finally:
        await producer.stop()
        await stop_consumer(consumer)
    return ReplayReport(replayed, skipped)
