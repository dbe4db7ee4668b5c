"""The reference: a raw aiokafka consume → produce pass-through with manual commits."""

from __future__ import annotations

import asyncio
import time

from connectors.kafka_clients import KafkaClients


async def passthrough(
    bootstrap: str, source: str, sink: str, expected: int, group: str, within_s: float
) -> float:
    """Copy ``expected`` records ``source`` → ``sink`` in a consumer group: each fetched batch
    is produced (acks=all), its acks awaited, then its offsets committed. Returns records/s from
    the first fetched batch to the last commit."""
    clients = KafkaClients(bootstrap)
    consumer = clients.consumer(
        source,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = clients.producer(acks="all")
    await consumer.start()
    await producer.start()
    try:
        done = 0
        first: float | None = None
        deadline = time.monotonic() + within_s
        while done < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"pass-through copied {done} of {expected} in {within_s:.0f} s")
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            if not batch:
                continue
            if first is None:
                first = time.perf_counter()
            acks = [
                await producer.send(sink, record.value, key=record.key)
                for records in batch.values()
                for record in records
            ]
            await asyncio.gather(*acks)
            await consumer.commit()
            done += len(acks)
        assert first is not None
        return done / (time.perf_counter() - first)
    finally:
        await producer.stop()
        await consumer.stop()
