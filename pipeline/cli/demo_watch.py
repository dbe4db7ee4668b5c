"""Watch the ``cursors`` topic until the running pipeline has picked up the demo mailboxes,
and the ``conflicts`` topic for the conflict the demo provokes.

A mailbox's Outlook reader stores a delta cursor (key ``delta:graph:<mailbox_id>:<stream>``)
after its first pass; by then the pipeline runs on a configuration that holds the mailbox, so
CRM changes made from then on are fanned out to it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from connectors.kafka_clients import stop_consumer
from pipeline.cli.clients import consumer as kafka_consumer
from pipeline.settings import KafkaSettings
from pipeline.topics import CONFLICTS, CURSORS, topic_name

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer

    from pipeline.web.feed import ConflictView


def _from_start(kafka: KafkaSettings, topic: str) -> AIOKafkaConsumer:
    """A group-less consumer of ``topic`` from its beginning (not started)."""
    return kafka_consumer(
        kafka,
        topic,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="dynasync-demo-watch",
    )


async def wait_for_readers(
    kafka: KafkaSettings, mailbox_ids: list[str], timeout_s: float
) -> dict[str, float]:
    """Seconds until each mailbox's first Outlook cursor was seen (missing: not within
    ``timeout_s``)."""
    topic = topic_name(CURSORS, kafka)
    prefixes = {m: f"delta:graph:{m}:".encode() for m in mailbox_ids}
    seen: dict[str, float] = {}
    start = time.monotonic()
    consumer = _from_start(kafka, topic)
    try:
        await consumer.start()
        while len(seen) < len(prefixes) and time.monotonic() - start <= timeout_s:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for rec in records:
                    for mailbox, prefix in prefixes.items():
                        if mailbox not in seen and rec.key and rec.key.startswith(prefix):
                            seen[mailbox] = time.monotonic() - start
    finally:
        await stop_consumer(consumer)
    return seen


async def find_conflict(
    kafka: KafkaSettings, mailbox_id: str, field: str, since_ms: int, timeout_s: float
) -> ConflictView | None:
    """The first conflict the engine recorded on ``conflicts`` for ``mailbox_id``'s ``field``
    at or after ``since_ms`` (record time), or None if none within ``timeout_s``."""
    from pipeline.web.feed import parse_conflict

    topic = topic_name(CONFLICTS, kafka)
    start = time.monotonic()
    consumer = _from_start(kafka, topic)
    try:
        await consumer.start()
        while time.monotonic() - start <= timeout_s:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for rec in records:
                    if rec.timestamp < since_ms:
                        continue
                    found = parse_conflict(rec.value)
                    if found and (found.mailbox_id, found.field) == (mailbox_id, field):
                        return found
    finally:
        await stop_consumer(consumer)
    return None
