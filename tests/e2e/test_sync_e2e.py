"""The whole pipeline on the real broker between the two emulators (in-process, ephemeral
ports): a contact created in Dataverse for the mailbox's user appears in that Outlook mailbox,
and an Outlook edit of it flows back to the CRM row, each within 5 s at idle."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from aiohttp.test_utils import TestServer

from emulators.dataverse import EmulatorConfig as DataverseConfig
from emulators.dataverse import create_app as create_dataverse
from emulators.graph.app import create_app as create_graph
from emulators.graph.config import EmulatorConfig as GraphConfig
from pipeline.cli.topics import TopicMismatchError, ensure_topics
from pipeline.config_store import ConfigStore
from pipeline.runtime import Pipeline, RuntimeOptions
from pipeline.settings import DataverseSettings, GraphSettings, KafkaSettings, Settings
from schemas.models import Mailbox, Organisation

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

TOKEN = "e2e-token"
USER = "00000000-0000-4000-8000-00000000e2e1"
ORG = "org-e2e"
IDLE_BUDGET_S = 5.0
T = TypeVar("T")


@dataclass
class World:
    """Both emulators, the registered mailbox and the settings of a pipeline over them."""

    http: httpx.AsyncClient
    graph: str
    dataverse: str
    mailbox_id: str
    upn: str
    settings: Settings
    store: ConfigStore

    @property
    def api(self) -> str:
        return f"{self.dataverse}/api/data/v9.2"

    async def crm(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """A request to Dataverse as the mailbox's CRM user."""
        headers = {"Authorization": f"Bearer {TOKEN}", "MSCRMCallerID": USER}
        if method in ("POST", "PATCH"):
            headers["Prefer"] = "return=representation"
        return await self.http.request(method, f"{self.api}/{path}", json=body, headers=headers)

    async def outlook(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """A request to Graph as the mailbox's user in Outlook."""
        url = f"{self.graph}/v1.0/users/{self.mailbox_id}/{path}"
        for _ in range(20):
            resp = await self.http.request(
                method, url, json=body, headers={"Authorization": f"Bearer {TOKEN}"}
            )
            if resp.status_code != 429:
                return resp
            await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
        return resp

    async def outlook_contacts(self) -> list[dict[str, Any]]:
        resp = await self.outlook("GET", "contacts?$top=1000")
        assert resp.status_code == 200, resp.text
        value = resp.json()["value"]
        assert isinstance(value, list)
        return value

    async def crm_contact(self, row_id: str) -> dict[str, Any]:
        resp = await self.crm("GET", f"contacts({row_id})")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert isinstance(body, dict)
        return body

    async def crm_contacts(self) -> list[dict[str, Any]]:
        resp = await self.crm("GET", "contacts")
        assert resp.status_code == 200, resp.text
        value = resp.json()["value"]
        assert isinstance(value, list)
        return value

    def pipeline(self) -> Pipeline:
        return Pipeline(self.settings, self.store.snapshot, RuntimeOptions())


async def _serve(app: Any) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def _topics(kafka: KafkaSettings) -> None:
    for attempt in range(10):  # metadata may lag right after CreateTopics
        try:
            await ensure_topics(kafka)
            return
        except TopicMismatchError:
            if attempt == 9:
                raise
            await asyncio.sleep(0.5)


@pytest.fixture
async def world(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[World]:
    graph = await _serve(create_graph(GraphConfig()))
    dataverse = await _serve(create_dataverse(DataverseConfig()))
    run = uuid.uuid4().hex[:10]
    kafka = KafkaSettings(bootstrap=kafka_bootstrap, topic_prefix=f"e2e.{run}.", partitions=2)
    await _topics(kafka)
    graph_url = f"http://127.0.0.1:{graph.port}"
    dv_url = f"http://127.0.0.1:{dataverse.port}"
    settings = Settings(
        app_id=f"dynasync-e2e-{run}",
        kafka=kafka,
        data_dir=tmp_path,
        graph=GraphSettings(base_url=f"{graph_url}/v1.0", static_token=TOKEN),
        dataverse=DataverseSettings(base_url=f"{dv_url}/api/data/v9.2", static_token=TOKEN),
    )
    async with httpx.AsyncClient(timeout=10) as http, ConfigStore(kafka) as store:
        upn = f"ann{run}@contoso.test"
        seeded = await http.post(
            f"{dv_url}/_emulator/seed",
            json={
                "systemusers": [
                    {"systemuserid": USER, "fullname": "Ann E2E", "internalemailaddress": upn}
                ]
            },
        )
        assert seeded.status_code < 300, seeded.text
        created = await http.post(
            f"{graph_url}/v1.0/users",
            json={"userPrincipalName": upn, "mail": upn, "displayName": "Ann E2E"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert created.status_code == 201, created.text
        mailbox_id = created.json()["id"]
        await store.put(Organisation(org_id=ORG, url=dv_url, display_name="E2E"))
        await store.put(
            Mailbox(
                mailbox_id=mailbox_id,
                upn=upn,
                org_id=ORG,
                systemuser_id=USER,
                status="enabled",
            )
        )
        await store.load()  # the snapshot as a fresh process would read it from the topic
        assert mailbox_id in store.snapshot.mailboxes
        try:
            yield World(http, graph_url, dv_url, mailbox_id, upn, settings, store)
        finally:
            await graph.close()
            await dataverse.close()


async def eventually(
    probe: Callable[[], Awaitable[T | None]], within: float, what: str, every: float = 0.05
) -> tuple[T, float]:
    """Poll ``probe`` until it returns a value; that value and the seconds it took."""
    start = time.monotonic()
    while True:
        found = await probe()
        if found is not None:
            return found, time.monotonic() - start
        if time.monotonic() - start > within:
            raise AssertionError(f"{what}: not seen within {within:.0f}s")
        await asyncio.sleep(every)


def _by_name(contacts: list[dict[str, Any]], surname: str) -> list[dict[str, Any]]:
    return [c for c in contacts if c.get("surname") == surname]


async def _crm_contact_in_outlook(
    w: World, first: str, last: str, email: str, within: float
) -> tuple[str, dict[str, Any], float]:
    """Create a contact in Dataverse; wait for it in Outlook. (row id, Outlook contact, s)."""
    resp = await w.crm(
        "POST", "contacts", {"firstname": first, "lastname": last, "emailaddress1": email}
    )
    assert resp.status_code in (200, 201), resp.text
    row_id = resp.json()["contactid"]

    async def arrived() -> dict[str, Any] | None:
        found = _by_name(await w.outlook_contacts(), last)
        return found[0] if found else None

    contact, took = await eventually(arrived, within, f"CRM contact {last} in Outlook")
    return row_id, contact, took


async def test_contact_both_ways_within_5s(world: World) -> None:
    w = world
    async with w.pipeline():
        # warm-up (not timed): partition assignment and the first full syncs
        await _crm_contact_in_outlook(w, "Warm", f"Up{uuid.uuid4().hex[:6]}", "w@x.test", 90)

        # (a) CRM → Outlook
        last = f"Lee{uuid.uuid4().hex[:6]}"
        row_id, contact, to_outlook = await _crm_contact_in_outlook(
            w, "Ann", last, "ann.lee@fabrikam.test", 30
        )
        assert contact["givenName"] == "Ann"
        assert [e["address"] for e in contact["emailAddresses"]] == ["ann.lee@fabrikam.test"]

        # (b) Outlook → CRM
        resp = await w.outlook("PATCH", f"contacts/{contact['id']}", {"givenName": "Anne"})
        assert resp.status_code == 200, resp.text

        async def crm_updated() -> dict[str, Any] | None:
            row = await w.crm_contact(row_id)
            return row if row.get("firstname") == "Anne" else None

        row, to_crm = await eventually(crm_updated, 30, "Outlook edit in CRM")
        assert row["lastname"] == last and row["emailaddress1"] == "ann.lee@fabrikam.test"

        # quiet: no duplicates and no echo loop on either side
        await asyncio.sleep(3)
        assert len(_by_name(await w.outlook_contacts(), last)) == 1
        assert [c["firstname"] for c in await w.crm_contacts() if c["lastname"] == last] == ["Anne"]
        (again,) = _by_name(await w.outlook_contacts(), last)
        assert again["givenName"] == "Anne"
    print(f"\nlatency CRM->Outlook {to_outlook:.2f}s, Outlook->CRM {to_crm:.2f}s")
    assert to_outlook <= IDLE_BUDGET_S, f"CRM -> Outlook took {to_outlook:.2f}s"
    assert to_crm <= IDLE_BUDGET_S, f"Outlook -> CRM took {to_crm:.2f}s"


async def _wait_line(stream: asyncio.StreamReader, text: str, within: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + within
    while not any(text in line for line in lines):
        left = deadline - time.monotonic()
        assert left > 0, f"{text!r} not logged; last lines: {lines[-20:]}"
        raw = await asyncio.wait_for(stream.readline(), left)
        assert raw, f"process ended before {text!r}; last lines: {lines[-20:]}"
        lines.append(raw.decode(errors="replace").rstrip())
    return lines


async def test_dynasync_run_process_syncs_and_stops_on_sigterm(world: World) -> None:
    w = world
    env = {
        **os.environ,
        "DYNASYNC_APP_ID": w.settings.app_id,
        "DYNASYNC_KAFKA__TOPIC_PREFIX": w.settings.kafka.topic_prefix,
        "DYNASYNC_KAFKA__PARTITIONS": str(w.settings.kafka.partitions),
        "DYNASYNC_DATA_DIR": str(w.settings.data_dir),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pipeline.cli",
        "run",
        "--bootstrap",
        w.settings.kafka.bootstrap,
        "--graph-url",
        f"{w.graph}/v1.0",
        "--graph-token",
        TOKEN,
        "--dataverse-token",
        TOKEN,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        lines = await _wait_line(proc.stderr, "dynasync run: ready", 60)
        assert "1 enabled mailbox(es)" in lines[-1]
        drain = asyncio.create_task(proc.stderr.read())
        _, contact, _ = await _crm_contact_in_outlook(
            w, "Proc", f"Ess{uuid.uuid4().hex[:6]}", "p@x.test", 90
        )
        assert contact["givenName"] == "Proc"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert b"dynasync run: stopped" in await drain
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--crm-poll", "-1"], "expected seconds within"),
        (["--outlook-poll", "soon"], "expected seconds, got 'soon'"),
        (["--graph-url", "ftp://graph"], "invalid setting graph.base_url"),
        (["--bootstrap", "not a host"], "invalid setting kafka.bootstrap"),
    ],
)
def test_dynasync_run_refuses_garbage_arguments(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert message in done.stderr


async def test_outlook_edit_while_stopped_is_applied_once_after_restart(world: World) -> None:
    w = world
    last = f"Roe{uuid.uuid4().hex[:6]}"
    async with w.pipeline():
        row_id, contact, _ = await _crm_contact_in_outlook(w, "Rex", last, "rex@x.test", 90)
    # nothing runs: edit both sides (different fields), then start a new pipeline process
    resp = await w.outlook("PATCH", f"contacts/{contact['id']}", {"givenName": "Rexford"})
    assert resp.status_code == 200, resp.text
    resp = await w.crm("PATCH", f"contacts({row_id})", {"jobtitle": "Pilot"})
    assert resp.status_code in (200, 204), resp.text
    async with w.pipeline():

        async def converged() -> bool | None:
            row = await w.crm_contact(row_id)
            mine = _by_name(await w.outlook_contacts(), last)
            done = (
                row.get("firstname") == "Rexford"
                and len(mine) == 1
                and mine[0].get("jobTitle") == "Pilot"
            )
            return True if done else None

        _, took = await eventually(converged, 90, "edits made while stopped")
        await asyncio.sleep(3)
        assert len(_by_name(await w.outlook_contacts(), last)) == 1
        assert [c["contactid"] for c in await w.crm_contacts() if c["lastname"] == last] == [row_id]
    print(f"\ncatch-up after restart {took:.2f}s")


async def test_crm_task_and_appointment_reach_outlook(world: World) -> None:
    w = world
    async with w.pipeline():
        await _crm_contact_in_outlook(w, "Warm", f"Up{uuid.uuid4().hex[:6]}", "w@x.test", 90)
        subject = f"Call back {uuid.uuid4().hex[:6]}"
        resp = await w.crm("POST", "tasks", {"subject": subject})
        assert resp.status_code in (200, 201), resp.text

        async def task_arrived() -> dict[str, Any] | None:
            lists = (await w.outlook("GET", "todo/lists")).json()["value"]
            for lst in lists:
                tasks = (await w.outlook("GET", f"todo/lists/{lst['id']}/tasks")).json()["value"]
                found = [t for t in tasks if t.get("title") == subject]
                if found:
                    return {**found[0], "list_id": lst["id"]}
            return None

        todo, task_took = await eventually(task_arrived, 30, "CRM task in To Do")
        task_id = resp.json()["activityid"]

        title = f"Review {uuid.uuid4().hex[:6]}"
        # inside the readers' calendarView window (30 days back, 365 ahead)
        day = (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%d")
        resp = await w.crm(
            "POST",
            "appointments",
            {
                "subject": title,
                "scheduledstart": f"{day}T10:00:00Z",
                "scheduledend": f"{day}T11:00:00Z",
                "appointment_activity_parties": [
                    {
                        "partyid_systemuser@odata.bind": f"/systemusers({USER})",
                        "participationtypemask": 7,
                    }
                ],
            },
        )
        assert resp.status_code in (200, 201), resp.text

        async def event_arrived() -> dict[str, Any] | None:
            events = (await w.outlook("GET", "events?$top=1000")).json()["value"]
            found = [e for e in events if e.get("subject") == title]
            return dict(found[0]) if found else None

        event, event_took = await eventually(event_arrived, 30, "CRM appointment in Outlook")
        appointment_id = resp.json()["activityid"]

        # and back: edits in To Do and in the calendar reach the CRM rows
        list_id = todo["list_id"]
        edited_at = time.monotonic()
        edit = await w.outlook(
            "PATCH", f"todo/lists/{list_id}/tasks/{todo['id']}", {"title": f"{subject} (done)"}
        )
        assert edit.status_code == 200, edit.text
        edit = await w.outlook("PATCH", f"events/{event['id']}", {"subject": f"{title} (moved)"})
        assert edit.status_code == 200, edit.text

        async def crm_rows() -> bool | None:
            task_row = (await w.crm("GET", f"tasks({task_id})")).json()
            appointment_row = (await w.crm("GET", f"appointments({appointment_id})")).json()
            done = (
                task_row.get("subject") == f"{subject} (done)"
                and appointment_row.get("subject") == f"{title} (moved)"
            )
            return True if done else None

        await eventually(crm_rows, 30, "To Do and calendar edits in CRM")
        back_took = time.monotonic() - edited_at  # from the first of the two edits
    print(
        f"\nlatency CRM->To Do {task_took:.2f}s, CRM->calendar {event_took:.2f}s, "
        f"To Do + calendar -> CRM {back_took:.2f}s"
    )
    assert back_took <= IDLE_BUDGET_S
    assert event["start"]["dateTime"].startswith(f"{day}T10:00")
    assert task_took <= IDLE_BUDGET_S and event_took <= IDLE_BUDGET_S
