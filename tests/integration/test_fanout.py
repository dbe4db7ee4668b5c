"""The fan-out stage on the real broker: crm.raw → changes.crm per mailbox, membership kept."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from pipeline.app import build_app
from pipeline.cli.topics import ensure_topics
from pipeline.settings import KafkaSettings, Settings
from pipeline.stages.fanout import StaticDirectory, fanout_stage
from pipeline.stages.publish import DLQ_ERROR, DLQ_TOPIC
from schemas.codec import dumps
from schemas.models import ItemChange, Mailbox
from tests.integration.tail import Tail

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

ALICE = "aaaaaaaa-1111-1111-1111-111111111111"
BOB = "bbbbbbbb-2222-2222-2222-222222222222"
REC = "dddddddd-4444-4444-4444-444444444444"
MAILBOXES = [
    Mailbox("mbx-a", "a@example.com", "org", ALICE, status="enabled"),
    Mailbox("mbx-b", "b@example.com", "org", BOB, status="enabled"),
]


def contact(owner: str, version: int) -> ItemChange:
    return ItemChange(
        change_id=f"crm:contact:{REC}:{version}",
        side="crm",
        org_id="org",
        kind="contact",
        op="upsert",
        item_id=REC,
        version=str(version),
        observed_at="2026-05-01T09:00:00Z",
        table="contact",
        projection={"lastname": "Lee"},
        attributes={"ownerid": owner, "ownerid_table": "systemuser", "statecode": 0},
        origin="change_tracking",
    )


async def test_reassigned_contact_moves_and_leaves_a_left_filter_copy(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:10]
    kafka = KafkaSettings(bootstrap=kafka_bootstrap, topic_prefix=f"fan.{run}.", partitions=2)
    await ensure_topics(kafka)
    settings = Settings(app_id=f"dynasync-fan-{run}", kafka=kafka, data_dir=tmp_path)
    app = build_app(settings, [fanout_stage(StaticDirectory(MAILBOXES))])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    await app.start()
    try:
        async with (
            Tail(kafka_bootstrap, f"fan.{run}.changes.crm") as out,
            Tail(kafka_bootstrap, f"fan.{run}.dlq") as dlq,
        ):
            raw = f"fan.{run}.crm.raw"
            await producer.send_and_wait(raw, b"{not json", key=REC.encode())
            await producer.send_and_wait(raw, dumps(contact(ALICE, 1)), key=REC.encode())
            await out.until(lambda rs: len(rs) >= 1)
            await producer.send_and_wait(raw, dumps(contact(BOB, 2)), key=REC.encode())
            records = await out.until(lambda rs: len(rs) >= 3)
            seen = [(r.key, orjson.loads(r.value)) for r in records]
            first_key, first = seen[0]
            assert first_key == b"mbx-a" and first["mailbox_id"] == "mbx-a"
            assert first["version"] == "1" and "left_filter" not in first["attributes"]
            later = {k: v for k, v in seen[1:]}
            assert set(later) == {b"mbx-a", b"mbx-b"} and len(seen) == 3
            assert later[b"mbx-a"]["attributes"]["left_filter"] is True
            assert later[b"mbx-a"]["version"] == "2"
            assert later[b"mbx-b"]["mailbox_id"] == "mbx-b"
            assert "left_filter" not in later[b"mbx-b"]["attributes"]

            (bad,) = await dlq.until(lambda rs: len(rs) >= 1)
            headers = dict(bad.headers)
            assert bad.value == b"{not json"
            assert headers[DLQ_TOPIC] == raw.encode() and b"SchemaError" in headers[DLQ_ERROR]
        await app.stop()

        # the membership survives a restart: a delete goes to B only, who holds the record
        app = build_app(settings, [fanout_stage(StaticDirectory(MAILBOXES))])
        await app.start()
        async with Tail(kafka_bootstrap, f"fan.{run}.changes.crm") as out:
            gone = replace(contact(BOB, 3), op="delete", version="", attributes={})
            await producer.send_and_wait(raw, dumps(gone), key=REC.encode())
            records = await out.until(lambda rs: len(rs) >= 4)
            await asyncio.sleep(1)
            records = await out.until(lambda rs: len(rs) >= 4)
            assert len(records) == 4
            assert records[3].key == b"mbx-b"
            assert orjson.loads(records[3].value)["op"] == "delete"
    finally:
        await app.stop()
        await producer.stop()
