"""Reading what the workers say of the mailboxes: the ``mailbox.status`` records
(:class:`schemas.models.MailboxHealth`) and the backlog of a mailbox's partition (consumer-group
lag of the engine and both writers), for ``dynasync mailbox status``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from connectors.kafka_clients import KafkaClients, stop_consumer
from pipeline.dlq import topic_partitions
from pipeline.ownership import partition_of
from pipeline.settings import KafkaSettings
from pipeline.topics import (
    CHANGES_CRM,
    CHANGES_OUTLOOK,
    COMMANDS_CRM,
    COMMANDS_OUTLOOK,
    MAILBOX_STATUS,
    OUTCOMES,
    TopicSpec,
    topic_name,
)
from schemas import codec
from schemas.errors import SchemaError
from schemas.models import MailboxHealth

#: The consumer groups whose lag is a mailbox's backlog, with the topics each reads.
BACKLOG_GROUPS: tuple[tuple[str, tuple[TopicSpec, ...]], ...] = (
    ("engine", (CHANGES_OUTLOOK, CHANGES_CRM, OUTCOMES)),
    ("writers-crm", (COMMANDS_CRM,)),
    ("writers-outlook", (COMMANDS_OUTLOOK,)),
)


@dataclass(frozen=True, slots=True)
class StatusRecords:
    """The latest record of each mailbox on ``mailbox.status``."""

    records: dict[str, MailboxHealth] = field(default_factory=dict)
    unreadable: int = 0
    """Records that are not a valid MailboxHealth (skipped, counted)."""


def parse_health(key: bytes | None, value: bytes | None) -> MailboxHealth | None:
    """A status record from Kafka, validated (None: a tombstone); :class:`SchemaError` if it
    is not one, or if its key is not its mailbox."""
    if value is None:
        return None
    record = codec.loads(MailboxHealth, value)
    if key is not None and key.decode("utf-8", "replace") != record.mailbox_id:
        raise SchemaError("MailboxHealth", "mailbox_id", "differs from the record's key")
    return record


async def read_status(kafka: KafkaSettings, *, timeout_s: float = 30.0) -> StatusRecords:
    """Read ``mailbox.status`` from the start to its end now (LookupError: no such topic)."""
    name = topic_name(MAILBOX_STATUS, kafka)
    consumer = KafkaClients(kafka).consumer(enable_auto_commit=False)
    records: dict[str, MailboxHealth] = {}
    unreadable = 0
    tps = [TopicPartition(name, p) for p in await topic_partitions(kafka, name)]
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        pending = {tp for tp in tps if ends[tp] > await consumer.position(tp)}
        while pending:
            if loop.time() > deadline:
                raise TimeoutError(f"timed out reading {name}")
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for tp, got in batch.items():
                for rec in got:
                    if rec.offset >= ends[tp]:
                        continue
                    key = rec.key.decode("utf-8", "replace") if rec.key is not None else None
                    try:
                        record = parse_health(rec.key, rec.value)
                    except SchemaError:
                        unreadable += 1
                        continue
                    if record is not None:
                        records[record.mailbox_id] = record
                    elif key is not None:
                        records.pop(key, None)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await stop_consumer(consumer)
    return StatusRecords(records, unreadable)


async def backlog(kafka: KafkaSettings, app_id: str) -> tuple[int, dict[int, dict[str, int]]]:
    """The partition count of the mailbox topics, and per partition the records not yet
    processed per stage (``engine``, ``writers-crm``, ``writers-outlook``): the end offset
    minus the group's committed one (a group that never committed counts from the earliest
    offset). A partition is shared by the mailboxes hashed to it (:func:`partition_of`)."""
    clients = KafkaClients(kafka)
    count = len(await topic_partitions(kafka, topic_name(COMMANDS_CRM, kafka)))
    admin = clients.admin()
    consumer = clients.consumer(enable_auto_commit=False)
    out: dict[int, dict[str, int]] = {p: {} for p in range(count)}
    await admin.start()
    try:
        await consumer.start()
        for stage, specs in BACKLOG_GROUPS:
            tps = [TopicPartition(topic_name(s, kafka), p) for s in specs for p in range(count)]
            committed = await admin.list_consumer_group_offsets(f"{app_id}-{stage}", partitions=tps)
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            for tp in tps:
                meta = committed.get(tp)
                done = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
                behind = out[tp.partition]
                behind[stage] = behind.get(stage, 0) + max(0, ends[tp] - done)
    finally:
        await stop_consumer(consumer)
        await admin.close()
    return count, out


def mailbox_partition(mailbox_id: str, partitions: int) -> int:
    """The partition of the mailbox topics ``mailbox_id`` lives in."""
    return partition_of(mailbox_id, partitions)
