"""The config store on the real broker: writes survive a reload, invariants hold, garbage and
tombstones on the compacted topic are handled."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace

import pytest

from pipeline.cli.main import main
from pipeline.cli.topics import ensure_topics
from pipeline.config_store import ConfigError, ConfigStore
from pipeline.settings import KafkaSettings
from schemas.models import FieldDirections, FilterRecord, Mailbox, Organisation

pytestmark = pytest.mark.kafka

SU1 = "11111111-1111-1111-1111-111111111111"
SU2 = "22222222-2222-2222-2222-222222222222"


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> KafkaSettings:
    settings = KafkaSettings(
        bootstrap=kafka_bootstrap, topic_prefix=f"cfg{uuid.uuid4().hex[:10]}.", partitions=2
    )
    await ensure_topics(settings)
    return settings


def _org(org_id: str = "contoso") -> Organisation:
    return Organisation(org_id=org_id, url=f"https://{org_id}.crm.dynamics.com")


def _mailbox(mailbox_id: str, upn: str, su: str, org: str = "contoso") -> Mailbox:
    return Mailbox(mailbox_id=mailbox_id, upn=upn, org_id=org, systemuser_id=su)


async def test_records_survive_a_reload(kafka: KafkaSettings) -> None:
    directions = FieldDirections(org_id="contoso", kind="contact", directions={"email": "to_crm"})
    flt = FilterRecord(
        filter_id="f1", org_id="contoso", table="contact", name="mine", fetchxml="<fetch/>"
    )
    async with ConfigStore(kafka) as store:
        await store.put(_org())
        await store.put(_mailbox("mb1", "ann@contoso.com", SU1), create=True)
        await store.put(directions)
        await store.put(flt)
        written = store.snapshot
    async with ConfigStore(kafka) as again:
        loaded = again.snapshot
    assert loaded.problems == []
    assert loaded.organisations == written.organisations == {"contoso": _org()}
    assert loaded.mailboxes == {"mb1": _mailbox("mb1", "ann@contoso.com", SU1)}
    assert loaded.directions[("contoso", "contact")] == directions
    assert loaded.filters == {"f1": flt}


async def test_second_registration_is_refused(kafka: KafkaSettings) -> None:
    async with ConfigStore(kafka) as store:
        await store.put(_org())
        await store.put(_mailbox("mb1", "ann@contoso.com", SU1), create=True)
        with pytest.raises(ConfigError, match=f"CRM user {SU1}.*already linked to mailbox 'mb1'"):
            await store.put(_mailbox("mb2", "bob@contoso.com", SU1.upper()))
        with pytest.raises(ConfigError, match=r"UPN ANN@contoso\.com is already registered"):
            await store.put(_mailbox("mb3", "ANN@contoso.com", SU2))
        with pytest.raises(ConfigError, match="mailbox mb1 already exists"):
            await store.put(_mailbox("mb1", "carl@contoso.com", SU2), create=True)
        # updating the same mailbox is not a clash
        await store.put(replace(_mailbox("mb1", "ann@contoso.com", SU1), status="enabled"))
    async with ConfigStore(kafka) as again:
        assert set(again.snapshot.mailboxes) == {"mb1"}
        assert again.snapshot.mailboxes["mb1"].status == "enabled"


async def test_unknown_org_is_refused(kafka: KafkaSettings) -> None:
    async with ConfigStore(kafka) as store:
        with pytest.raises(ConfigError, match="organisation 'nowhere' does not exist"):
            await store.put(_mailbox("mb1", "ann@contoso.com", SU1, org="nowhere"))
    async with ConfigStore(kafka) as again:
        assert again.snapshot.mailboxes == {}


async def test_garbage_on_the_topic_is_reported_and_skipped(kafka: KafkaSettings) -> None:
    async with ConfigStore(kafka) as store:
        await store.put(_org())
        await store.put_raw("mailbox:bad", b"{not json")
        await store.put_raw("mailbox:odd", json.dumps({"record_type": "spaceship"}).encode())
        await store.put_raw("mailbox:wrongkey", _encoded(_mailbox("mbX", "x@c.com", SU2)))
        await store.put_raw("mailbox:nofield", b'{"record_type": "mailbox", "mailbox_id": "n"}')
        await store.put(_mailbox("mb1", "ann@contoso.com", SU1))
    async with ConfigStore(kafka) as again:
        snap = again.snapshot
    assert set(snap.mailboxes) == {"mb1"}
    reasons = {p.key: p.reason for p in snap.problems}
    assert set(reasons) == {"mailbox:bad", "mailbox:odd", "mailbox:wrongkey", "mailbox:nofield"}
    assert "not valid JSON" in reasons["mailbox:bad"]
    assert "unknown record_type 'spaceship'" in reasons["mailbox:odd"]
    assert "belongs under key 'mailbox:mbX'" in reasons["mailbox:wrongkey"]
    assert "is a required property" in reasons["mailbox:nofield"]
    assert all(p.offset is not None for p in snap.problems)


async def test_tombstones_delete(kafka: KafkaSettings) -> None:
    async with ConfigStore(kafka) as store:
        await store.put(_org())
        await store.put(_mailbox("mb1", "ann@contoso.com", SU1))
        with pytest.raises(ConfigError, match="still has mailboxes: mb1"):
            await store.delete("organisation:contoso")
        await store.delete("mailbox:mb1")
        assert store.snapshot.mailboxes == {}
        # the CRM user is free again
        await store.put(_mailbox("mb2", "bob@contoso.com", SU1))
    async with ConfigStore(kafka) as again:
        assert set(again.snapshot.mailboxes) == {"mb2"}
        assert again.snapshot.problems == []


async def test_racing_writers_are_reported_on_load(kafka: KafkaSettings) -> None:
    async with ConfigStore(kafka) as first, ConfigStore(kafka) as second:
        await first.put(_org())
        await second.load()
        await first.put(_mailbox("mb1", "ann@contoso.com", SU1))
        await second.put(_mailbox("mb2", "bob@contoso.com", SU1))  # stale snapshot: passes
    async with ConfigStore(kafka) as again:
        clash = [p for p in again.snapshot.problems if "already linked" in p.reason]
    assert [p.key for p in clash] == ["mailbox:mb2"]


async def test_missing_topic_is_a_clear_error(kafka_bootstrap: str) -> None:
    kafka = KafkaSettings(bootstrap=kafka_bootstrap, topic_prefix=f"none{uuid.uuid4().hex[:8]}.")
    with pytest.raises(ConfigError, match=r"does not exist \(run: dynasync topics create"):
        async with ConfigStore(kafka):
            pass


def _encoded(record: Mailbox) -> bytes:
    from schemas.codec import dumps

    return dumps(record)


def _cli(kafka: KafkaSettings, *args: str) -> list[str]:
    return [*args, "--bootstrap", kafka.bootstrap, "--topic-prefix", kafka.topic_prefix]


async def test_cli_round_trip(kafka: KafkaSettings, capsys: pytest.CaptureFixture[str]) -> None:
    def run(*args: str) -> int:
        return main(_cli(kafka, *args))

    async def call(*args: str) -> int:
        return await asyncio.to_thread(run, *args)

    assert await call("org", "add", "--org", "contoso", "--url", "https://c.crm.dynamics.com") == 0
    add = ("mailbox", "add", "--upn", "ann@contoso.com", "--systemuser", SU1, "--org", "contoso")
    assert await call(*add) == 0
    capsys.readouterr()
    assert await call(*add[:3], "bob@contoso.com", *add[4:]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dynasync: CRM user ") and "ann@contoso.com" in err
    assert await call("mailbox", "enable", "ann@contoso.com") == 0
    capsys.readouterr()
    assert await call("mailbox", "show", "ann@contoso.com", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "enabled" and shown["systemuser_id"] == SU1
    assert await call("mailbox", "list") == 0
    out = capsys.readouterr().out
    assert "ann@contoso.com" in out and "enabled" in out
    assert await call("mailbox", "show", "nobody") == 1
    assert "mailbox 'nobody' does not exist" in capsys.readouterr().err


async def test_cli_mailbox_resume_replays_what_was_parked(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from pipeline.stages.guard import PAUSE_HEADER
    from pipeline.stages.publish import DLQ_REASON, DLQ_TOPIC
    from pipeline.topics import CHANGES_CRM, DLQ, topic_name

    async with ConfigStore(kafka) as store:
        await store.put(_org())
        await store.put(_mailbox("mb1", "ann@contoso.com", SU1), create=True)
    changes_crm = topic_name(CHANGES_CRM, kafka)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    try:
        for n, pause in ((1, b"p-old"), (2, b"p-new"), (3, b"p-new")):
            headers = [
                (DLQ_REASON, b"paused"),
                (DLQ_TOPIC, changes_crm.encode()),
                (PAUSE_HEADER, pause),
            ]
            await producer.send_and_wait(
                topic_name(DLQ, kafka), f"change-{n}".encode(), key=b"mb1", headers=headers
            )
    finally:
        await producer.stop()
    common = ["--bootstrap", kafka.bootstrap, "--topic-prefix", kafka.topic_prefix]
    code = await asyncio.to_thread(main, ["mailbox", "resume", "ann@contoso.com", *common])
    assert code == 0
    assert "2 parked change(s) replayed" in capsys.readouterr().out
    consumer = AIOKafkaConsumer(
        changes_crm, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        values: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + 20
        while len(values) < 3 and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            values += [r.value or b"" for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    # the resume control record (empty value), then the latest pause's records in order
    assert values[0] == b""
    assert [v for v in values if v] == [b"change-2", b"change-3"]
    code = await asyncio.to_thread(main, ["mailbox", "resume", "nobody@contoso.com", *common])
    assert code == 1


async def test_a_reload_reads_only_what_was_added(kafka: KafkaSettings) -> None:
    """A worker's reader reloads every few seconds: nothing new gives the same snapshot; new
    records, tombstones, garbage and a clash are read onto a copy; another store that reads
    the topic from the beginning agrees with it."""
    async with ConfigStore(kafka) as writer, ConfigStore(kafka) as reader:
        await writer.put(_org())
        await writer.put(_mailbox("mb1", "ann@contoso.com", SU1), create=True)
        await writer.put(_mailbox("mb2", "bob@contoso.com", SU2), create=True)
        first = await reader.load()
        assert set(first.mailboxes) == {"mb1", "mb2"}
        assert await reader.load() is first  # nothing added
        await writer.delete("mailbox:mb2")
        await writer.put_raw("mailbox:bad", b"{not json")
        racer = _mailbox("mb3", "ANN@contoso.com", "33333333-3333-3333-3333-333333333333")
        await writer.put_raw("mailbox:mb3", _encoded(racer))  # a racing writer's clash
        second = await reader.load()
        assert second is not first and set(first.mailboxes) == {"mb1", "mb2"}  # untouched
        assert set(second.mailboxes) == {"mb1", "mb3"}
        assert sorted(p.key for p in second.problems) == ["mailbox:bad", "mailbox:mb3"]
        await writer.put(_mailbox("mb4", "cy@contoso.com", SU2), create=True)
        third = await reader.load()
        assert set(third.mailboxes) == {"mb1", "mb3", "mb4"}
        assert sorted(p.key for p in third.problems) == ["mailbox:bad", "mailbox:mb3"]
    async with ConfigStore(kafka) as fresh:
        assert fresh.snapshot.mailboxes == third.mailboxes
        assert fresh.snapshot.problems == third.problems
