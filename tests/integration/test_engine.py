"""The engine and writer stages on the real broker, with in-memory sides as the writers' backend."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from connectors.base import CommandSink
from connectors.errors import TransientError
from connectors.memory import MemoryItem, MemorySide, MemorySink
from pipeline.app import App, build_app
from pipeline.cli.topics import ensure_topics
from pipeline.ownership import MailboxOwnership, partition_of
from pipeline.plan import MailboxRules
from pipeline.settings import KafkaSettings, Settings
from pipeline.stages.engine import StaticRules, engine_stage
from pipeline.stages.guard import PAUSE_HEADER, GuardPolicy, resume_mailbox
from pipeline.stages.publish import DLQ_ERROR, DLQ_OFFSET, DLQ_REASON, DLQ_TOPIC
from pipeline.stages.retry import WritePolicy
from pipeline.stages.writers import writers_stage
from schemas.codec import dumps
from schemas.models import ItemChange, WriteCommand, WriteOutcome
from schemas.types import Side
from tests.integration.tail import Tail

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

USER = "11111111-2222-3333-4444-555555555555"
MBX = "mbx-1"


@dataclass
class Rig:
    bootstrap: str
    kafka: KafkaSettings
    settings: Settings
    outlook: MemorySide = field(default_factory=lambda: MemorySide("outlook"))
    crm: MemorySide = field(default_factory=lambda: MemorySide("crm"))
    producer: AIOKafkaProducer | None = None
    crm_online: bool = True
    forgotten: list[str] = field(default_factory=list)

    def name(self, topic: str) -> str:
        return f"{self.kafka.topic_prefix}{topic}"

    def sink(self, target: Side, org_id: str, mailbox_id: str) -> CommandSink:
        if target == "crm":
            return _Reachable(MemorySink(self.crm), lambda: self.crm_online)
        return _Remembering(MemorySink(self.outlook), self.forgotten)

    def app(self, guard: GuardPolicy | None = None) -> App:
        rules = StaticRules({MBX: MailboxRules(MBX, "org", USER)})
        policy = WritePolicy(first_s=0.05, cap_s=0.2)
        stages = [engine_stage(rules, guard=guard), writers_stage(self.sink, policy)]
        return build_app(self.settings, stages)

    async def send(self, topic: str, value: bytes, key: bytes = MBX.encode()) -> None:
        assert self.producer is not None
        await self.producer.send_and_wait(self.name(topic), value, key=key)

    async def change(self, side: Side, item: MemoryItem, **extra: Any) -> ItemChange:
        change = ItemChange(
            change_id=f"{side}:{item.item_id}:{item.version}",
            side=side,
            org_id="org",
            kind=item.kind,
            op="upsert",
            item_id=item.item_id,
            version=str(item.version),
            observed_at="2030-01-01T00:00:00Z",
            mailbox_id=MBX,
            correlation_id=item.correlation_id,
            projection=dict(item.projection),
            attributes={"tracked": True} if side == "outlook" else {},
            **extra,
        )
        await self.send(f"changes.{side}", dumps(change))
        return change


@dataclass
class _Reachable:
    """A sink that is offline (a transient error) while ``online()`` says so."""

    sink: CommandSink
    online: Callable[[], bool]

    async def apply(self, commands: Sequence[WriteCommand]) -> list[WriteOutcome]:
        if not self.online():
            raise TransientError("the CRM is offline")
        return await self.sink.apply(commands)


@dataclass
class _Remembering:
    """A sink with a per-mailbox memory (like the Graph writer's listings)."""

    sink: CommandSink
    forgotten: list[str]

    async def apply(self, commands: Sequence[WriteCommand]) -> list[WriteOutcome]:
        return await self.sink.apply(commands)

    def forget(self, mailbox_id: str) -> None:
        self.forgotten.append(mailbox_id)


@pytest.fixture
async def rig(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[Rig]:
    run = uuid.uuid4().hex[:10]
    kafka = KafkaSettings(bootstrap=kafka_bootstrap, topic_prefix=f"eng.{run}.", partitions=2)
    await ensure_topics(kafka)
    settings = Settings(app_id=f"dynasync-eng-{run}", kafka=kafka, data_dir=tmp_path)
    rig = Rig(kafka_bootstrap, kafka, settings)
    rig.producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await rig.producer.start()
    try:
        yield rig
    finally:
        await rig.producer.stop()


def values(records: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records]


async def test_round_trip_echo_dropped_and_order_kept(rig: Rig) -> None:
    app = rig.app()
    await app.start()
    try:
        async with (
            Tail(rig.bootstrap, rig.name("commands.crm")) as to_crm,
            Tail(rig.bootstrap, rig.name("commands.outlook")) as to_outlook,
            Tail(rig.bootstrap, rig.name("events.v1")) as events,
        ):
            item = rig.outlook.put("contact", {"firstname": "Ann", "lastname": "Lee"})
            await rig.change("outlook", item)
            await events.until(lambda rs: len(rs) >= 1)
            (created,) = rig.crm.items.values()
            assert created.projection == {"firstname": "Ann", "lastname": "Lee"}
            (cmd,) = values(await to_crm.until(lambda rs: len(rs) >= 1))
            assert cmd["action"] == "create" and cmd["run_as"] == USER
            assert dict(events.records[0].headers)["ce_type"] == b"com.dynasync.item.synced.v1"

            await rig.change("crm", created)  # the echo of our own write
            await to_outlook.quiet(3)
            assert to_outlook.records == []

            for i in range(5):  # per-mailbox order: five quick edits arrive in order
                item = rig.outlook.put("contact", {"firstname": f"Ann{i}"}, item_id=item.item_id)
                await rig.change("outlook", item)
            # one write in flight per item: later edits coalesce, in order, ending with the last
            await to_crm.until(lambda rs: values(rs)[-1]["fields"].get("firstname") == "Ann4")
            sent = [u["fields"]["firstname"] for u in values(to_crm.records)[1:]]
            assert sent == sorted(sent) and sent[0] == "Ann0" and len(set(sent)) == len(sent)
            await events.until(lambda rs: len(rs) >= 1 + len(sent))
            assert rig.crm.items[created.item_id].projection["firstname"] == "Ann4"
            assert len(rig.crm.items) == 1

            edited = rig.crm.put("contact", {"lastname": "Leigh"}, item_id=created.item_id)
            await rig.change("crm", edited)
            await to_outlook.until(lambda rs: len(rs) >= 1)
            (back,) = values(to_outlook.records)
            assert back["fields"] == {"lastname": "Leigh"} and back["target_id"] == item.item_id
    finally:
        await app.stop()


async def test_one_side_offline_does_not_hold_up_writes_to_the_other(rig: Rig) -> None:
    rig.crm_online = False
    app = rig.app()
    await app.start()
    try:
        async with Tail(rig.bootstrap, rig.name("events.v1")) as events:
            waiting = rig.outlook.put("contact", {"firstname": "Wai", "lastname": "Ting"})
            await rig.change("outlook", waiting)  # its CRM write fails while the CRM is offline
            await asyncio.sleep(1)
            flowing = rig.crm.put("contact", {"firstname": "Flo", "lastname": "Wing"})
            await rig.change("crm", flowing)
            await events.until(lambda rs: len(rs) >= 1, within=30)
            assert [i.projection["lastname"] for i in rig.outlook.items.values()] == [
                "Ting",
                "Wing",
            ]
            assert [i.projection["lastname"] for i in rig.crm.items.values()] == ["Wing"]
            rig.crm_online = True
            await events.until(lambda rs: len(rs) >= 2, within=30)
            assert sorted(i.projection["lastname"] for i in rig.crm.items.values()) == [
                "Ting",
                "Wing",
            ]
    finally:
        await app.stop()


async def test_poison_goes_to_dlq_and_processing_continues(rig: Rig) -> None:
    app = rig.app()
    await app.start()
    try:
        async with (
            Tail(rig.bootstrap, rig.name("dlq")) as dlq,
            Tail(rig.bootstrap, rig.name("commands.crm")) as to_crm,
        ):
            await rig.send("changes.outlook", b"{not json")
            await rig.send("changes.outlook", dumps({"side": "outlook"}))
            item = rig.outlook.put("contact", {"firstname": "Bo"})
            await rig.change("outlook", item)
            await dlq.until(lambda rs: len(rs) >= 2)
            await to_crm.until(lambda rs: len(rs) >= 1)
            first = dlq.records[0]
            headers = dict(first.headers)
            assert first.value == b"{not json"
            assert headers[DLQ_TOPIC] == rig.name("changes.outlook").encode()
            assert headers[DLQ_OFFSET] == b"0"
            assert b"SchemaError" in headers[DLQ_ERROR]
            assert values(to_crm.records)[0]["fields"] == {"firstname": "Bo"}
    finally:
        await app.stop()


async def test_a_writer_letting_go_of_its_partitions_makes_the_sinks_forget(rig: Rig) -> None:
    """What a sink learnt of a mailbox holds only while this worker writes it: when the writer
    lets its partitions go (here: a stop), the mailboxes it wrote are forgotten."""
    app = rig.app()
    await app.start()
    try:
        async with Tail(rig.bootstrap, rig.name("outcomes")) as outcomes:
            item = rig.crm.put("contact", {"firstname": "Flo"})
            await rig.change("crm", item)
            await outcomes.until(lambda rs: len(rs) >= 1)
            assert rig.forgotten == []
    finally:
        await app.stop()
    assert rig.forgotten == [MBX]


async def test_the_outlook_writers_assignment_decides_which_mailboxes_this_worker_owns(
    rig: Rig,
) -> None:
    """Ownership follows the Outlook writer's partitions: all of them for a lone worker once
    assigned, none (listeners awaited) once it lets go."""
    ownership = MailboxOwnership(rig.kafka.partitions)
    seen: list[frozenset[int]] = []

    async def listener(owned: frozenset[int]) -> None:
        seen.append(owned)

    ownership.listen(listener)
    app = build_app(rig.settings, [writers_stage(rig.sink, ownership=ownership)])
    await app.start()
    try:
        for _ in range(200):
            if ownership.owned:
                break
            await asyncio.sleep(0.05)
        assert ownership.owned == frozenset({0, 1})
        assert ownership.owns(MBX) and partition_of(MBX, 2) in ownership.owned
    finally:
        await app.stop()
    assert ownership.owned == frozenset() and not ownership.owns(MBX)
    assert seen[0] == frozenset({0, 1}) and seen[-1] == frozenset()


async def test_restart_loses_nothing(rig: Rig) -> None:
    app = rig.app()
    await app.start()
    async with Tail(rig.bootstrap, rig.name("events.v1")) as events:
        item = rig.outlook.put("contact", {"firstname": "Cy"})
        await rig.change("outlook", item)
        await events.until(lambda rs: len(rs) >= 1)
        await app.stop()

        # changes that arrive while no worker runs are applied by the next one
        item = rig.outlook.put("contact", {"firstname": "Cyd"}, item_id=item.item_id)
        await rig.change("outlook", item)
        app2 = rig.app()
        await app2.start()
        try:
            await events.until(lambda rs: len(rs) >= 2)
            # the event goes out when the change is planned; its write follows
            for _ in range(300):
                (crm_item,) = rig.crm.items.values()
                if crm_item.projection["firstname"] == "Cyd":
                    break
                await asyncio.sleep(0.05)
            assert crm_item.projection["firstname"] == "Cyd"
            assert crm_item.version == 2  # updated in place: the link state survived
        finally:
            await app2.stop()
    await asyncio.sleep(0)


async def test_mass_delete_pauses_parks_alerts_and_resume_replays(rig: Rig) -> None:
    app = rig.app(GuardPolicy(ratio=0.5, min_count=3, window_s=600))
    await app.start()
    try:
        async with (
            Tail(rig.bootstrap, rig.name("dlq")) as dlq,
            Tail(rig.bootstrap, rig.name("commands.outlook")) as to_outlook,
            Tail(rig.bootstrap, rig.name("events.v1")) as events,
        ):
            for i in range(4):
                await rig.change("outlook", rig.outlook.put("contact", {"firstname": f"P{i}"}))
            await events.until(lambda rs: len(rs) >= 4)
            crm_ids = sorted(rig.crm.items, key=lambda i: rig.crm.items[i].projection["firstname"])
            # a change of a mailbox without rules is refused onto dlq with the reason
            stray = rig.outlook.put("contact", {"firstname": "Stray"})
            stray_change = ItemChange(
                change_id="stray",
                side="outlook",
                org_id="org",
                kind="contact",
                op="upsert",
                item_id=stray.item_id,
                version="1",
                observed_at="2030-01-01T00:00:00Z",
                mailbox_id="mbx-unknown",
            )
            await rig.send("changes.outlook", dumps(stray_change), key=b"mbx-unknown")
            # three of four CRM contacts deleted: the third delete pauses the mailbox
            for crm_id in crm_ids[:3]:
                rig.crm.remove(crm_id)
                await rig.send("changes.crm", dumps(_delete(crm_id)))
            edited = rig.crm.put("contact", {"firstname": "P3x"}, item_id=crm_ids[3])
            await rig.change("crm", edited)

            def reasons(rs: list[Any]) -> list[bytes]:
                return [dict(r.headers).get(DLQ_REASON, b"") for r in rs]

            await dlq.until(lambda rs: reasons(rs).count(b"paused") >= 2)
            refused = next(r for r in dlq.records if dict(r.headers)[DLQ_REASON] == b"refused")
            assert b"mbx-unknown" in dict(refused.headers)[DLQ_ERROR]
            (alert,) = [r for r in dlq.records if dict(r.headers)[DLQ_REASON] == b"alert"]
            assert b"mass delete on crm" in dict(alert.headers)[DLQ_ERROR]
            parked = [r for r in dlq.records if dict(r.headers)[DLQ_REASON] == b"paused"]
            assert {dict(r.headers)[PAUSE_HEADER] for r in parked} == {
                f"crm:{crm_ids[2]}:deleted".encode()
            }
            assert dict(parked[0].headers)[DLQ_TOPIC] == rig.name("changes.crm").encode()
            # two deletes went through (CRM contact delete deletes the Outlook copy), then pause
            await to_outlook.until(lambda rs: len(rs) >= 2)
            await to_outlook.quiet(2)
            assert [v["action"] for v in values(to_outlook.records)] == ["delete", "delete"]
            assert len(rig.outlook.items) == 3  # two deleted, the stray and two survivors

            replayed = await resume_mailbox(rig.kafka, MBX)
            assert replayed == 2
            await to_outlook.until(lambda rs: len(rs) >= 4)
            tail = values(to_outlook.records)[2:]
            assert [v["action"] for v in tail] == ["delete", "update"]
            assert tail[1]["fields"] == {"firstname": "P3x"}
    finally:
        await app.stop()


def _delete(crm_id: str) -> ItemChange:
    return ItemChange(
        change_id=f"crm:{crm_id}:deleted",
        side="crm",
        org_id="org",
        kind="contact",
        op="delete",
        item_id=crm_id,
        version="",
        observed_at="2030-01-01T00:00:00Z",
        mailbox_id=MBX,
    )
