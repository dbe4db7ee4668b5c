"""``$orderby`` over paths into complex properties (``start/dateTime``), as the docs use it."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Graph

ALICE = "users/alice@contoso.test"
WINDOW = "startDateTime=2030-05-01T00:00:00Z&endDateTime=2030-06-01T00:00:00Z"


def _event(subject: str, day: int, hour: int = 9) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": {"dateTime": f"2030-05-{day:02}T{hour:02}:00:00", "timeZone": "UTC"},
        "end": {"dateTime": f"2030-05-{day:02}T{hour + 1:02}:00:00", "timeZone": "UTC"},
    }


async def _events(graph: Graph) -> None:
    await graph.user("alice")
    for subject, day, hour in (("B", 20, 9), ("A", 3, 14), ("C", 11, 8), ("A", 3, 9)):
        made = await graph.raw.post(f"{graph.api}/{ALICE}/events", json=_event(subject, day, hour))
        assert made.status_code == 201


def _starts(body: dict[str, Any]) -> list[str]:
    return [str(e["start"]["dateTime"])[:16] for e in body["value"]]


async def test_events_order_by_start_date_time(graph: Graph) -> None:
    await _events(graph)
    up = await graph.raw.get(f"{graph.api}/{ALICE}/events?$orderby=start/dateTime")
    assert up.status_code == 200, up.text
    assert _starts(up.json()) == [
        "2030-05-03T09:00",
        "2030-05-03T14:00",
        "2030-05-11T08:00",
        "2030-05-20T09:00",
    ]
    down = await graph.raw.get(f"{graph.api}/{ALICE}/events?$orderby=start/dateTime desc")
    assert _starts(down.json()) == list(reversed(_starts(up.json())))
    both = await graph.raw.get(
        f"{graph.api}/{ALICE}/events?$orderby=subject desc,start/dateTime desc&$select=subject"
    )
    assert [e["subject"] for e in both.json()["value"]] == ["C", "B", "A", "A"]


async def test_calendar_view_orders_by_start_with_select_and_filter(graph: Graph) -> None:
    await _events(graph)
    url = (
        f"{graph.api}/{ALICE}/calendarView?{WINDOW}&$orderby=start/dateTime desc"
        "&$select=subject&$filter=subject ne 'B'&$top=2"
    )
    first = await graph.raw.get(url)
    assert first.status_code == 200, first.text
    body = first.json()
    assert [e["subject"] for e in body["value"]] == ["C", "A"]
    assert all(set(e) <= {"id", "@odata.etag", "subject"} for e in body["value"])
    rest = (await graph.raw.get(body["@odata.nextLink"])).json()
    assert [e["subject"] for e in rest["value"]] == ["A"] and "@odata.nextLink" not in rest


async def test_contacts_order_by_a_nested_address(graph: Graph) -> None:
    await graph.user("alice")
    for name, city in (("Ann", "Zurich"), ("Bea", None), ("Cid", "Athens")):
        body: dict[str, Any] = {"givenName": name}
        if city:
            body["businessAddress"] = {"city": city}
        await graph.raw.post(f"{graph.api}/{ALICE}/contacts", json=body)
    found = await graph.raw.get(f"{graph.api}/{ALICE}/contacts?$orderby=businessAddress/city")
    assert found.status_code == 200, found.text
    assert [c["givenName"] for c in found.json()["value"]] == ["Bea", "Cid", "Ann"]


@pytest.mark.parametrize(
    "clause",
    [
        "start/nonsense",
        "start/",
        "/dateTime",
        "start//dateTime",
        "start/dateTime upward",
        "start/dateTime/x",
        "nowhere/dateTime",
        "start/dateTime asc desc",
    ],
)
async def test_malformed_order_by_is_400(graph: Graph, clause: str) -> None:
    await graph.user("alice")
    for collection in ("events", f"calendarView?{WINDOW}&"):
        sep = "" if collection.endswith("&") else "?"
        answer = await graph.raw.get(f"{graph.api}/{ALICE}/{collection}{sep}$orderby={clause}")
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["code"] == "BadRequest" and "$orderby" in error["message"]
