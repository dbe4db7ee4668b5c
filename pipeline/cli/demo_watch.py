"""Watch the ``cursors`` topic until the running pipeline has picked up the demo mailboxes.

A mailbox's Outlook reader stores a delta cursor (key ``delta:graph:<mailbox_id>:<stream>``)
after its first pass; by then the pipeline runs on a configuration that holds the mailbox, so
CRM changes made from then on are fanned out to it.
"""

from __future__ import annotations

import time

from pipeline.cli.clients import consumer as kafka_consumer
from pipeline.settings import KafkaSettings
from pipeline.topics import CURSORS, topic_name


async def wait_for_readers(
    kafka: KafkaSettings, mailbox_ids: list[str], timeout_s: float
) -> dict[str, float]:
    """Seconds until each mailbox's first Outlook cursor was seen (missing: not within
    ``timeout_s``)."""
    topic = topic_name(CURSORS, kafka)
    prefixes = {m: f"delta:graph:{m}:".encode() for m in mailbox_ids}
    seen: dict[str, float] = {}
    start = time.monotonic()
    consumer = kafka_consumer(
        kafka,
        topic,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="dynasync-demo-watch",
    )
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
        await consumer.stop()
    return seen
