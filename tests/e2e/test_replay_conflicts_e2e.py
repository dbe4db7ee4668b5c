"""``dynasync replay`` and ``dynasync conflicts list|resolve`` through the command line, with a
``dynasync run`` worker between both emulators on the real broker (issue #12).

Replay: contacts synced both ways, the worker quiet, then ``changes.crm`` and
``changes.outlook`` replayed from offset 0; once the engine's consumer group has committed
past every replayed record, neither emulator has answered a single write (POST, PATCH, PUT,
DELETE) since before the replay, and both sides hold the same contacts, one per key.

Conflicts: the organisation's contacts under the ``manual`` policy (``fields set``), the same
field of two contacts edited on both sides while the worker is stopped; the engine records two
open conflicts and writes nothing, ``conflicts list`` shows them, ``conflicts resolve ID --take
crm`` makes Outlook take the CRM value of one, ``--take outlook`` CRM the Outlook value of the
other, after which ``list`` shows neither and a second resolve of an id is refused."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from connectors.kafka_clients import KafkaClients, stop_consumer
from pipeline.rules.tracking_settings import TRACKED_CATEGORY
from pipeline.topics import CHANGES_CRM, CHANGES_OUTLOOK, topic_name
from tests.e2e.proc import PipelineProcess
from tests.e2e.world import ORG, TOKEN, World, eventually

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(480)]

WRITES = ("POST", "PATCH", "PUT", "DELETE")


async def _cli(w: World, *args: str) -> tuple[int, str, str]:
    """``dynasync args`` as a child process over the world's topics: (exit code, out, err).

    A child, not in-process: the emulators serve from this test's event loop."""
    s = w.settings
    env = {
        **os.environ,
        "DYNASYNC_APP_ID": s.app_id,
        "DYNASYNC_KAFKA__BOOTSTRAP": s.kafka.bootstrap,
        "DYNASYNC_KAFKA__TOPIC_PREFIX": s.kafka.topic_prefix,
        "DYNASYNC_KAFKA__PARTITIONS": str(s.kafka.partitions),
        "DYNASYNC_GRAPH__STATIC_TOKEN": TOKEN,
        "DYNASYNC_DATAVERSE__STATIC_TOKEN": TOKEN,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pipeline.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _cli_any(w: World, *args: str) -> Any:
    code, out, err = await _cli(w, *args, "--json")
    assert code == 0, f"dynasync {' '.join(args)}: exit {code}: {err}"
    return json.loads(out)


async def _cli_json(w: World, *args: str) -> dict[str, Any]:
    data = await _cli_any(w, *args)
    assert isinstance(data, dict)
    return data


async def _writes(w: World) -> dict[str, int]:
    """Write requests each emulator has answered so far, by emulator and method."""
    found: dict[str, int] = {}
    for name, root in (("graph", w.graph), ("dataverse", w.dataverse)):
        by_method = (await w.http.get(f"{root}/_emulator/stats")).json()["by_method"]
        for method in WRITES:
            found[f"{name} {method}"] = by_method.get(method, 0)
    return found


def _outlook_keys(items: list[dict[str, Any]]) -> Counter[str]:
    return Counter(
        f"{(i.get('emailAddresses') or [{}])[0].get('address', '').lower()}|{i.get('surname')}"
        for i in items
    )


def _crm_keys(rows: list[dict[str, Any]]) -> Counter[str]:
    return Counter(f"{(r.get('emailaddress1') or '').lower()}|{r.get('lastname')}" for r in rows)


async def _engine_lag(w: World) -> int:
    """Records on ``changes.*`` the engine's consumer group has not committed yet."""
    kafka = w.settings.kafka
    clients = KafkaClients(kafka)
    names = [topic_name(CHANGES_CRM, kafka), topic_name(CHANGES_OUTLOOK, kafka)]
    tps = [TopicPartition(n, p) for n in names for p in range(kafka.partitions)]
    consumer = clients.consumer(enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await stop_consumer(consumer)
    admin = clients.admin()
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(
            f"{w.settings.app_id}-engine", partitions=tps
        )
    finally:
        await admin.close()
    lag = 0
    for tp in tps:
        meta = committed.get(tp)
        lag += ends[tp] - (meta.offset if meta is not None and meta.offset >= 0 else 0)
    return lag


async def _quiet(w: World, within: float, hold_s: float = 4.0) -> dict[str, int]:
    """The write counts once the engine has no lag and they have not moved for ``hold_s``."""
    start = time.monotonic()
    last: dict[str, int] | None = None
    since = time.monotonic()
    while True:
        now = await _writes(w)
        lag = await _engine_lag(w)
        if now != last or lag:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= hold_s:
            return now
        if time.monotonic() - start > within:
            raise AssertionError(f"not quiet within {within:.0f}s (lag {lag}, writes {now})")
        await asyncio.sleep(0.5)


async def _both_sides(w: World) -> tuple[Counter[str], Counter[str]]:
    return _outlook_keys(await w.outlook_contacts()), _crm_keys(await w.crm_contacts())


async def test_replaying_changes_writes_nothing(world: World, tmp_path: Path) -> None:
    w = world
    worker = PipelineProcess(w, tmp_path / "worker.log")
    await worker.start()
    try:
        crm_ids = []
        for n in range(3):
            body = {"firstname": "Cat", "lastname": f"Crm{n}", "emailaddress1": f"c{n}@r.test"}
            resp = await w.crm("POST", "contacts", body)
            assert resp.status_code in (200, 201), resp.text
            crm_ids.append(resp.json()["contactid"])
        outlook_ids = []
        for n in range(3):
            item = {
                "givenName": "Oli",
                "surname": f"Out{n}",
                "emailAddresses": [{"address": f"o{n}@r.test", "name": f"Oli Out{n}"}],
                "categories": [TRACKED_CATEGORY],  # only tracked Outlook contacts go to CRM
            }
            resp = await w.outlook("POST", "contacts", item)
            assert resp.status_code == 201, resp.text
            outlook_ids.append(resp.json()["id"])

        seen: list[tuple[Counter[str], Counter[str]]] = []

        async def synced() -> tuple[Counter[str], Counter[str]] | None:
            seen[:] = [await _both_sides(w)]
            o_keys, c_keys = seen[0]
            return (o_keys, c_keys) if o_keys == c_keys and len(o_keys) == 6 else None

        try:
            await eventually(synced, 120, "six contacts on both sides", every=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {seen}") from None
        # an update each way too, so the topics hold more than one version of an item
        resp = await w.crm("PATCH", f"contacts({crm_ids[0]})", {"jobtitle": "CFO"})
        assert resp.status_code in (200, 204), resp.text
        resp = await w.outlook("PATCH", f"contacts/{outlook_ids[0]}", {"jobTitle": "CTO"})
        assert resp.status_code == 200, resp.text

        async def updated() -> bool | None:
            o = {c["surname"]: c for c in await w.outlook_contacts()}
            c = {r["lastname"]: r for r in await w.crm_contacts()}
            done = o["Crm0"].get("jobTitle") == "CFO" and c["Out0"].get("jobtitle") == "CTO"
            return True if done else None

        await eventually(updated, 60, "both updates across", every=0.5)
        before = await _quiet(w, 120)
        # the counters see the sync's own writes: three creates each way at least
        assert before["graph POST"] >= 3 and before["dataverse POST"] >= 3, before
        sides_before = await _both_sides(w)

        replayed = {}
        for topic in ("changes.crm", "changes.outlook"):
            data = await _cli_json(w, "replay", "--topic", topic, "--from", "0")
            replayed[topic] = data["replayed"]
        # each side's reader published at least the three creates and the update of its side
        assert replayed["changes.crm"] >= 4 and replayed["changes.outlook"] >= 4, replayed

        after = await _quiet(w, 120)
        assert after == before, f"writes after the replay: {before} -> {after}"
        o_keys, c_keys = await _both_sides(w)
        assert (o_keys, c_keys) == sides_before
        assert sum(o_keys.values()) == 6 and set(o_keys.values()) == {1}
        assert o_keys == c_keys
        assert await _cli_any(w, "dlq", "list") == []  # dropped, not parked
    finally:
        await worker.stop()


async def _open_conflicts(w: World) -> list[dict[str, Any]]:
    data = await _cli_json(w, "conflicts", "list", "--mailbox", w.mailbox_id)
    found = data["open"]
    assert isinstance(found, list)
    return found


async def test_manual_conflicts_listed_and_resolved(world: World, tmp_path: Path) -> None:
    w = world
    code, _, err = await _cli(
        w, "fields", "set", "--org", ORG, "--kind", "contact", "--policy", "manual"
    )
    assert code == 0, err
    worker = PipelineProcess(w, tmp_path / "worker.log")
    await worker.start()
    try:
        rows: dict[str, str] = {}  # surname -> CRM row id
        for last in ("Takecrm", "Takeoutlook"):
            body = {"firstname": "Max", "lastname": last, "emailaddress1": f"{last}@manual.test"}
            resp = await w.crm("POST", "contacts", {**body, "jobtitle": "Engineer"})
            assert resp.status_code in (200, 201), resp.text
            rows[last] = resp.json()["contactid"]

        async def in_outlook() -> dict[str, str] | None:
            found = {
                c["surname"]: c["id"]
                for c in await w.outlook_contacts()
                if c.get("jobTitle") == "Engineer"
            }
            return found if set(found) == set(rows) else None

        items, _ = await eventually(in_outlook, 120, "the CRM contacts in Outlook", every=0.5)
        await _quiet(w, 120)
        assert await worker.stop() == 0

        # the same field edited on both sides while no worker runs
        for last in rows:
            resp = await w.crm("PATCH", f"contacts({rows[last]})", {"jobtitle": f"CTO {last}"})
            assert resp.status_code in (200, 204), resp.text
            resp = await w.outlook("PATCH", f"contacts/{items[last]}", {"jobTitle": f"CEO {last}"})
            assert resp.status_code == 200, resp.text
        await worker.start()

        async def recorded() -> list[dict[str, Any]] | None:
            found = await _open_conflicts(w)
            return found if len(found) >= len(rows) else None

        found, _ = await eventually(recorded, 120, "the manual conflicts listed", every=1.0)
        assert len(found) == 2 and {c["field"] for c in found} == {"jobtitle"}, found
        by_last = {str(c["crm"]).removeprefix("CTO "): c for c in found}
        assert set(by_last) == set(rows), found
        for last, c in by_last.items():
            assert (c["outlook"], c["policy"]) == (f"CEO {last}", "manual"), c
        await _quiet(w, 120)

        async def values() -> dict[str, tuple[str, str]]:
            held = {}
            for last in rows:
                crm = (await w.crm_contact(rows[last]))["jobtitle"]
                item = (await w.outlook("GET", f"contacts/{items[last]}")).json()
                held[last] = (crm, item["jobTitle"])
            return held

        # the manual policy wrote nothing: each side keeps its own edit
        assert await values() == {last: (f"CTO {last}", f"CEO {last}") for last in rows}

        for last, take in (("Takecrm", "crm"), ("Takeoutlook", "outlook")):
            conflict_id = by_last[last]["conflict_id"]
            sent = await _cli_json(w, "conflicts", "resolve", conflict_id, "--take", take)
            assert (sent["conflict_id"], sent["take"]) == (conflict_id, take)
        want = {"Takecrm": ("CTO Takecrm",) * 2, "Takeoutlook": ("CEO Takeoutlook",) * 2}

        async def taken() -> bool | None:
            return True if await values() == want else None

        await eventually(taken, 60, "each chosen value on both sides", every=0.5)
        await _quiet(w, 120)
        assert await values() == want
        assert await _open_conflicts(w) == []
        # resolved once: a second resolve of the same id is refused
        code, _, err = await _cli(w, "conflicts", "resolve", conflict_id, "--take", "crm")
        assert code == 1 and "is not open" in err, err
        o_keys, c_keys = await _both_sides(w)
        assert o_keys == c_keys and sum(o_keys.values()) == 2
    finally:
        await worker.stop()
