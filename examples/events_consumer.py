"""A consumer of Dynasync's public change feed (``events.v1``), written from the published
schema only: it imports nothing of Dynasync.

Each record is a CloudEvent in Kafka binary mode (``ce_*`` headers, JSON data as the value),
read with the ``cloudevents`` SDK's Kafka binding. Its ``ce_dataschema`` header is the ``$id``
of a JSON Schema file shipped in ``schemas/json/`` of the Dynasync release; the consumer looks
it up in a local copy of that directory (nothing is fetched) and validates ``data`` against it.
Dynasync sends every event at least once, with a stable ``ce_id``: the consumer handles an id
once and skips its repeats.

    python examples/events_consumer.py --bootstrap 127.0.0.1:9092 --topic events.v1 \
        --group my-feed-reader --schemas schemas/json
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat
from jsonschema import Draft202012Validator

#: The event types this consumer knows; others are skipped (new types may appear in events.v1).
KNOWN_TYPES = frozenset(
    {
        "com.dynasync.item.synced.v1",
        "com.dynasync.item.deleted.v1",
        "com.dynasync.item.unlinked.v1",
        "com.dynasync.conflict.recorded.v1",
    }
)


class UnknownSchemaError(LookupError):
    """A record names a data schema that is not in the local copy (update it)."""


class Schemas:
    """The published JSON Schemas of a directory, by their ``$id``."""

    def __init__(self, directory: Path) -> None:
        self._by_id: dict[str, Draft202012Validator] = {}
        for path in sorted(directory.glob("*.schema.json")):
            doc = json.loads(path.read_text("utf-8"))
            Draft202012Validator.check_schema(doc)
            checker = Draft202012Validator.FORMAT_CHECKER
            self._by_id[doc["$id"]] = Draft202012Validator(doc, format_checker=checker)

    def validator(self, uri: str) -> Draft202012Validator:
        """The validator of the schema whose ``$id`` is ``uri``."""
        try:
            return self._by_id[uri]
        except KeyError:
            raise UnknownSchemaError(f"no schema {uri!r} in the local copy") from None


class SeenIds:
    """The last ``size`` event ids handled (repeats follow their first copy closely: they come
    from a worker that restarted before its offsets were committed)."""

    def __init__(self, size: int = 100_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def first_time(self, event_id: str) -> bool:
        """Whether ``event_id`` is new (it is remembered from now on)."""
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return False
        self._ids[event_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return True


@dataclass
class Counts:
    """What the consumer did with the records it read."""

    handled: int = 0
    repeats: int = 0
    unknown_types: int = 0


def to_event(record: ConsumerRecord[bytes, bytes]) -> BaseCloudEvent:
    """The CloudEvent of one binary-mode Kafka record."""
    headers = {name: bytes(value) for name, value in record.headers or () if value is not None}
    message = KafkaMessage(headers=headers, key=record.key, value=record.value or b"")
    return from_binary(message, JSONFormat())


def check_data(event: BaseCloudEvent, schemas: Schemas) -> dict[str, Any]:
    """``event``'s data, validated against the schema its ``ce_dataschema`` names."""
    uri = event.get_dataschema()
    if uri is None:
        raise UnknownSchemaError(f"event {event.get_id()} names no data schema")
    data = event.get_data()
    schemas.validator(uri).validate(data)
    if not isinstance(data, dict):
        raise TypeError(f"event {event.get_id()}: data is not a JSON object")
    return data


Handler = Callable[[BaseCloudEvent, dict[str, Any]], Awaitable[None]]


async def handle_records(
    records: Iterable[ConsumerRecord[bytes, bytes]],
    schemas: Schemas,
    seen: SeenIds,
    handle: Handler,
    counts: Counts,
) -> None:
    """Handle each new event of ``records`` once, in order; skip repeats and unknown types."""
    for record in records:
        event = to_event(record)
        if event.get_type() not in KNOWN_TYPES:
            counts.unknown_types += 1
            continue
        if not seen.first_time(event.get_id()):
            counts.repeats += 1
            continue
        await handle(event, check_data(event, schemas))
        counts.handled += 1


async def consume(
    bootstrap: str,
    topic: str,
    group: str,
    schemas: Schemas,
    handle: Handler,
    *,
    stop: asyncio.Event,
    counts: Counts | None = None,
) -> Counts:
    """Read ``topic`` in consumer group ``group`` until ``stop`` is set, committing after each
    batch is handled (a crash repeats a batch at most: the ids dedupe it)."""
    counts = counts or Counts()
    seen = SeenIds()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                await handle_records(records, schemas, seen, handle, counts)
            if batch:
                await consumer.commit()
    finally:
        await consumer.stop()
    return counts


async def _print(event: BaseCloudEvent, data: dict[str, Any]) -> None:
    print(event.get_id(), event.get_type(), data["kind"], data["op"], data["correlation_id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="events.v1")
    parser.add_argument("--group", default="events-consumer-example")
    parser.add_argument("--schemas", type=Path, default=Path("schemas/json"))
    args = parser.parse_args()
    schemas = Schemas(args.schemas)
    stop = asyncio.Event()
    asyncio.run(consume(args.bootstrap, args.topic, args.group, schemas, _print, stop=stop))


if __name__ == "__main__":
    main()
