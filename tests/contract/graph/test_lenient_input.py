"""Input Graph accepts though it is not in Graph's own spelling, and what it still refuses.

Enum members are matched case-insensitively (the sendMail docs send ``"contentType": "Text"``)
and answered in Graph's casing; booleans may come as JSON strings (``"saveToSentItems":
"false"`` in the same docs, ``"isOnlineMeeting": "false"`` from long-lived clients).
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Graph

ALICE = "users/alice@contoso.test"


def _event(**extra: Any) -> dict[str, Any]:
    return {
        "subject": "Review",
        "start": {"dateTime": "2030-03-04T09:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2030-03-04T10:00:00", "timeZone": "UTC"},
        **extra,
    }


async def test_send_mail_as_in_the_docs_with_text_content_type_and_string_boolean(
    graph: Graph,
) -> None:
    await graph.user("alice")
    await graph.user("bob")
    sent = await graph.raw.post(
        f"{graph.api}/{ALICE}/sendMail",
        json={
            "message": {
                "subject": "Meet for lunch?",
                "body": {"contentType": "Text", "content": "The new cafeteria is open."},
                "toRecipients": [{"emailAddress": {"address": "bob@contoso.test"}}],
            },
            "saveToSentItems": "false",
        },
    )
    assert sent.status_code == 202, sent.text
    inbox = await graph.raw.get(f"{graph.api}/users/bob@contoso.test/mailFolders/inbox/messages")
    [message] = inbox.json()["value"]
    assert message["body"] == {"contentType": "text", "content": "The new cafeteria is open."}
    kept = await graph.raw.get(f"{graph.api}/{ALICE}/mailFolders/sentitems/messages")
    assert kept.json()["value"] == []


async def test_message_enums_in_any_case_come_back_in_graphs_casing(graph: Graph) -> None:
    await graph.user("alice")
    created = await graph.raw.post(
        f"{graph.api}/{ALICE}/messages",
        json={
            "subject": "Casing",
            "body": {"contentType": "HTML", "content": "<p>x</p>"},
            "importance": "High",
            "inferenceClassification": "OTHER",
            "flag": {"flagStatus": "Flagged"},
            "isRead": "TRUE",
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["body"]["contentType"] == "html" and body["importance"] == "high"
    assert body["inferenceClassification"] == "other"
    assert body["flag"]["flagStatus"] == "flagged" and body["isRead"] is True
    again = (await graph.raw.get(f"{graph.api}/{ALICE}/messages/{body['id']}")).json()
    assert again["importance"] == "high" and again["body"]["contentType"] == "html"
    found = await graph.raw.get(f"{graph.api}/{ALICE}/messages?$filter=importance eq 'HIGH'")
    assert [m["id"] for m in found.json()["value"]] == [body["id"]]


async def test_event_enums_and_string_booleans(graph: Graph) -> None:
    await graph.user("alice")
    created = await graph.raw.post(
        f"{graph.api}/{ALICE}/events",
        json=_event(
            showAs="Tentative",
            sensitivity="PRIVATE",
            importance="Low",
            isOnlineMeeting="false",
            isReminderOn="False",
            attendees=[
                {"emailAddress": {"address": "bob@contoso.test"}, "type": "Required"},
                {"emailAddress": {"address": "room@contoso.test"}, "type": "RESOURCE"},
            ],
            location={"displayName": "Room 1", "locationType": "ConferenceRoom"},
            recurrence={
                "pattern": {"type": "Weekly", "interval": 1, "daysOfWeek": ["Monday"]},
                "range": {"type": "NoEnd", "startDate": "2030-03-04"},
            },
        ),
    )
    assert created.status_code == 201, created.text
    event = created.json()
    assert (event["showAs"], event["sensitivity"], event["importance"]) == (
        "tentative",
        "private",
        "low",
    )
    assert event["isOnlineMeeting"] is False and event["isReminderOn"] is False
    assert [a["type"] for a in event["attendees"]] == ["required", "resource"]
    assert event["location"]["locationType"] == "conferenceRoom"
    assert event["recurrence"]["pattern"]["type"] == "weekly"
    assert event["recurrence"]["pattern"]["daysOfWeek"] == ["monday"]
    assert event["recurrence"]["range"]["type"] == "noEnd"
    assert event["type"] == "seriesMaster"


async def test_online_meeting_provider_is_writable(graph: Graph) -> None:
    await graph.user("alice")
    plain = (await graph.raw.post(f"{graph.api}/{ALICE}/events", json=_event())).json()
    assert plain["onlineMeetingProvider"] == "unknown" and plain["onlineMeeting"] is None
    assert plain["isOnlineMeeting"] is False
    online = await graph.raw.post(
        f"{graph.api}/{ALICE}/events",
        json=_event(isOnlineMeeting=True, onlineMeetingProvider="TeamsForBusiness"),
    )
    assert online.status_code == 201, online.text
    body = online.json()
    assert body["isOnlineMeeting"] is True and body["onlineMeetingProvider"] == "teamsForBusiness"
    assert body["onlineMeeting"]["joinUrl"].startswith("https://")
    patched = await graph.raw.patch(
        f"{graph.api}/{ALICE}/events/{plain['id']}", json={"isOnlineMeeting": "true"}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["isOnlineMeeting"] is True
    assert patched.json()["onlineMeetingProvider"] == "teamsForBusiness"
    assert patched.json()["onlineMeeting"]["joinUrl"]
    selected = await graph.raw.get(
        f"{graph.api}/{ALICE}/events/{body['id']}?$select=onlineMeetingProvider,onlineMeeting"
    )
    assert selected.json()["onlineMeetingProvider"] == "teamsForBusiness"


async def test_task_enums_in_any_case(graph: Graph) -> None:
    await graph.user("alice")
    lists = (await graph.raw.get(f"{graph.api}/{ALICE}/todo/lists")).json()["value"]
    created = await graph.raw.post(
        f"{graph.api}/{ALICE}/todo/lists/{lists[0]['id']}/tasks",
        json={"title": "File", "status": "Completed", "importance": "HIGH"},
    )
    assert created.status_code == 201, created.text
    task = created.json()
    assert task["status"] == "completed" and task["importance"] == "high"
    assert task["completedDateTime"]["timeZone"] == "UTC"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("messages", {"body": {"contentType": "markdown", "content": "x"}}),
        ("messages", {"importance": 3}),
        ("messages", {"importance": "urgent"}),
        ("messages", {"isRead": "yes"}),
        ("messages", {"isRead": 1}),
        ("events", _event(isOnlineMeeting="maybe")),
        ("events", _event(isOnlineMeeting=0)),
        ("events", _event(onlineMeetingProvider="zoom")),
        ("events", _event(onlineMeetingProvider=True)),
        ("events", _event(showAs="")),
        ("events", _event(location={"locationType": "moon"})),
        ("sendMail", {"message": {"subject": "x"}, "saveToSentItems": "nope"}),
    ],
)
async def test_malformed_values_are_still_400(graph: Graph, path: str, body: Any) -> None:
    await graph.user("alice")
    answer = await graph.raw.post(f"{graph.api}/{ALICE}/{path}", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "RequestBodyRead" and error["message"]
    assert error["innerError"]["request-id"]
