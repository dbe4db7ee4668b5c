"""The whole pipeline on the real broker between the two emulators (in-process, ephemeral
ports): a contact created in Dataverse for the mailbox's user appears in that Outlook mailbox,
and an Outlook edit of it flows back to the CRM row, each within 5 s at idle."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.proc import PipelineProcess
from tests.e2e.world import (
    World,
    by_surname,
    crm_contact_in_outlook,
    eventually,
    user_id,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

USER = user_id(0)
IDLE_BUDGET_S = 5.0


async def test_contact_both_ways_within_5s(world: World) -> None:
    w = world
    async with w.pipeline():
        # warm-up (not timed): partition assignment and the first full syncs
        await crm_contact_in_outlook(w, "Warm", f"Up{uuid.uuid4().hex[:6]}", "w@x.test", 90)

        # (a) CRM → Outlook
        last = f"Lee{uuid.uuid4().hex[:6]}"
        row_id, contact, to_outlook = await crm_contact_in_outlook(
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
        assert len(by_surname(await w.outlook_contacts(), last)) == 1
        assert [c["firstname"] for c in await w.crm_contacts() if c["lastname"] == last] == ["Anne"]
        (again,) = by_surname(await w.outlook_contacts(), last)
        assert again["givenName"] == "Anne"
    print(f"\nlatency CRM->Outlook {to_outlook:.2f}s, Outlook->CRM {to_crm:.2f}s")
    assert to_outlook <= IDLE_BUDGET_S, f"CRM -> Outlook took {to_outlook:.2f}s"
    assert to_crm <= IDLE_BUDGET_S, f"Outlook -> CRM took {to_crm:.2f}s"


async def test_dynasync_run_process_syncs_and_stops_on_sigterm(
    world: World, tmp_path: Path
) -> None:
    w = world
    proc = PipelineProcess(w, tmp_path / "pipeline.log")
    async with proc:
        assert "1 enabled mailbox(es)" in proc.log_text()
        _, contact, _ = await crm_contact_in_outlook(
            w, "Proc", f"Ess{uuid.uuid4().hex[:6]}", "p@x.test", 90
        )
        assert contact["givenName"] == "Proc"
    assert proc.proc is not None and proc.proc.returncode == 0
    assert "dynasync run: stopped" in proc.log_text()


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
        row_id, contact, _ = await crm_contact_in_outlook(w, "Rex", last, "rex@x.test", 90)
    # nothing runs: edit both sides (different fields), then start a new pipeline process
    resp = await w.outlook("PATCH", f"contacts/{contact['id']}", {"givenName": "Rexford"})
    assert resp.status_code == 200, resp.text
    resp = await w.crm("PATCH", f"contacts({row_id})", {"jobtitle": "Pilot"})
    assert resp.status_code in (200, 204), resp.text
    async with w.pipeline():

        async def converged() -> bool | None:
            row = await w.crm_contact(row_id)
            mine = by_surname(await w.outlook_contacts(), last)
            done = (
                row.get("firstname") == "Rexford"
                and len(mine) == 1
                and mine[0].get("jobTitle") == "Pilot"
            )
            return True if done else None

        _, took = await eventually(converged, 90, "edits made while stopped")
        await asyncio.sleep(3)
        assert len(by_surname(await w.outlook_contacts(), last)) == 1
        assert [c["contactid"] for c in await w.crm_contacts() if c["lastname"] == last] == [row_id]
    print(f"\ncatch-up after restart {took:.2f}s")


async def test_crm_task_and_appointment_reach_outlook(world: World) -> None:
    w = world
    async with w.pipeline():
        await crm_contact_in_outlook(w, "Warm", f"Up{uuid.uuid4().hex[:6]}", "w@x.test", 90)
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


async def test_a_crashed_stream_processor_is_reported(world: World) -> None:
    async with world.pipeline() as pipeline:
        assert pipeline.failure() is None
        assert pipeline.app is not None
        pipeline.app.crash(RuntimeError("boom"))
        failure = pipeline.failure()
        assert failure is not None and "boom" in failure
    assert pipeline.app is None and pipeline.failure() is None
