"""``dynasync mailbox plan`` on the real broker through both emulators: a mailbox about to be
enabled, with contacts only in Outlook (one tracked, one not), only in the CRM (the user's active
one, admitted by the default template; the user's inactive one, admitted by none; another
user's, not concerned) and on both sides (linked). The plan says so item by item, with the
filter that admits each CRM row, and writes nothing: no write request to either emulator, no
record on any of the run's topics. Bad arguments are one line and exit 2."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from connectors.kafka_clients import KafkaClients
from pipeline.rules.tracking_settings import TRACKED_CATEGORY
from tests.e2e.world import TOKEN, User, World, open_world, user_id
from tests.unit.cli.invoke import dynasync

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

WRITES = ("POST", "PATCH", "PUT", "DELETE")


async def _requests(w: World) -> tuple[dict[str, int], dict[str, int]]:
    """Requests each emulator has answered so far, by method (Graph, Dataverse)."""
    graph = (await w.http.get(f"{w.graph}/_emulator/stats")).json()["by_method"]
    crm = (await w.http.get(f"{w.dataverse}/_emulator/stats")).json()["by_method"]
    return dict(graph), dict(crm)


async def _end_offsets(w: World) -> dict[tuple[str, int], int]:
    """The end offset of every partition of the run's topics."""
    kafka = w.settings.kafka
    consumer = KafkaClients(kafka).consumer(enable_auto_commit=False)
    await consumer.start()
    try:
        from aiokafka import TopicPartition

        names = [t for t in await consumer.topics() if t.startswith(kafka.topic_prefix)]
        parts = [
            TopicPartition(t, p) for t in names for p in consumer.partitions_for_topic(t) or ()
        ]
        ends = await consumer.end_offsets(parts)
        return {(tp.topic, tp.partition): n for tp, n in ends.items()}
    finally:
        await consumer.stop()


async def _crm_contact(w: World, first: str, last: str, **more: Any) -> str:
    body = {"firstname": first, "lastname": last, "emailaddress1": f"{last.lower()}@plan.test"}
    resp = await w.crm("POST", "contacts", {**body, **more})
    assert resp.status_code in (200, 201), resp.text
    row_id = resp.json()["contactid"]
    assert isinstance(row_id, str)
    return row_id


async def _outlook_contact(w: World, first: str, last: str, *, tracked: bool) -> str:
    item: dict[str, Any] = {
        "givenName": first,
        "surname": last,
        "emailAddresses": [{"address": f"{last.lower()}@plan.test", "name": f"{first} {last}"}],
    }
    if tracked:
        item["categories"] = [TRACKED_CATEGORY]
    resp = await w.outlook("POST", "contacts", item)
    assert resp.status_code == 201, resp.text
    item_id = resp.json()["id"]
    assert isinstance(item_id, str)
    return item_id


async def test_plan_lists_each_side_and_writes_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    async with open_world(kafka_bootstrap, tmp_path, users=1) as w:
        # the first sync is still to come: approved, not enabled
        box = w.store.snapshot.mailboxes[w.mailbox_id]
        await w.store.put(replace(box, status="approved"))
        await w.store.load()
        tracked = await _outlook_contact(w, "Olive", "Tracked", tracked=True)
        untracked = await _outlook_contact(w, "Otto", "Untracked", tracked=False)
        crm_only = await _crm_contact(w, "Carla", "Crmonly")
        inactive = await _crm_contact(w, "Ivan", "Inactive")
        resp = await w.crm("PATCH", f"contacts({inactive})", {"statecode": 1, "statuscode": 2})
        assert resp.status_code in (200, 204), resp.text
        seed = {"systemusers": [{"systemuserid": user_id(7), "fullname": "Other User"}]}
        assert (await w.http.post(f"{w.dataverse}/_emulator/seed", json=seed)).is_success
        stranger = User("other", "other@contoso.test", user_id(7))
        other = await w.crm(
            "POST",
            "contacts",
            {"firstname": "Oscar", "lastname": "Otheruser", "emailaddress1": "o@plan.test"},
            user=stranger,  # Dataverse makes the caller its owner
        )
        assert other.status_code in (200, 201), other.text
        other_id = other.json()["contactid"]
        both_o = await _outlook_contact(w, "Bea", "Both", tracked=False)
        both_c = await _crm_contact(w, "Bea", "Both")

        graph_before, crm_before = await _requests(w)
        offsets_before = await _end_offsets(w)
        kafka = w.settings.kafka
        env: dict[str, str | None] = {
            "DYNASYNC_APP_ID": w.settings.app_id,
            "DYNASYNC_GRAPH__BASE_URL": w.settings.graph.base_url,
            "DYNASYNC_DATAVERSE__BASE_URL": w.settings.dataverse.base_url,
            "DYNASYNC_GRAPH__STATIC_TOKEN": TOKEN,
            "DYNASYNC_DATAVERSE__STATIC_TOKEN": TOKEN,
        }
        common = ("--bootstrap", kafka.bootstrap, "--topic-prefix", kafka.topic_prefix)
        run = partial(dynasync, env=env)
        ran = await asyncio.to_thread(run, "mailbox", "plan", w.upn, *common, "--json")
        assert ran.code == 0, ran
        report: dict[str, Any] = json.loads(ran.out)
        assert set(report) == {
            "mailbox_id",
            "upn",
            "status",
            "outlook_items",
            "crm_rows",
            "counts",
            "items",
            "listed",
            "total",
        }
        assert (report["mailbox_id"], report["status"]) == (w.mailbox_id, "approved")
        assert (report["outlook_items"], report["crm_rows"]) == (3, 3)
        items = {(i["side"], i["item_id"]): i for i in report["items"]}
        assert set(report["items"][0]) == {
            "side",
            "kind",
            "item_id",
            "label",
            "action",
            "filter",
            "target",
            "reason",
        }

        def seen(side: str, item: str) -> tuple[str, str | None, str | None]:
            found = items[(side, item)]
            return found["action"], found["filter"], found["target"]

        assert seen("outlook", tracked) == ("create", None, "crm")
        assert seen("outlook", untracked)[0] == "leave"
        assert "not tracked" in items[("outlook", untracked)]["reason"]
        assert seen("crm", crm_only) == ("create", "My active contacts", "outlook")
        assert seen("crm", inactive) == ("leave", None, None)
        assert seen("outlook", both_o) == ("link", None, both_c)
        assert seen("crm", both_c) == ("link", "My active contacts", both_o)
        assert ("crm", other_id) not in items  # another user's row is none of its concern
        assert report["counts"] == {
            "outlook": {"create": 1, "link": 1, "update": 0, "leave": 1},
            "crm": {"create": 1, "link": 1, "update": 0, "leave": 1},
        }
        assert (report["listed"], report["total"]) == (6, 6)

        # the table, and --limit cutting the listing but not the counts
        text = await asyncio.to_thread(run, "mailbox", "plan", w.mailbox_id, *common)
        assert text.code == 0, text
        assert "My active contacts" in text.out and "create in outlook" in text.out
        assert "Carla Crmonly" in text.out and "nothing written" in text.out
        cut = await asyncio.to_thread(
            run, "mailbox", "plan", w.upn, *common, "--limit", "2", "--json"
        )
        assert cut.code == 0, cut
        short = json.loads(cut.out)
        assert (short["listed"], short["total"], len(short["items"])) == (2, 6, 2)
        assert short["counts"] == report["counts"]

        # nothing written: no write request to either service, no record on any topic
        graph_after, crm_after = await _requests(w)
        for method in WRITES:
            assert graph_after.get(method, 0) == graph_before.get(method, 0), method
            assert crm_after.get(method, 0) == crm_before.get(method, 0), method
        assert graph_after.get("GET", 0) > graph_before.get("GET", 0)  # it did read
        assert crm_after.get("GET", 0) > crm_before.get("GET", 0)
        assert await _end_offsets(w) == offsets_before

        # bad arguments: one line, exit 2
        for argv in (
            ("nobody@contoso.test", *common),
            (w.upn, "--limit", "0", *common),
            (w.upn, "--limit", "many", *common),
        ):
            bad = await asyncio.to_thread(run, "mailbox", "plan", *argv)
            assert bad.code == 2, bad
            assert len(bad.err_lines) == 1, bad.err
        missing = await asyncio.to_thread(run, "mailbox", "plan", "nobody@contoso.test", *common)
        assert "does not exist" in missing.err
