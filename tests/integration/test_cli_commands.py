"""The ``dynasync`` commands added with the click CLI, on the real broker: topics create and
list, org add/edit/remove, mailbox approve/edit/status/remove and import, each with --json
(stable keys); a refused change writes nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.unit.cli.invoke import Ran, dynasync

pytestmark = pytest.mark.kafka

SU = "00000000-0000-4000-8000-{:012d}"


@pytest.fixture
def cli(kafka_bootstrap: str) -> Callable[..., Awaitable[Ran]]:
    prefix = f"clicmd{uuid.uuid4().hex[:8]}."

    async def run(*args: str) -> Ran:
        common = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
        return await asyncio.to_thread(dynasync, *args, *common)

    return run


async def test_topics_org_and_mailbox_commands(
    cli: Callable[..., Awaitable[Ran]], tmp_path: Path
) -> None:
    run = cli
    ran = await run("topics", "create", "--partitions", "1", "--json")
    created = json.loads(ran.out)
    assert ran.code == 0 and all(t["created"] and t["partitions"] == 1 for t in created)
    listed = json.loads((await run("topics", "list", "--json")).out)
    assert {t["name"] for t in listed} == {t["name"] for t in created}
    assert set(listed[0]) == {
        "name",
        "key",
        "compacted",
        "retention_ms",
        "partitions",
        "description",
    }

    assert (await run("org", "add", "--org", "contoso", "--url", "https://c.example")).code == 0
    assert (await run("org", "add", "--org", "alias", "--url", "https://a.example")).code == 0
    ran = await run("org", "edit", "contoso", "--name", "Contoso Ltd", "--json")
    assert json.loads(ran.out)["display_name"] == "Contoso Ltd"
    orgs = json.loads((await run("org", "list", "--json")).out)
    assert [o["org_id"] for o in orgs] == ["alias", "contoso"]

    csv = tmp_path / "boxes.csv"
    csv.write_text(
        "upn,systemuser\n" + "".join(f"u{n}@c.example,{SU.format(n)}\n" for n in range(50))
    )
    ran = await run("mailbox", "import", "--csv", str(csv), "--org", "contoso", "--json")
    assert ran.code == 0, ran
    assert len(json.loads(ran.out)["added"]) == 50
    ran = await run("mailbox", "approve", "u1@c.example", "--json")
    assert json.loads(ran.out)["status"] == "approved"
    ran = await run("mailbox", "edit", "u1@c.example", "--auto-track", "all", "--json")
    assert json.loads(ran.out)["auto_track"] == "all"
    # u2's CRM user: refused, nothing written
    ran = await run("mailbox", "edit", "u1@c.example", "--systemuser", SU.format(2))
    assert ran.code == 1 and "CRM user" in ran.err and len(ran.err_lines) == 1
    shown = json.loads((await run("mailbox", "show", "u1@c.example", "--json")).out)
    assert shown["systemuser_id"] == SU.format(1)

    ran = await run("mailbox", "status", "u1@c.example", "--json")
    status = json.loads(ran.out)
    assert set(status) == {
        "mailbox",
        "state",
        "failing_since",
        "last_error",
        "config_problems",
        "alerts",
        "parked",
        "health",
        "health_age_s",
        "partition",
        "backlog",
    }
    assert (status["state"], status["alerts"], status["parked"]) == ("approved", [], {})
    assert status["health"] is None  # no worker reads it
    assert set(status["backlog"]) == {"engine", "writers-crm", "writers-outlook"}
    ran = await run("mailbox", "status", "--json")
    every = json.loads(ran.out)
    assert len(every["mailboxes"]) == 50 and every["unreadable_status_records"] == 0

    # an organisation with mailboxes stays; alias, with none, goes
    ran = await run("org", "remove", "contoso")
    assert ran.code == 1 and "still has mailboxes" in ran.err
    assert (await run("org", "remove", "alias")).code == 0
    ran = await run("mailbox", "remove", "u1@c.example", "--json")
    assert json.loads(ran.out) == {"mailbox_id": "u1@c.example", "removed": True}
    boxes = json.loads((await run("mailbox", "list", "--json")).out)
    assert len(boxes) == 49 and "u1@c.example" not in {m["mailbox_id"] for m in boxes}
    ran = await run("mailbox", "status", "u1@c.example")
    assert ran.code == 1 and "does not exist" in ran.err
