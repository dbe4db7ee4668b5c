"""``dynasync fields`` and ``dynasync filters`` on the real broker: what they write is what
the config store reads back; a refused change writes nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable

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
