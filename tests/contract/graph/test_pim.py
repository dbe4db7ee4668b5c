"""Contacts, events with calendarView expansion, To Do with linkedResources, via the SDK."""

from __future__ import annotations

from datetime import date

from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.contact import Contact
from msgraph.generated.models.contact_folder import ContactFolder
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.day_of_week import DayOfWeek
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.event import Event
from msgraph.generated.models.event_type import EventType
from msgraph.generated.models.free_busy_status import FreeBusyStatus
from msgraph.generated.models.linked_resource import LinkedResource
from msgraph.generated.models.patterned_recurrence import PatternedRecurrence
from msgraph.generated.models.recurrence_pattern import RecurrencePattern
from msgraph.generated.models.recurrence_pattern_type import RecurrencePatternType
from msgraph.generated.models.recurrence_range import RecurrenceRange
from msgraph.generated.models.recurrence_range_type import RecurrenceRangeType
from msgraph.generated.models.task_status import TaskStatus
from msgraph.generated.models.todo_task import TodoTask
from msgraph.generated.models.todo_task_list import TodoTaskList
from msgraph.generated.users.item.calendar_view.calendar_view_request_builder import (
    CalendarViewRequestBuilder,
)

from .conftest import Graph


async def test_contacts_and_folders_crud(graph: Graph) -> None:
    await graph.user("alice")
    me = graph.sdk.users.by_user_id("alice@contoso.test")
    folder = await me.contact_folders.post(ContactFolder(display_name="Customers"))
    assert folder is not None and folder.id
    created = await me.contact_folders.by_contact_folder_id(folder.id).contacts.post(
        Contact(
            given_name="Dana",
            surname="Scully",
            email_addresses=[EmailAddress(address="dana@fbi.test", name="Dana")],
            business_phones=["+1 555 0100"],
        )
    )
    assert created is not None and created.id and created.parent_folder_id == folder.id
    assert created.display_name == "Dana Scully"
    patched = await me.contacts.by_contact_id(created.id).patch(Contact(job_title="Agent"))
    assert patched is not None and patched.job_title == "Agent"
    listed = await me.contact_folders.by_contact_folder_id(folder.id).contacts.get()
    assert listed is not None and [c.id for c in listed.value or []] == [created.id]
    await me.contacts.by_contact_id(created.id).delete()
    listed = await me.contact_folders.by_contact_folder_id(folder.id).contacts.get()
    assert listed is not None and listed.value == []


async def test_contact_yomi_names_round_trip(graph: Graph) -> None:
    await graph.user("alice")
    me = graph.sdk.users.by_user_id("alice@contoso.test")
    created = await me.contacts.post(
        Contact(given_name="Kenji", yomi_given_name="ケンジ", yomi_surname="ヤマダ")
    )
    assert created is not None and created.id
    patched = await me.contacts.by_contact_id(created.id).patch(
        Contact(yomi_company_name="コントソ")
    )
    assert patched is not None
    assert (patched.yomi_given_name, patched.yomi_surname) == ("ケンジ", "ヤマダ")
    assert patched.yomi_company_name == "コントソ"


def _at(text: str) -> DateTimeTimeZone:
    return DateTimeTimeZone(date_time=text, time_zone="UTC")


async def test_event_series_expands_in_calendar_view(graph: Graph) -> None:
    await graph.user("alice")
    me = graph.sdk.users.by_user_id("alice@contoso.test")
    series = await me.events.post(
        Event(
            subject="Weekly sync",
            start=_at("2025-01-06T09:00:00"),
            end=_at("2025-01-06T09:30:00"),
            show_as=FreeBusyStatus.Tentative,
            recurrence=PatternedRecurrence(
                pattern=RecurrencePattern(
                    type=RecurrencePatternType.Weekly, interval=1, days_of_week=[DayOfWeek.Monday]
                ),
                range=RecurrenceRange(
                    type=RecurrenceRangeType.Numbered,
                    start_date=date(2025, 1, 6),
                    number_of_occurrences=4,
                ),
            ),
        )
    )
    assert series is not None and series.id and series.type == EventType.SeriesMaster
    assert series.organizer and series.organizer.email_address
    assert series.organizer.email_address.address == "alice@contoso.test"
    single = await me.calendar.events.post(
        Event(subject="Lunch", start=_at("2025-01-08T12:00:00"), end=_at("2025-01-08T13:00:00"))
    )
    assert single is not None and single.type == EventType.SingleInstance
    params = CalendarViewRequestBuilder.CalendarViewRequestBuilderGetQueryParameters(
        start_date_time="2025-01-01T00:00:00Z", end_date_time="2025-02-01T00:00:00Z"
    )
    config = RequestConfiguration(query_parameters=params)
    view = await me.calendar_view.get(config)
    assert view is not None
    items = view.value or []
    occurrences = [e for e in items if e.type == EventType.Occurrence]
    assert len(occurrences) == 4 and all(o.series_master_id == series.id for o in occurrences)
    assert [o.start.date_time[:10] for o in occurrences if o.start and o.start.date_time] == [
        "2025-01-06",
        "2025-01-13",
        "2025-01-20",
        "2025-01-27",
    ]
    assert any(e.id == single.id for e in items)
    second = occurrences[1]
    assert second.id
    exception = await me.events.by_event_id(second.id).patch(Event(subject="Moved sync"))
    assert exception is not None and exception.type == EventType.Exception
    await me.events.by_event_id(occurrences[2].id or "").delete()
    view = await me.calendar_view.get(config)
    assert view is not None
    kinds = sorted((e.type.value if e.type else "", e.subject) for e in view.value or [])
    assert kinds == [
        ("exception", "Moved sync"),
        ("occurrence", "Weekly sync"),
        ("occurrence", "Weekly sync"),
        ("singleInstance", "Lunch"),
    ]


async def test_todo_tasks_with_linked_resources(graph: Graph) -> None:
    await graph.user("alice")
    todo = graph.sdk.users.by_user_id("alice@contoso.test").todo
    task_list = await todo.lists.post(TodoTaskList(display_name="CRM"))
    assert task_list is not None and task_list.id
    tasks = todo.lists.by_todo_task_list_id(task_list.id).tasks
    task = await tasks.post(
        TodoTask(
            title="Call back",
            linked_resources=[
                LinkedResource(
                    web_url="https://crm.test/task/1",
                    application_name="Dynasync",
                    external_id="corr-task-1",
                )
            ],
        )
    )
    assert task is not None and task.id and task.status == TaskStatus.NotStarted
    assert [r.external_id for r in task.linked_resources or []] == ["corr-task-1"]
    extra = await tasks.by_todo_task_id(task.id).linked_resources.post(
        LinkedResource(application_name="Dynasync", external_id="corr-2", display_name="x")
    )
    assert extra is not None and extra.id
    resources = await tasks.by_todo_task_id(task.id).linked_resources.get()
    assert resources is not None
    assert sorted(r.external_id or "" for r in resources.value or []) == ["corr-2", "corr-task-1"]
    done = await tasks.by_todo_task_id(task.id).patch(TodoTask(status=TaskStatus.Completed))
    assert done is not None and done.status == TaskStatus.Completed
    assert done.completed_date_time is not None
