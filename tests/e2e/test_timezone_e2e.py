"""An Outlook event kept in a time zone outside the connector's Windows zone table reaches its
CRM appointment with the right UTC times: the readers ask Graph for event times in UTC
(``Prefer: outlook.timezone="UTC"``), and the Graph emulator converts as Graph does."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.graph.mapping import WINDOWS_ZONES
from tests.e2e.world import World, crm_contact_in_outlook, eventually, user_id

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@pytest.mark.parametrize("zone", ["Nepal Standard Time", "Asia/Kathmandu"])
async def test_event_in_any_zone_reaches_crm_in_utc(world: World, zone: str) -> None:
    assert zone not in WINDOWS_ZONES  # outside the table the reader once depended on
    w = world
    async with w.pipeline():
        await crm_contact_in_outlook(w, "Warm", f"Up{uuid.uuid4().hex[:6]}", "w@x.test", 90)
        title = f"Kathmandu {uuid.uuid4().hex[:6]}"
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
                        "partyid_systemuser@odata.bind": f"/systemusers({user_id(0)})",
                        "participationtypemask": 7,
                    }
                ],
            },
        )
        assert resp.status_code in (200, 201), resp.text
        appointment_id = resp.json()["activityid"]

        async def event_arrived() -> dict[str, Any] | None:
            events = (await w.outlook("GET", "events?$top=1000")).json()["value"]
            found = [e for e in events if e.get("subject") == title]
            return dict(found[0]) if found else None

        event, _ = await eventually(event_arrived, 30, "the CRM appointment in Outlook")

        # the user moves it in Outlook, in Nepal time (UTC+05:45): 18:45-20:15 is 13:00-14:30Z
        moved = await w.outlook(
            "PATCH",
            f"events/{event['id']}",
            {
                "subject": f"{title} (moved)",
                "start": {"dateTime": f"{day}T18:45:00", "timeZone": zone},
                "end": {"dateTime": f"{day}T20:15:00", "timeZone": zone},
            },
        )
        assert moved.status_code == 200, moved.text
        assert moved.json()["originalStartTimeZone"] == zone

        async def in_crm() -> dict[str, Any] | None:
            row = (await w.crm("GET", f"appointments({appointment_id})")).json()
            return row if row.get("subject") == f"{title} (moved)" else None

        row, _ = await eventually(in_crm, 30, "the moved event in CRM")
        assert _utc(row["scheduledstart"]) == _utc(f"{day}T13:00:00Z")
        assert _utc(row["scheduledend"]) == _utc(f"{day}T14:30:00Z")
