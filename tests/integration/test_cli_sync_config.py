"""``dynasync fields`` and ``dynasync filters`` on the real broker: what they write is what
the config store reads back; a refused change writes nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.unit.cli.invoke import Ran, dynasync

pytestmark = pytest.mark.kafka

Cli = Callable[..., Awaitable[Ran]]


@pytest.fixture
async def cli(kafka_bootstrap: str) -> Cli:
    prefix = f"clisync{uuid.uuid4().hex[:8]}."

    async def run(*args: str) -> Ran:
        common = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
        return await asyncio.to_thread(dynasync, *args, *common)

    assert (await run("topics", "create", "--partitions", "1")).code == 0
    assert (await run("org", "add", "--org", "contoso", "--url", "https://c.example")).code == 0
    return run


async def test_fields_show_and_set(cli: Cli) -> None:
    shown = json.loads(
        (await cli("fields", "show", "--org", "contoso", "--kind", "contact", "--json")).out
    )
    assert shown["stored"] is False and shown["conflict_policy"] == "crm_wins"
    by_name = {f["field"]: f for f in shown["fields"]}
    assert by_name["jobtitle"]["direction"] == "both" and by_name["address2_city"]["group"]

    ran = await cli(
        "fields",
        "set",
        "--org",
        "contoso",
        "--kind",
        "contact",
        "jobtitle=to_outlook",
        "mobilephone=none",
        "--policy",
        "manual",
        "--json",
    )
    assert ran.code == 0, ran
    ran = await cli(
        "fields", "set", "--org", "contoso", "--kind", "contact", "--reset", "mobilephone"
    )
    assert ran.code == 0, ran
    # refused after connecting: an organisation that does not exist
    ran = await cli("fields", "set", "--org", "nosuch", "--kind", "contact", "jobtitle=none")
    assert ran.code == 1 and "does not exist" in ran.err and len(ran.err_lines) == 1
    shown = json.loads(
        (await cli("fields", "show", "--org", "contoso", "--kind", "contact", "--json")).out
    )
    directions = {f["field"]: f["direction"] for f in shown["fields"]}
    assert shown["stored"] is True and shown["conflict_policy"] == "manual"
    assert directions["jobtitle"] == "to_outlook" and directions["mobilephone"] == "both"
    dry = await cli(
        "fields",
        "set",
        "--org",
        "contoso",
        "--kind",
        "contact",
        "--policy",
        "newest",
        "--dry-run",
        "--json",
    )
    assert json.loads(dry.out)["conflict_policy"] == "newest"
    shown = json.loads(
        (await cli("fields", "show", "--org", "contoso", "--kind", "contact", "--json")).out
    )
    assert shown["conflict_policy"] == "manual"  # the dry run wrote nothing


MY_CONTACTS = (
    '<fetch version="1.0" mapping="logical"><entity name="contact">'
    '<filter type="and"><condition attribute="ownerid" operator="eq-userid" />'
    '<condition attribute="statecode" operator="eq" value="0" /></filter></entity></fetch>'
)
MY_TASKS = (
    '<fetch><entity name="task"><filter><condition attribute="ownerid" operator="eq-userid"/>'
    "</filter></entity></fetch>"
)
USER_A = "00000000-0000-4000-8000-0000000000aa"


async def test_filters_from_a_file_and_from_dataverse(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiohttp.test_utils import TestServer

    from connectors.dataverse.auth import StaticToken
    from connectors.dataverse.client import DataverseClient
    from emulators.dataverse import EmulatorConfig, create_app

    server = TestServer(create_app(EmulatorConfig()), host="127.0.0.1")
    await server.start_server()
    origin = f"http://127.0.0.1:{server.port}"
    client = DataverseClient(origin + "/api/data/v9.2", StaticToken("t"))
    await client.start()
    prefix = f"clifilt{uuid.uuid4().hex[:8]}."
    monkeypatch.setenv("DYNASYNC_DATAVERSE__STATIC_TOKEN", "t")

    async def cli(*args: str) -> Ran:
        common = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
        return await asyncio.to_thread(dynasync, *args, *common)

    async def userquery(name: str, fetchxml: str) -> str:
        resp = await client.request(
            "POST",
            "userqueries",
            json={"name": name, "fetchxml": fetchxml, "querytype": 256, "returnedtypecode": None},
            run_as=USER_A,
            safe=False,
        )
        entity = resp.headers["odata-entityid"]
        return entity[entity.rindex("(") + 1 : -1]

    try:
        async with aiohttp.ClientSession() as http:
            seed = {"systemusers": [{"systemuserid": USER_A, "fullname": "Alice A"}]}
            async with http.post(f"{origin}/_emulator/seed", json=seed) as resp:
                assert resp.status < 300
        assert (await cli("topics", "create", "--partitions", "1")).code == 0
        assert (await cli("org", "add", "--org", "contoso", "--url", origin)).code == 0
        ran = await cli(
            "mailbox",
            "add",
            "--upn",
            "alice@contoso.test",
            "--org",
            "contoso",
            "--systemuser",
            USER_A,
        )
        assert ran.code == 0, ran
        mailbox = json.loads((await cli("mailbox", "list", "--json")).out)[0]["mailbox_id"]

        # from a file
        path = tmp_path / "tasks.xml"
        path.write_text(MY_TASKS)
        ran = await cli(
            "filters",
            "import",
            "--org",
            "contoso",
            "--file",
            str(path),
            "--id",
            "my-tasks",
            "--mailbox",
            mailbox,
            "--json",
        )
        assert ran.code == 0, ran
        assert json.loads(ran.out)["table"] == "task"

        # from Dataverse: one good, one the subset does not take
        good = await userquery("My Active Contacts", MY_CONTACTS)
        bad = await userquery("Odd", '<fetch><entity name="contact"><foo/></entity></fetch>')
        ran = await cli("filters", "import", "--org", "contoso", "--json")
        assert ran.code == 0, ran
        report = json.loads(ran.out)
        assert [f["filter_id"] for f in report["added"]] == [f"userquery:{good}"]
        assert [e["row_id"] for e in report["errors"]] == [bad]
        assert report["removed"] == []

        # the user edits the filter in Dynamics: a re-import updates, nothing duplicated
        await client.request(
            "PATCH", f"userqueries({good})", json={"name": "Renamed"}, run_as=USER_A, safe=False
        )
        ran = await cli("filters", "import", "--org", "contoso", "--json")
        report = json.loads(ran.out)
        assert [f["name"] for f in report["updated"]] == ["Renamed"] and not report["added"]
        listed = json.loads((await cli("filters", "list", "--json")).out)
        assert sorted(f["filter_id"] for f in listed) == sorted([f"userquery:{good}", "my-tasks"])

        # the user deletes it in Dynamics: the next import removes it (the file's one stays)
        await client.request("DELETE", f"userqueries({good})", run_as=USER_A, safe=False)
        dry = json.loads(
            (await cli("filters", "import", "--org", "contoso", "--dry-run", "--json")).out
        )
        assert [f["filter_id"] for f in dry["removed"]] == [f"userquery:{good}"]
        ran = await cli("filters", "import", "--org", "contoso", "--json")
        assert [f["filter_id"] for f in json.loads(ran.out)["removed"]] == [f"userquery:{good}"]
        listed = json.loads((await cli("filters", "list", "--json")).out)
        assert [f["filter_id"] for f in listed] == ["my-tasks"]

        shown = json.loads((await cli("filters", "show", "my-tasks", "--json")).out)
        assert shown["fetchxml"] == MY_TASKS
        ran = await cli("filters", "set", "my-tasks", "--disable", "--name", "Tasks", "--json")
        assert json.loads(ran.out)["enabled"] is False
        ran = await cli("filters", "remove", "my-tasks")
        assert ran.code == 0
        ran = await cli("filters", "remove", "my-tasks")
        assert ran.code == 1 and "does not exist" in ran.err and len(ran.err_lines) == 1
        assert json.loads((await cli("filters", "list", "--json")).out) == []
    finally:
        await client.stop()
        await server.close()


async def test_conflicts_list_and_resolve_on_the_broker(cli: Cli, kafka_bootstrap: str) -> None:
    """A manual conflict on the topic is listed; resolve sends the engine its control record
    on changes.crm; once the engine's closing record is there, it is no longer listed. (The
    engine's side of it is tests/unit/plan/test_resolve.py.)"""
    from connectors.kafka_clients import KafkaClients
    from pipeline.cli.common import kafka_settings
    from pipeline.cli.topic_read import read_to_end
    from pipeline.plan import ConflictEntry
    from pipeline.rules import ConflictRecord
    from pipeline.topics import CHANGES_CRM, CONFLICTS, topic_name
    from schemas.conflicts import ConflictClosed, decode_resolution

    names = [t["name"] for t in json.loads((await cli("topics", "list", "--json")).out)]
    prefix = next(n for n in names if n.endswith("conflicts")).removesuffix("conflicts")
    kafka = kafka_settings(kafka_bootstrap, prefix)
    record = ConflictRecord("firstname", "Ann", "FromOutlook", "FromCrm", "manual", None)
    entry = ConflictEntry(
        "cid-1",
        "mbx",
        "contoso",
        "corr",
        "contact",
        record,
        "manual",
        "chg",
        "2030-01-01T00:00:00Z",
    )
    producer = KafkaClients(kafka).producer(acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic_name(CONFLICTS, kafka), entry.to_json(), key=b"mbx")
        listed = json.loads((await cli("conflicts", "list", "--json")).out)
        assert [c["conflict_id"] for c in listed["open"]] == ["cid-1"]
        assert listed["open"][0]["crm"] == "FromCrm"
        ran = await cli("conflicts", "resolve", "cid-1", "--take", "crm", "--json")
        assert ran.code == 0, ran
        sent = [r async for r in read_to_end(kafka, topic_name(CHANGES_CRM, kafka), timeout_s=10)]
        (control,) = [r for r in sent if dict(r.headers).get("x-dynasync-control") == b"resolve"]
        resolution = decode_resolution(control.value)
        assert (resolution.conflict_id, resolution.take, control.key) == ("cid-1", "crm", b"mbx")
        closed = ConflictClosed(
            "cid-1",
            "mbx",
            "corr",
            "firstname",
            "crm",
            resolution.resolution_id,
            True,
            "took crm",
            "2030-01-01T00:00:01Z",
        )
        await producer.send_and_wait(topic_name(CONFLICTS, kafka), closed.to_json(), key=b"mbx")
        assert json.loads((await cli("conflicts", "list", "--json")).out)["open"] == []
        ran = await cli("conflicts", "resolve", "cid-1", "--take", "crm")
        assert ran.code == 1 and "not open" in ran.err
    finally:
        await producer.stop()


async def test_replay_republishes_from_an_offset_or_a_time(cli: Cli, kafka_bootstrap: str) -> None:
    """Counts and what lands on the topic; control records and other mailboxes are skipped.
    (Not shown here: that the engine changes nothing on a replay of changes in sync.)"""
    from connectors.kafka_clients import KafkaClients
    from pipeline.cli.common import kafka_settings
    from pipeline.cli.topic_read import read_to_end
    from pipeline.topics import CHANGES_CRM, topic_name

    names = [t["name"] for t in json.loads((await cli("topics", "list", "--json")).out)]
    prefix = next(n for n in names if n.endswith("conflicts")).removesuffix("conflicts")
    kafka = kafka_settings(kafka_bootstrap, prefix)
    name = topic_name(CHANGES_CRM, kafka)
    producer = KafkaClients(kafka).producer(acks="all")
    await producer.start()
    try:
        for key, value in ((b"a", b"1"), (b"b", b"2"), (b"a", b"3")):
            await producer.send_and_wait(name, value, key=key)
        await producer.send_and_wait(
            name, b"", key=b"a", headers=[("x-dynasync-control", b"resume")]
        )
    finally:
        await producer.stop()
    dry = json.loads(
        (await cli("replay", "--topic", "changes.crm", "--from", "0", "--dry-run", "--json")).out
    )
    assert (dry["replayed"], dry["skipped"], dry["dry_run"]) == (3, 1, True)
    ran = await cli("replay", "--topic", "changes.crm", "--from", "1", "--mailbox", "a", "--json")
    assert json.loads(ran.out)["replayed"] == 1, ran  # offset 2 only (offset 1 is b's)
    after = [(r.key, r.value) async for r in read_to_end(kafka, name, timeout_s=10)]
    assert after[-1] == (b"a", b"3") and len(after) == 5
    ran = await cli("replay", "--topic", "changes.crm", "--from", "2000-01-01T00:00:00Z", "--json")
    assert json.loads(ran.out)["replayed"] == 4  # every non-control record, from the start
