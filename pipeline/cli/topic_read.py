"""Reading a whole topic, or each partition from a given offset, up to the end offsets it had
when reading began (records written later are not waited for). Shared by ``conflicts`` and
``replay``; its consumer comes from :mod:`pipeline.cli.clients`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.settings import KafkaSettings


async def read_to_end(
    kafka: KafkaSettings,
    name: str,
    *,
    start: Mapping[int, int] | None = None,
    timeout_s: float = 30.0,
) -> AsyncIterator[Any]:
    """The records of ``name`` (aiokafka ``ConsumerRecord``s), each partition from offset
    ``start[p]`` (default: its beginning) to its end offset at the start of the read."""
    from aiokafka import TopicPartition

    from pipeline.cli.clients import consumer
    from pipeline.dlq import topic_partitions

    parts = await topic_partitions(kafka, name)
    reader = consumer(kafka, enable_auto_commit=False, auto_offset_reset="earliest")
    await reader.start()
    try:
        tps = [TopicPartition(name, p) for p in parts]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        firsts = await reader.beginning_offsets(tps)
        ends = await reader.end_offsets(tps)
        for tp in tps:
            if start is not None and tp.partition in start:
                reader.seek(tp, max(start[tp.partition], firsts[tp]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        pending = {tp for tp in tps if ends[tp] > await reader.position(tp)}
        while pending:
            if loop.time() > deadline:
                raise TimeoutError(f"timed out reading {name}")
            batch = await reader.getmany(*pending, timeout_ms=500)
            for tp, records in batch.items():
                for rec in records:
                    if rec.offset < ends[tp]:
                        yield rec
            for tp in list(pending):
                if await reader.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await reader.stop()
