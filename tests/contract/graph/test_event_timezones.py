"""Event times and ``Prefer: outlook.timezone``: Graph answers in UTC without it and in the
named zone with it (all-day events keep their own); Windows and IANA zone names both work."""

from __future__ import annotations

import pytest

from tests.contract.graph.conftest import Graph

ZONES = ["Nepal Standard Time", "Asia/Kathmandu", "Newfoundland Standard Time"]


@pytest.mark.parametrize("zone", ZONES)
async def test_event_times_follow_the_preferred_zone(graph: Graph, zone: str) -> None:
    uid = await graph.user("tz")
    body = {
        "subject": "zoned",
        "start": {"dateTime": "2026-07-01T18:45:00", "timeZone": "Nepal Standard Time"},
        "end": {"dateTime": "2026-07-01T20:15:00", "timeZone": "Nepal Standard Time"},
    }
    made = await graph.raw.post(f"{graph.api}/users/{uid}/events", json=body)
    assert made.status_code == 201, made.text
    assert made.json()["start"] == {"dateTime": "2026-07-01T13:00:00.0000000", "timeZone": "UTC"}
    assert made.json()["originalStartTimeZone"] == "Nepal Standard Time"
    event_id = made.json()["id"]

    plain = await graph.raw.get(f"{graph.api}/users/{uid}/events/{event_id}")
    assert plain.json()["end"] == {"dateTime": "2026-07-01T14:30:00.0000000", "timeZone": "UTC"}

    prefer = {"Prefer": f'IdType="ImmutableId", outlook.timezone="{zone}"'}
    listed = await graph.raw.get(f"{graph.api}/users/{uid}/events", headers=prefer)
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["value"]
    expected = {
        "Nepal Standard Time": "2026-07-01T18:45:00.0000000",
        "Asia/Kathmandu": "2026-07-01T18:45:00.0000000",
        "Newfoundland Standard Time": "2026-07-01T10:30:00.0000000",  # NDT, UTC-02:30
    }[zone]
    assert item["start"] == {"dateTime": expected, "timeZone": zone}


async def test_unknown_preferred_zone_is_refused(graph: Graph) -> None:
    uid = await graph.user("tz2")
    body = {
        "subject": "z",
        "start": {"dateTime": "2026-07-01T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2026-07-01T11:00:00", "timeZone": "UTC"},
    }
    assert (await graph.raw.post(f"{graph.api}/users/{uid}/events", json=body)).status_code == 201
    resp = await graph.raw.get(
        f"{graph.api}/users/{uid}/events", headers={"Prefer": 'outlook.timezone="Mars/Olympus"'}
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "TimeZoneNotSupportedException"
