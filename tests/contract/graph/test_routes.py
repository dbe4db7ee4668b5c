"""Documented routes, through the SDK where it has them: calendar and calendars, events in a
calendar, event instances, To Do checklist items and list delta, message copy, createReply,
createReplyAll and createForward (JSON and MIME)."""

from __future__ import annotations

import base64
from datetime import date
from typing import Any

import pytest
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.checklist_item import ChecklistItem
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.day_of_week import DayOfWeek
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.event import Event
from msgraph.generated.models.event_type import EventType
from msgraph.generated.models.message import Message
from msgraph.generated.models.patterned_recurrence import PatternedRecurrence
from msgraph.generated.models.recipient import Recipient
from msgraph.generated.models.recurrence_pattern import RecurrencePattern
from msgraph.generated.models.recurrence_pattern_type import RecurrencePatternType
from msgraph.generated.models.recurrence_range import RecurrenceRange
from msgraph.generated.models.recurrence_range_type import RecurrenceRangeType
from msgraph.generated.models.todo_task import TodoTask
from msgraph.generated.models.todo_task_list import TodoTaskList
from msgraph.generated.users.item.events.item.instances.instances_request_builder import (
    InstancesRequestBuilder,
)
from msgraph.generated.users.item.messages.item.copy.copy_post_request_body import (
    CopyPostRequestBody,
)
from msgraph.generated.users.item.messages.item.create_forward.create_forward_post_request_body import (  # noqa: E501
    CreateForwardPostRequestBody,
)
from msgraph.generated.users.item.messages.item.create_reply_all.create_reply_all_post_request_body import (  # noqa: E501
    CreateReplyAllPostRequestBody,
)
from msgraph.generated.users.item.todo.lists.item.tasks.item.todo_task_item_request_builder import (
    TodoTaskItemRequestBuilder,
)

from .conftest import Graph

ALICE = "users/alice@contoso.test"


def _at(text: str) -> DateTimeTimeZone:
    return DateTimeTimeZone(date_time=text, time_zone="UTC")


def _to(address: str) -> Recipient:
    return Recipient(email_address=EmailAddress(address=address))


async def test_calendar_and_calendars(graph: Graph) -> None:
    await graph.user("alice")
    me = graph.sdk.users.by_user_id("alice@contoso.test")
    calendar = await me.calendar.get()
    assert calendar is not None and calendar.id and calendar.name == "Calendar"
    assert calendar.is_default_calendar is True and calendar.can_edit is True
    assert calendar.owner is not None and calendar.owner.address == "alice@contoso.test"
    listed = await me.calendars.get()
    assert listed is not None and [c.id for c in listed.value or []] == [calendar.id]
    one = await me.calendars.by_calendar_id(calendar.id).get()
    assert one is not None and one.id == calendar.id
    raw = await graph.raw.get(f"{graph.api}/{ALICE}/calendar?$select=name,owner")
    assert raw.status_code == 200
    body = raw.json()
    assert body["@odata.context"].endswith("/calendar/$entity")
    assert set(body) == {"@odata.context", "id", "name", "owner"}
    missing = await graph.raw.get(f"{graph.api}/{ALICE}/calendars/AAMkAnotacalendar")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "ErrorItemNotFound"
    bad = await graph.raw.get(f"{graph.api}/{ALICE}/calendar?$select=colour")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "BadRequest"


async def test_events_in_a_named_calendar(graph: Graph) -> None:
    await graph.user("alice")
    me = graph.sdk.users.by_user_id("alice@contoso.test")
    calendar = await me.calendar.get()
    assert calendar is not None and calendar.id
    in_calendar = me.calendars.by_calendar_id(calendar.id).events
    made = await in_calendar.post(
        Event(subject="Budget", start=_at("2030-02-01T10:00:00"), end=_at("2030-02-01T11:00:00"))
    )
    assert made is not None and made.id and made.subject == "Budget"
    everywhere = await me.events.get()
    assert everywhere is not None and [e.id for e in everywhere.value or []] == [made.id]
    again = await in_calendar.by_event_id(made.id).get()
    assert again is not None and again.subject == "Budget"
    patched = await in_calendar.by_event_id(made.id).patch(Event(subject="Budget v2"))
    assert patched is not None and patched.subject == "Budget v2"
    elsewhere = await graph.raw.post(
        f"{graph.api}/{ALICE}/calendars/AAMkAnotacalendar/events",
        json={
            "subject": "Lost",
            "start": {"dateTime": "2030-02-01T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2030-02-01T11:00:00", "timeZone": "UTC"},
        },
    )
    assert elsewhere.status_code == 404
    assert elsewhere.json()["error"]["code"] == "ErrorItemNotFound"
    broken = await graph.raw.post(
        f"{graph.api}/{ALICE}/calendars/{calendar.id}/events", json={"subject": 5}
    )
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "RequestBodyRead"
    await in_calendar.by_event_id(made.id).delete()
    assert (await graph.raw.get(f"{graph.api}/{ALICE}/events/{made.id}")).status_code == 404


async def test_event_instances_in_a_window(graph: Graph) -> None:
    await graph.user("alice")
    me = graph.sdk.users.by_user_id("alice@contoso.test")
    series = await me.events.post(
        Event(
            subject="Standup",
            start=_at("2030-04-01T09:00:00"),
            end=_at("2030-04-01T09:15:00"),
            recurrence=PatternedRecurrence(
                pattern=RecurrencePattern(
                    type=RecurrencePatternType.Weekly, interval=1, days_of_week=[DayOfWeek.Monday]
                ),
                range=RecurrenceRange(type=RecurrenceRangeType.NoEnd, start_date=date(2030, 4, 1)),
            ),
        )
    )
    assert series is not None and series.id
    params = InstancesRequestBuilder.InstancesRequestBuilderGetQueryParameters(
        start_date_time="2030-04-01T00:00:00.0000000", end_date_time="2030-04-30T00:00:00.0000000"
    )
    config = RequestConfiguration(query_parameters=params)
    instances = await me.events.by_event_id(series.id).instances.get(config)
    assert instances is not None
    items = instances.value or []
    assert [i.start.date_time[:10] for i in items if i.start and i.start.date_time] == [
        "2030-04-01",
        "2030-04-08",
        "2030-04-15",
        "2030-04-22",
        "2030-04-29",
    ]
    assert all(i.type == EventType.Occurrence and i.series_master_id == series.id for i in items)
    await me.events.by_event_id(items[1].id or "").patch(Event(subject="Standup (moved)"))
    await me.events.by_event_id(items[2].id or "").delete()
    instances = await me.events.by_event_id(series.id).instances.get(config)
    assert instances is not None
    assert [(i.type, i.subject) for i in instances.value or []] == [
        (EventType.Occurrence, "Standup"),
        (EventType.Exception, "Standup (moved)"),
        (EventType.Occurrence, "Standup"),
        (EventType.Occurrence, "Standup"),
    ]
    paged = await graph.raw.get(
        f"{graph.api}/{ALICE}/calendar/events/{series.id}/instances?"
        "startDateTime=2030-04-01T00:00:00Z&endDateTime=2030-04-30T00:00:00Z"
        "&$top=2&$select=subject,type"
    )
    assert paged.status_code == 200
    body = paged.json()
    assert body["@odata.context"].endswith(f"/events('{series.id}')/instances")
    assert [i["type"] for i in body["value"]] == ["occurrence", "exception"]
    assert "@odata.nextLink" in body
    assert all(set(i) <= {"id", "@odata.etag", "subject", "type"} for i in body["value"])
    for query in ("", "startDateTime=2030-04-01T00:00:00Z", "startDateTime=x&endDateTime=y"):
        bad = await graph.raw.get(f"{graph.api}/{ALICE}/events/{series.id}/instances?{query}")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "ErrorInvalidParameter"
    gone = await graph.raw.get(
        f"{graph.api}/{ALICE}/events/AAMkAnothing/instances?"
        "startDateTime=2030-04-01T00:00:00Z&endDateTime=2030-04-30T00:00:00Z"
    )
    assert gone.status_code == 404


async def test_checklist_items_crud_under_a_task(graph: Graph) -> None:
    await graph.user("alice")
    todo = graph.sdk.users.by_user_id("alice@contoso.test").todo
    task_list = await todo.lists.post(TodoTaskList(display_name="Party"))
    assert task_list is not None and task_list.id
    tasks = todo.lists.by_todo_task_list_id(task_list.id).tasks
    task = await tasks.post(TodoTask(title="Prepare"))
    assert task is not None and task.id
    items = tasks.by_todo_task_id(task.id).checklist_items
    cake = await items.post(ChecklistItem(display_name="buy cake"))
    assert cake is not None and cake.id and cake.display_name == "buy cake"
    assert cake.is_checked is False and cake.created_date_time is not None
    assert cake.checked_date_time is None
    await items.post(ChecklistItem(display_name="invite"))
    checked = await items.by_checklist_item_id(cake.id).patch(ChecklistItem(is_checked=True))
    assert checked is not None and checked.is_checked is True
    assert checked.checked_date_time is not None
    listed = await items.get()
    assert listed is not None
    assert sorted(i.display_name or "" for i in listed.value or []) == ["buy cake", "invite"]
    one = await items.by_checklist_item_id(cake.id).get()
    assert one is not None and one.is_checked is True
    params = TodoTaskItemRequestBuilder.TodoTaskItemRequestBuilderGetQueryParameters(
        expand=["checklistItems"]
    )
    expanded = await tasks.by_todo_task_id(task.id).get(
        RequestConfiguration(query_parameters=params)
    )
    assert expanded is not None
    assert sorted(i.display_name or "" for i in expanded.checklist_items or []) == [
        "buy cake",
        "invite",
    ]
    await items.by_checklist_item_id(cake.id).delete()
    with pytest.raises(APIError) as err:
        await items.by_checklist_item_id(cake.id).get()
    assert err.value.response_status_code == 404
    base = f"{graph.api}/{ALICE}/todo/lists/{task_list.id}/tasks/{task.id}/checklistItems"
    for body in (
        {},
        {"displayName": ""},
        {"displayName": "x", "isChecked": "maybe"},
        {"displayName": "x", "colour": "red"},
        {"displayName": 7},
    ):
        bad = await graph.raw.post(base, json=body)
        assert bad.status_code == 400, body
        assert bad.json()["error"]["message"]
    elsewhere = await graph.raw.post(
        f"{graph.api}/{ALICE}/todo/lists/{task_list.id}/tasks/AAMkAnothing/checklistItems",
        json={"displayName": "x"},
    )
    assert elsewhere.status_code == 404


async def test_todo_lists_delta(graph: Graph) -> None:
    await graph.user("alice")
    todo = graph.sdk.users.by_user_id("alice@contoso.test").todo
    first = await todo.lists.delta.get()
    assert first is not None and first.odata_delta_link
    assert [(lst.display_name) for lst in first.value or []] == ["Tasks"]
    made = await todo.lists.post(TodoTaskList(display_name="Errands"))
    other = await todo.lists.post(TodoTaskList(display_name="Old"))
    assert made is not None and made.id and other is not None and other.id
    changes = await todo.lists.delta.with_url(first.odata_delta_link).get()
    assert changes is not None and changes.odata_delta_link
    assert sorted(lst.display_name or "" for lst in changes.value or []) == ["Errands", "Old"]
    await todo.lists.by_todo_task_list_id(made.id).patch(TodoTaskList(display_name="Chores"))
    await todo.lists.by_todo_task_list_id(other.id).delete()
    raw = await graph.raw.get(changes.odata_delta_link)
    assert raw.status_code == 200
    body = raw.json()
    assert body["@odata.context"].endswith("#Collection(todoTaskList)")
    by_id = {item["id"]: item for item in body["value"]}
    assert by_id[made.id]["displayName"] == "Chores"
    assert by_id[other.id]["@removed"] == {"reason": "deleted"}
    bad = await graph.raw.get(f"{graph.api}/{ALICE}/todo/lists/delta?$deltatoken=garbage!")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "BadRequest"


async def _received(graph: Graph) -> dict[str, Any]:
    """Bob mails Alice and Carol, Dave in copy; Alice's copy of it."""
    for name in ("alice", "bob", "carol", "dave"):
        await graph.user(name)
    sent = await graph.raw.post(
        f"{graph.api}/users/bob@contoso.test/sendMail",
        json={
            "message": {
                "subject": "Plans",
                "body": {"contentType": "text", "content": "Shall we?"},
                "toRecipients": [
                    {"emailAddress": {"address": "alice@contoso.test"}},
                    {"emailAddress": {"address": "carol@contoso.test"}},
                ],
                "ccRecipients": [{"emailAddress": {"address": "dave@contoso.test"}}],
            }
        },
    )
    assert sent.status_code == 202
    inbox = await graph.raw.get(f"{graph.api}/{ALICE}/mailFolders/inbox/messages")
    [message] = inbox.json()["value"]
    return dict(message)


def _addresses(recipients: list[Recipient] | None) -> list[str]:
    return [r.email_address.address or "" for r in recipients or [] if r.email_address]


async def test_copy_keeps_the_original_and_adds_a_new_item(graph: Graph) -> None:
    original = await _received(graph)
    me = graph.sdk.users.by_user_id("alice@contoso.test")
    copy = await me.messages.by_message_id(original["id"]).copy.post(
        CopyPostRequestBody(destination_id="archive")
    )
    assert copy is not None and copy.id and copy.id != original["id"]
    assert copy.subject == "Plans"
    archive = await me.mail_folders.by_mail_folder_id("archive").get()
    assert archive is not None and copy.parent_folder_id == archive.id
    still = await me.messages.by_message_id(original["id"]).get()
    assert still is not None and still.parent_folder_id == original["parentFolderId"]
    for body, status in (({}, 400), ({"destinationId": "AAMkAnowhere"}, 404)):
        bad = await graph.raw.post(f"{graph.api}/{ALICE}/messages/{original['id']}/copy", json=body)
        assert bad.status_code == status and bad.json()["error"]["code"]


async def test_create_reply_all_and_reply_drafts(graph: Graph) -> None:
    original = await _received(graph)
    me = graph.sdk.users.by_user_id("alice@contoso.test")
    draft = await me.messages.by_message_id(original["id"]).create_reply_all.post(
        CreateReplyAllPostRequestBody(comment="Count me in")
    )
    assert draft is not None and draft.id and draft.is_draft is True
    assert draft.subject == "RE: Plans"
    assert _addresses(draft.to_recipients) == ["bob@contoso.test", "carol@contoso.test"]
    assert _addresses(draft.cc_recipients) == ["dave@contoso.test"]
    assert draft.conversation_id == original["conversationId"]
    assert draft.body is not None and "Count me in" in (draft.body.content or "")
    drafts = await me.mail_folders.by_mail_folder_id("drafts").get()
    assert drafts is not None and draft.parent_folder_id == drafts.id
    reply = await graph.raw.post(f"{graph.api}/{ALICE}/messages/{original['id']}/createReply")
    assert reply.status_code == 201
    assert [r["emailAddress"]["address"] for r in reply.json()["toRecipients"]] == [
        "bob@contoso.test"
    ]
    sent = await graph.raw.post(f"{graph.api}/{ALICE}/messages/{draft.id}/send")
    assert sent.status_code == 202
    bobs = await graph.raw.get(f"{graph.api}/users/bob@contoso.test/mailFolders/inbox/messages")
    assert [m["subject"] for m in bobs.json()["value"]] == ["RE: Plans"]


async def test_create_forward_draft(graph: Graph) -> None:
    original = await _received(graph)
    me = graph.sdk.users.by_user_id("alice@contoso.test")
    draft = await me.messages.by_message_id(original["id"]).create_forward.post(
        CreateForwardPostRequestBody(to_recipients=[_to("erin@example.test")], comment="FYI")
    )
    assert draft is not None and draft.subject == "FW: Plans" and draft.is_draft is True
    assert _addresses(draft.to_recipients) == ["erin@example.test"]
    bare = await graph.raw.post(f"{graph.api}/{ALICE}/messages/{original['id']}/createForward")
    assert bare.status_code == 201 and bare.json()["toRecipients"] == []
    given = await me.messages.by_message_id(original["id"]).create_forward.post(
        CreateForwardPostRequestBody(message=Message(to_recipients=[_to("frank@example.test")]))
    )
    assert given is not None and _addresses(given.to_recipients) == ["frank@example.test"]


async def test_answers_from_mime_content(graph: Graph) -> None:
    original = await _received(graph)
    mime = (
        "From: Alice <alice@contoso.test>\r\nTo: Gina <gina@example.test>\r\n"
        "Subject: Fwd: Plans\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee below.\r\n"
    )
    made = await graph.raw.post(
        f"{graph.api}/{ALICE}/messages/{original['id']}/createForward",
        content=base64.b64encode(mime.encode()),
        headers={"Content-Type": "text/plain"},
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["subject"] == "Fwd: Plans"
    assert body["toRecipients"] == [
        {"emailAddress": {"name": "Gina", "address": "gina@example.test"}}
    ]
    assert body["body"]["content"].strip() == "See below."


@pytest.mark.parametrize(
    ("action", "body", "code"),
    [
        ("createReplyAll", {"comment": "x", "message": {"body": {"content": "y"}}}, None),
        ("createReplyAll", {"toRecipients": []}, "RequestBodyRead"),
        ("createReply", {"comment": 5}, "RequestBodyRead"),
        ("createReply", {"message": {"importance": "urgent"}}, "RequestBodyRead"),
        (
            "createForward",
            {"toRecipients": [], "message": {"toRecipients": []}},
            "ErrorInvalidRequest",
        ),
        ("createForward", {"toRecipients": "bob"}, "RequestBodyRead"),
        ("createForward", b"%%% not base64 %%%", "ErrorMimeContentInvalidBase64String"),
        ("createReplyAll", b"{not json", "BadRequest"),
    ],
)
async def test_malformed_answers_are_400(
    graph: Graph, action: str, body: Any, code: str | None
) -> None:
    original = await _received(graph)
    url = f"{graph.api}/{ALICE}/messages/{original['id']}/{action}"
    if isinstance(body, bytes):
        plain = body.startswith(b"%")
        answer = await graph.raw.post(
            url,
            content=body,
            headers={"Content-Type": "text/plain" if plain else "application/json"},
        )
    else:
        answer = await graph.raw.post(url, json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["message"] and (code is None or error["code"] == code)
