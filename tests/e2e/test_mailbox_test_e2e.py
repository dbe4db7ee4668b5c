"""``dynasync mailbox test`` against both emulators and a real receiver: every check passes for
a healthy mailbox and nothing is written to either service; a disabled CRM user fails the
impersonation check with Dataverse's reason, a missing Graph user fails the user check (its
reads skipped), a dead notification URL fails the webhook round trip; the command exits 1 on a
failure and ``--enable`` enables the mailbox once every check passes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from pipeline.mailbox_check import Check, check_mailbox
from pipeline.runtime import Pipeline, RuntimeOptions
from pipeline.settings import GraphSettings, ReceiverSettings, Settings
from tests.e2e.world import TOKEN, World, open_world
from tests.ports import free_port
from tests.unit.cli.invoke import dynasync

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

WRITES = ("POST", "PATCH", "PUT", "DELETE")


async def _writes(w: World) -> tuple[int, int]:
    """Write requests each emulator has answered so far (Graph, Dataverse)."""
    graph = (await w.http.get(f"{w.graph}/_emulator/stats")).json()["by_method"]
    crm = (await w.http.get(f"{w.dataverse}/_emulator/stats")).json()["by_method"]
    return sum(graph.get(m, 0) for m in WRITES), sum(crm.get(m, 0) for m in WRITES)


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


async def _check(w: World, settings: Settings | None = None) -> dict[str, Check]:
    snap = await w.store.load()
    box = snap.mailboxes[w.mailbox_id]
    return _by_name(
        await check_mailbox(settings or w.settings, box, snap.organisations.get(box.org_id))
    )


async def test_mailbox_test_reports_each_check(kafka_bootstrap: str, tmp_path: Path) -> None:
    async with open_world(kafka_bootstrap, tmp_path, users=1) as w:
        before = await _writes(w)
        checks = await _check(w)
        assert {c.result for c in checks.values() if c.area != "webhook"} == {"pass"}, checks
        assert checks["validation round trip"].result == "skip"
        assert "impersonation (WhoAmI as the user)" in checks
        assert await _writes(w) == before  # reads only

        dead = f"http://127.0.0.1:{free_port()}"
        graph = w.settings.graph.model_copy(update={"notification_url": dead})
        checks = await _check(w, w.settings.model_copy(update={"graph": graph}))
        webhook = checks["validation round trip"]
        assert webhook.result == "fail" and dead in webhook.detail

        # the CRM user disabled: Dataverse refuses to act as it, and says why
        user = w.users[0]
        seed = f"{w.dataverse}/_emulator/seed"
        off = {"systemusers": [{"systemuserid": user.systemuser_id, "isdisabled": True}]}
        assert (await w.http.post(seed, json=off)).status_code < 300
        checks = await _check(w)
        failed = checks["impersonation (WhoAmI as the user)"]
        assert failed.result == "fail" and "0x8004a104" in failed.detail
        assert checks["application access (WhoAmI)"].result == "pass"

        # the command: exit 1 and the mailbox left as it was; once fixed, --enable enables it
        snap = await w.store.load()
        await w.store.put(dataclasses.replace(snap.mailboxes[w.mailbox_id], status="approved"))
        env: dict[str, str | None] = {
            "DYNASYNC_GRAPH__BASE_URL": w.settings.graph.base_url,
            "DYNASYNC_GRAPH__STATIC_TOKEN": TOKEN,
            "DYNASYNC_DATAVERSE__STATIC_TOKEN": TOKEN,
            "DYNASYNC_GRAPH__NOTIFICATION_URL": None,
        }
        kafka = w.settings.kafka
        args = ("--bootstrap", kafka.bootstrap, "--topic-prefix", kafka.topic_prefix, "--json")
        run = partial(dynasync, env=env)
        ran = await asyncio.to_thread(run, "mailbox", "test", user.upn, "--enable", *args)
        report: dict[str, Any] = json.loads(ran.out)
        assert ran.code == 1 and "1 check(s) failed" in ran.err
        assert (report["passed"], report["enabled"], report["status"]) == (False, False, "approved")
        on = {"systemusers": [{"systemuserid": user.systemuser_id, "isdisabled": False}]}
        assert (await w.http.post(seed, json=on)).status_code < 300
        ran = await asyncio.to_thread(run, "mailbox", "test", user.upn, "--enable", *args)
        report = json.loads(ran.out)
        assert ran.code == 0, ran
        assert (report["passed"], report["enabled"], report["status"]) == (True, True, "enabled")
        assert (await w.store.load()).mailboxes[w.mailbox_id].status == "enabled"
        text = await asyncio.to_thread(run, "mailbox", "test", user.upn, *args[:-1])
        assert text.code == 0 and "PASS  dataverse" in text.out and "SKIP  webhook" in text.out

        # the Graph user gone: the user check fails, the folder reads are skipped
        gone = await w.http.delete(
            f"{w.graph}/v1.0/users/{w.mailbox_id}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert gone.status_code == 204, gone.text
        checks = await _check(w)
        assert checks["user"].result == "fail" and "404" in checks["user"].detail
        assert checks["read contacts"].result == "skip"


async def test_the_webhook_round_trip_passes_against_the_receiver(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    async with open_world(kafka_bootstrap, tmp_path, users=1) as w:
        port = free_port()
        public = f"http://127.0.0.1:{port}"
        settings = w.settings.model_copy(
            update={
                "graph": GraphSettings(
                    base_url=w.settings.graph.base_url, static_token=TOKEN, notification_url=public
                ),
                "receiver": ReceiverSettings(host="127.0.0.1", port=port),
            }
        )
        async with Pipeline(settings, await w.store.load(), RuntimeOptions()):
            checks = await _check(w, settings)
        webhook = checks["validation round trip"]
        assert webhook.result == "pass", webhook
        assert webhook.took_ms < 10_000
