"""The example feed consumer (``examples/events_consumer.py``) over the ``events.v1`` records of
a real sync (both emulators, the whole pipeline, the real broker): every record is read with
the ``cloudevents`` Kafka binding, its data validates against the published schema its
``ce_dataschema`` names, and a record sent twice is handled once."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from cloudevents.core.base import BaseCloudEvent

from examples import events_consumer
from examples.events_consumer import Counts, Schemas, consume
from pipeline.topics import EVENTS_V1, topic_name
from tests.e2e.world import World, crm_contact_in_outlook, eventually

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "json"


def test_the_example_imports_nothing_of_dynasync() -> None:
    tree = ast.parse(Path(events_consumer.__file__).read_text("utf-8"))
    modules = {
        name.split(".")[0]
        for node in ast.walk(tree)
        for name in (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
    }
    assert modules, "no imports parsed"
    assert not modules & {"schemas", "connectors", "pipeline", "emulators", "tests", "bench"}


async def _copy_first_record(bootstrap: str, topic: str) -> str:
    """Send the topic's first record again, as a restarted engine would; its ce_id."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 10)
        headers: list[tuple[str, bytes]] = [(k, bytes(v)) for k, v in record.headers]
        await producer.send_and_wait(
            topic, record.value, key=record.key, partition=record.partition, headers=headers
        )
        ce_id: bytes = dict(headers)["ce_id"]
        return ce_id.decode()
    finally:
        await producer.stop()
        await consumer.stop()


async def test_example_consumer_reads_a_real_sync(world: World) -> None:
    w = world
    bootstrap = w.settings.kafka.bootstrap
    topic = topic_name(EVENTS_V1, w.settings.kafka)
    last = f"Feed{uuid.uuid4().hex[:6]}"
    async with w.pipeline():
        row_id, contact, _ = await crm_contact_in_outlook(w, "Fay", last, "fay@x.test", 90)
        resp = await w.outlook("PATCH", f"contacts/{contact['id']}", {"givenName": "Faye"})
        assert resp.status_code == 200, resp.text

        async def crm_updated() -> bool | None:
            row = await w.crm_contact(row_id)
            return True if row.get("firstname") == "Faye" else None

        await eventually(crm_updated, 60, "Outlook edit in the CRM")

        # the pipeline goes on: the CRM write's outcome may not have reached the engine yet
        repeated = await _copy_first_record(bootstrap, topic)
        handled: list[tuple[BaseCloudEvent, dict[str, Any]]] = []

        async def keep(event: BaseCloudEvent, data: dict[str, Any]) -> None:
            handled.append((event, data))

        stop = asyncio.Event()
        counts = Counts()
        reading = asyncio.create_task(
            consume(
                bootstrap,
                topic,
                f"example-{uuid.uuid4().hex[:6]}",
                Schemas(SCHEMAS),
                keep,
                stop=stop,
                counts=counts,
            )
        )
        try:

            async def both_directions() -> bool | None:
                origins = {
                    d["origin_side"]
                    for e, d in handled
                    if e.get_type() == "com.dynasync.item.synced.v1" and d["kind"] == "contact"
                }
                return True if origins >= {"crm", "outlook"} and counts.repeats else None

            try:
                await eventually(
                    both_directions, 30, "synced events of both directions, the repeat"
                )
            except AssertionError as exc:
                got = [(e.get_type(), d["kind"], d["origin_side"]) for e, d in handled]
                raise AssertionError(f"{exc}; {counts}, handled {got}") from None
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
    ids = [e.get_id() for e, _ in handled]
    assert len(ids) == len(set(ids)), "an event was handled twice"
    assert repeated in ids and counts.repeats == 1
    assert counts.unknown_types == 0
    mine = [d for _, d in handled if d["mailbox_id"] == w.mailbox_id]
    assert len(mine) == len(handled)
    outlook_bound = next(d for e, d in handled if d["origin_side"] == "crm")
    assert outlook_bound["crm_id"] == row_id and outlook_bound["outlook_id"] == contact["id"]
    crm_bound = [d for d in mine if d["origin_side"] == "outlook"]
    assert any(d["fields"].get("firstname") == "Faye" for d in crm_bound)
    for event, _ in handled:
        assert event.get_dataschema() == (
            "https://dynasync.dev/schemas/change_event_data.r1.schema.json"
        )
        assert event.get_datacontenttype() == "application/json"
        assert event.get_extension("partitionkey") == w.mailbox_id
