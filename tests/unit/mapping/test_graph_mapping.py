"""Graph v1.0 JSON samples (shapes from the Graph reference) → projections, and back."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.graph.mapping import (
    CONTACT_EXTENDED_PROPERTIES,
    CORRELATION_PROPERTY_ID,
    CRM_STATUS_PROPERTY_ID,
    GLOBAL_OBJECT_ID_PROPERTY_ID,
    PARENT_CUSTOMER_PROPERTY_ID,
    REGARDING_PROPERTY_ID,
    TASK_EXTENSION_NAME,
    WINDOWS_ZONES,
    correlation_id_of,
    correlation_stamp,
    expand_for,
    graph_to_projection,
    outlook_attributes,
    projection_to_graph,
    zone,
)
from schemas.fields import MappingError, field_names
from schemas.models import OutlookAttributes
from schemas.token import TrackingTokenFormat

CONTACT: dict[str, Any] = {
    "id": "AAMkAGI2THVSAAA=",
    "changeKey": "EQAAABYAAAB7hn",
    "givenName": "Pavel",
    "middleName": None,
    "surname": "Bansky",
    "generation": "Jr.",
    "title": "Mr.",
    "yomiGivenName": "",
    "nickName": "Pasha",
    "jobTitle": "Buyer",
    "companyName": "Contoso",
    "department": "Purchasing",
    "manager": "Ann",
    "assistantName": "Eve",
    "spouseName": "Olga",
    "children": ["Ivan", "Masha"],
    "birthday": "1974-07-22T00:00:00Z",
    "businessHomePage": "https://contoso.example",
    "personalNotes": "Likes tea.",
    "emailAddresses": [
        {"address": "pavelb@contoso.example", "name": "Pavel Bansky"},
        {"address": "pavel@home.example", "name": "Pavel (home)"},
    ],
    "businessPhones": ["+1 732 555 0102"],
    "homePhones": [],
    "mobilePhone": "+1 732 555 0199",
    "businessAddress": {
        "street": "1 Main St\nSuite 200",
        "city": "Redmond",
        "state": "WA",
        "postalCode": "98052",
        "countryOrRegion": "USA",
    },
    "homeAddress": {"street": "2 Elm St", "city": "Seattle"},
    "otherAddress": {},
    "singleValueExtendedProperties": [
        {"id": "String 0x3a1f", "value": "+1 555 0103"},
        {"id": "SystemTime 0x3A41", "value": "2001-06-01T23:00:00Z"},
        {
            "id": PARENT_CUSTOMER_PROPERTY_ID,
            "value": "account:5D1C3E4A-0000-0000-0000-00000000ABCD",
        },
        {"id": CORRELATION_PROPERTY_ID, "value": "corr-1"},
    ],
}


def test_contact_sample() -> None:
    p = graph_to_projection("contact", CONTACT, groups=frozenset({"address2"}))
    assert set(p) == field_names("contact", frozenset({"address2"}))
    assert p["firstname"] == "Pavel"
    assert p["middlename"] is None
    assert p["yomifirstname"] is None
    assert p["suffix"] == "Jr."
    assert p["salutation"] == "Mr."
    assert p["managername"] == "Ann"
    assert p["childrensnames"] == "Ivan, Masha"
    assert p["birthdate"] == "1974-07-22"
    assert p["anniversary"] == "2001-06-02"  # stored as local midnight east of UTC
    assert p["emailaddress1"] == "pavelb@contoso.example"
    assert p["emailaddress2"] == "pavel@home.example"
    assert p["emailaddress3"] is None
    assert p["telephone1"] == "+1 732 555 0102"
    assert p["business2"] is None
    assert p["telephone2"] is None
    assert p["telephone3"] == "+1 555 0103"
    assert p["address1_line1"] == "1 Main St"
    assert p["address1_line2"] == "Suite 200"
    assert p["address1_line3"] is None
    assert p["address1_stateorprovince"] == "WA"
    assert p["address1_country"] == "USA"
    assert p["address2_line1"] == "2 Elm St"
    assert p["address2_postalcode"] is None
    assert p["description"] == "Likes tea."
    assert p["websiteurl"] == "https://contoso.example"
    assert p["parentcustomerid"] == {
        "table": "account",
        "id": "5d1c3e4a-0000-0000-0000-00000000abcd",
    }
    assert correlation_id_of("contact", CONTACT) == "corr-1"


def test_contact_partial_patch_writes_whole_lists() -> None:
    p = graph_to_projection("contact", CONTACT)
    body = projection_to_graph("contact", p, fields=["emailaddress2", "address1_city", "fax"])
    assert [e["address"] for e in body["emailAddresses"]] == [
        "pavelb@contoso.example",
        "pavel@home.example",
    ]
    assert body["businessAddress"]["street"] == "1 Main St\nSuite 200"
    assert body["businessAddress"]["city"] == "Redmond"
    assert body["singleValueExtendedProperties"] == [
        {"id": CONTACT_EXTENDED_PROPERTIES["fax"], "value": ""}
    ]
    assert "givenName" not in body


def test_contact_lossy_cases() -> None:
    """Gaps in lists compact; a fourth street line folds into line 3; children split on ","."""
    p = graph_to_projection("contact", CONTACT)
    p.update(emailaddress1=None, address1_line1=None, childrensnames="Ann, Bob,Cy")
    back = graph_to_projection("contact", projection_to_graph("contact", p))
    assert back["emailaddress1"] == "pavel@home.example"
    assert back["address1_line1"] == "Suite 200"
    assert back["childrensnames"] == "Ann, Bob, Cy"
    long_street = {**CONTACT, "businessAddress": {"street": "a\nb\nc\nd"}}
    p2 = graph_to_projection("contact", long_street)
    assert (p2["address1_line1"], p2["address1_line3"]) == ("a", "c, d")


EVENT: dict[str, Any] = {
    "id": "AAMkAGViNDU7zAAAAA7zAAAZb2ckAAA=",
    "subject": "Let's go for lunch",
    "body": {
        "contentType": "html",
        "content": "<html><head><style>p{}</style></head><body><p>Does noon work?</p>"
        "<p>Tom &amp; Jerry</p></body></html>",
    },
    "start": {"dateTime": "2017-04-15T12:00:00.0000000", "timeZone": "Pacific Standard Time"},
    "end": {"dateTime": "2017-04-15T14:00:00.0000000", "timeZone": "America/Los_Angeles"},
    "location": {"displayName": "Harry's Bar", "locationType": "default"},
    "isAllDay": False,
    "isCancelled": False,
    "importance": "normal",
    "showAs": "tentative",
    "type": "singleInstance",
    "attendees": [
        {
            "type": "required",
            "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
            "emailAddress": {"address": "SamanthaB@contoso.example", "name": "Samantha Booth"},
        },
        {
            "type": "optional",
            "emailAddress": {"address": "dana@contoso.example", "name": "Dana Swope"},
        },
        {"type": "resource", "emailAddress": {"address": "room1@contoso.example"}},
    ],
    "organizer": {"emailAddress": {"name": "Adele Vance", "address": "AdeleV@contoso.example"}},
    "recurrence": None,
    "singleValueExtendedProperties": [
        {"id": GLOBAL_OBJECT_ID_PROPERTY_ID, "value": base64.b64encode(b"\x04\x00\x82").decode()},
        {"id": REGARDING_PROPERTY_ID, "value": "contact:1b2c3d4e-0000-0000-0000-000000000001"},
    ],
}


def test_event_sample() -> None:
    p = graph_to_projection("appointment", EVENT)
    assert p["subject"] == "Let's go for lunch"
    assert p["description"] == "Does noon work?\nTom & Jerry"
    assert p["location"] == "Harry's Bar"
    assert p["scheduledstart"] == "2017-04-15T19:00:00Z"
    assert p["scheduledend"] == "2017-04-15T21:00:00Z"
    assert p["isalldayevent"] is False
    assert p["prioritycode"] == 1
    assert p["statuscode"] == 2
    assert p["requiredattendees"] == [
        {"email": "samanthab@contoso.example", "name": "Samantha Booth"}
    ]
    assert p["optionalattendees"] == [{"email": "dana@contoso.example", "name": "Dana Swope"}]
    assert p["organizer"] == {"email": "adelev@contoso.example", "name": "Adele Vance"}
    assert p["globalobjectid"] == "040082"
    assert p["instancetypecode"] == 0
    assert p["recurrence"] is None
    assert p["regardingobjectid"] == {
        "table": "contact",
        "id": "1b2c3d4e-0000-0000-0000-000000000001",
    }


@pytest.mark.parametrize(
    ("show_as", "cancelled", "marker", "code"),
    [
        ("free", False, None, 1),
        ("tentative", False, None, 2),
        ("busy", False, None, 5),
        ("oof", False, None, 6),
        ("workingElsewhere", False, None, 5),
        ("unknown", False, None, 5),
        ("busy", True, None, 4),
        ("busy", False, "3", 3),
        ("free", False, "4", 4),
        ("oof", False, "3", 6),  # stale marker: Outlook's own change wins
    ],
)
def test_event_status(show_as: str, cancelled: bool, marker: str | None, code: int) -> None:
    ext = [{"id": CRM_STATUS_PROPERTY_ID, "value": marker}] if marker else []
    item = {"showAs": show_as, "isCancelled": cancelled, "singleValueExtendedProperties": ext}
    assert graph_to_projection("appointment", item)["statuscode"] == code


def test_event_status_written_with_marker() -> None:
    body = projection_to_graph("appointment", {"statuscode": 3}, fields=["statuscode"])
    assert body["showAs"] == "busy"
    assert body["singleValueExtendedProperties"] == [{"id": CRM_STATUS_PROPERTY_ID, "value": "3"}]


def test_event_times_in_utc_and_iana_and_windows() -> None:
    for tz, expected in [
        ("UTC", "2024-01-10T09:00:00Z"),
        ("Europe/Berlin", "2024-01-10T08:00:00Z"),
        ("W. Europe Standard Time", "2024-01-10T08:00:00Z"),
        ("Tokyo Standard Time", "2024-01-10T00:00:00Z"),
    ]:
        item = {"start": {"dateTime": "2024-01-10T09:00:00.0000000", "timeZone": tz}}
        assert graph_to_projection("appointment", item)["scheduledstart"] == expected
    body = projection_to_graph("appointment", {"scheduledstart": "2024-01-10T08:00:00Z"})
    assert body["start"] == {"dateTime": "2024-01-10T08:00:00", "timeZone": "UTC"}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (
            {
                "type": "weekly",
                "interval": 2,
                "daysOfWeek": ["monday", "friday"],
                "firstDayOfWeek": "monday",
            },
            {
                "recurrencepatterntype": 1,
                "interval": 2,
                "daysofweekmask": 0x22,
                "firstdayofweek": 1,
            },
        ),
        (
            {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 15, "index": "first"},
            {"recurrencepatterntype": 2, "interval": 1, "dayofmonth": 15},
        ),
        (
            {
                "type": "relativeYearly",
                "interval": 1,
                "daysOfWeek": ["thursday"],
                "index": "last",
                "month": 11,
            },
            {
                "recurrencepatterntype": 3,
                "interval": 1,
                "daysofweekmask": 0x10,
                "instance": 5,
                "monthofyear": 11,
            },
        ),
        (
            {"type": "daily", "interval": 3, "firstDayOfWeek": "sunday"},
            {"recurrencepatterntype": 0, "interval": 3},
        ),
    ],
)
def test_recurrence_patterns(pattern: dict[str, Any], expected: dict[str, Any]) -> None:
    item = {
        "type": "seriesMaster",
        "recurrence": {
            "pattern": pattern,
            "range": {
                "type": "endDate",
                "startDate": "2024-01-01",
                "endDate": "2024-12-31",
                "numberOfOccurrences": 0,
                "recurrenceTimeZone": "UTC",
            },
        },
    }
    rec = graph_to_projection("appointment", item)["recurrence"]
    assert rec is not None
    blanks = {
        k: None
        for k in (
            "daysofweekmask",
            "dayofmonth",
            "monthofyear",
            "instance",
            "firstdayofweek",
            "occurrences",
        )
    }
    assert rec == {
        **blanks,
        **expected,
        "patternendtype": 3,
        "patternstartdate": "2024-01-01",
        "patternenddate": "2024-12-31",
    }


TODO_TASK: dict[str, Any] = {
    "id": "AlMKXwbQAAAJws6wcAAAA=",
    "importance": "high",
    "isReminderOn": False,
    "status": "completed",
    "title": "Send the contract",
    "body": {"content": "Draft attached", "contentType": "text"},
    "dueDateTime": {"dateTime": "2024-05-02T00:00:00.0000000", "timeZone": "UTC"},
    "completedDateTime": {"dateTime": "2024-05-01T13:30:00.0000000", "timeZone": "UTC"},
    "linkedResources": [
        {"applicationName": "Other", "externalId": "nope"},
        {"applicationName": "Dynasync", "displayName": "Dynasync", "externalId": "corr-9"},
    ],
    "extensions": [
        {
            "@odata.type": "#microsoft.graph.openTypeExtension",
            "id": f"microsoft.graph.openTypeExtension.{TASK_EXTENSION_NAME}",
            "extensionName": TASK_EXTENSION_NAME,
            "percentComplete": 100,
            "crmStatusCode": 5,
            "regarding": "account:00000000-0000-0000-0000-0000000000aa",
        }
    ],
}


def test_todo_task_sample() -> None:
    p = graph_to_projection("task", TODO_TASK, groups=frozenset({"percentcomplete"}))
    assert p == {
        "subject": "Send the contract",
        "description": "Draft attached",
        "scheduledstart": None,
        "scheduledend": "2024-05-02T00:00:00Z",
        "actualend": "2024-05-01T13:30:00Z",
        "prioritycode": 2,
        "statecode": 1,
        "statuscode": 5,
        "percentcomplete": 100,
        "regardingobjectid": {"table": "account", "id": "00000000-0000-0000-0000-0000000000aa"},
    }
    assert correlation_id_of("task", TODO_TASK) == "corr-9"
    assert "percentcomplete" not in graph_to_projection("task", TODO_TASK)


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("notStarted", (0, 2)),
        ("inProgress", (0, 3)),
        ("waitingOnOthers", (0, 4)),
        ("deferred", (0, 7)),
        ("completed", (1, 5)),
    ],
)
def test_task_status(status: str, state: tuple[int, int]) -> None:
    p = graph_to_projection("task", {"status": status})
    assert (p["statecode"], p["statuscode"]) == state
    assert projection_to_graph("task", p, fields=["statuscode"])["status"] == status


def test_canceled_task_is_completed_in_todo_and_comes_back_canceled() -> None:
    body = projection_to_graph(
        "task",
        {"statecode": 2, "statuscode": 6, "percentcomplete": None, "regardingobjectid": None},
    )
    assert body["status"] == "completed"
    assert body["extensions"][0]["crmStatusCode"] == 6
    p = graph_to_projection("task", body)
    assert (p["statecode"], p["statuscode"]) == (2, 6)
    reopened = {**body, "status": "notStarted"}
    assert graph_to_projection("task", reopened)["statuscode"] == 2


def test_task_due_filled_from_start() -> None:
    item = {"startDateTime": {"dateTime": "2024-05-01T08:00:00", "timeZone": "UTC"}}
    p = graph_to_projection("task", item)
    assert p["scheduledend"] == p["scheduledstart"] == "2024-05-01T08:00:00Z"


MESSAGE: dict[str, Any] = {
    "id": "AAMkAGUAAAwTW09AAA=",
    "subject": "RE: Contract CRM:0001023",
    "body": {"contentType": "html", "content": "<p>Signed.</p>"},
    "importance": "low",
    "parentFolderId": "inbox-id",
    "conversationId": "AAQkAGUAAAwTW09=",
    "internetMessageId": "<BY5PR@contoso.example>",
    "sentDateTime": "2024-05-01T10:15:30Z",
    "from": {"emailAddress": {"name": "Megan", "address": "MeganB@contoso.example"}},
    "toRecipients": [
        {"emailAddress": {"name": "Zed", "address": "zed@x.example"}},
        {"emailAddress": {"name": "Adele", "address": "AdeleV@contoso.example"}},
    ],
    "ccRecipients": [],
    "bccRecipients": [],
    "internetMessageHeaders": [
        {"name": "Received", "value": "from x"},
        {"name": "In-Reply-To", "value": "<orig@contoso.example>"},
    ],
}


def test_message_sample() -> None:
    p = graph_to_projection("email", MESSAGE, mailbox="adelev@contoso.example")
    assert p["subject"] == "RE: Contract"
    assert p["trackingtoken"] == "CRM:0001023"
    assert p["description"] == "<p>Signed.</p>"
    assert p["directioncode"] is False
    assert p["messageid"] == "<BY5PR@contoso.example>"
    assert p["inreplyto"] == "<orig@contoso.example>"
    assert p["from"] == {"email": "meganb@contoso.example", "name": "Megan"}
    assert [t["email"] for t in p["to"]] == ["adelev@contoso.example", "zed@x.example"]
    assert p["cc"] == [] and p["bcc"] == []
    assert p["senton"] == "2024-05-01T10:15:30Z"
    assert p["prioritycode"] == 0
    assert p["conversationid"] == "AAQkAGUAAAwTW09="


def test_message_direction() -> None:
    assert graph_to_projection("email", MESSAGE, mailbox="MeganB@contoso.example")["directioncode"]
    sent = {**MESSAGE, "parentFolderId": "sent-id"}
    assert graph_to_projection("email", sent, sent_folder_ids={"sent-id"})["directioncode"]
    assert not graph_to_projection("email", MESSAGE)["directioncode"]


def test_tracking_token_absent_and_written_into_subject() -> None:
    p = graph_to_projection("email", {**MESSAGE, "subject": "Hello"})
    assert "trackingtoken" not in p
    body = projection_to_graph(
        "email", {"subject": "Hi", "trackingtoken": "CRM:7"}, fields=["trackingtoken"]
    )
    assert body == {"subject": "Hi CRM:7"}


def test_organisation_token_prefix_is_split_off_the_subject() -> None:
    tkn = TrackingTokenFormat("TKN-")
    p = graph_to_projection("email", {**MESSAGE, "subject": "RE: Offer TKN-42"}, token_format=tkn)
    assert (p["subject"], p["trackingtoken"]) == ("RE: Offer", "TKN-42")
    # another organisation's format leaves the subject alone
    p = graph_to_projection("email", {**MESSAGE, "subject": "RE: Offer TKN-42"})
    assert p["subject"] == "RE: Offer TKN-42" and "trackingtoken" not in p


def test_outlook_attributes_keep_what_tracking_needs() -> None:
    """The token the projection's subject loses is what the reader hands the tracking rule."""
    attrs = outlook_attributes("email", {**MESSAGE, "categories": ["Tracked to Dynamics 365"]})
    assert attrs == OutlookAttributes(
        folder_id="inbox-id",
        categories=["Tracked to Dynamics 365"],
        internet_message_id="<BY5PR@contoso.example>",
        in_reply_to="<orig@contoso.example>",
        tracking_token="CRM:0001023",
        conversation_id="AAQkAGUAAAwTW09=",
    )
    assert graph_to_projection("email", MESSAGE)["subject"] == "RE: Contract"
    # only the token, no In-Reply-To: the token is still there for correlation
    bare = {k: v for k, v in MESSAGE.items() if k != "internetMessageHeaders"}
    only = outlook_attributes("email", {**bare, "subject": "CRM:0001023"})
    assert only.tracking_token == "CRM:0001023" and only.in_reply_to is None
    assert outlook_attributes("contact", {"parentFolderId": "c-f", "categories": ["x"]}) == (
        OutlookAttributes(folder_id="c-f", categories=["x"])
    )


@pytest.mark.parametrize(
    "item",
    [
        {"parentFolderId": 7},
        {"parentFolderId": "f" * 513},
        {"categories": "Red"},
        {"categories": [1]},
        {"internetMessageId": ["<a@b>"]},
        {"internetMessageId": "<" + "a" * 1000 + ">"},
        {"internetMessageHeaders": {"In-Reply-To": "<a@b>"}},
        {"internetMessageHeaders": [{"name": "In-Reply-To", "value": 5}]},
        {"subject": {"text": "CRM:1"}},
        {"conversationId": False},
    ],
)
def test_outlook_attributes_refuse_garbage(item: dict[str, Any]) -> None:
    with pytest.raises(MappingError):
        outlook_attributes("email", {**MESSAGE, **item})
    not_an_object: Any = ["not", "an", "object"]
    with pytest.raises(MappingError):
        outlook_attributes("email", not_an_object)


def test_read_only_fields_are_not_written() -> None:
    p = graph_to_projection("email", MESSAGE)
    body = projection_to_graph("email", p)
    assert not {"sentDateTime", "conversationId", "internetMessageHeaders"} & set(body)
    event = projection_to_graph("appointment", graph_to_projection("appointment", EVENT))
    assert "type" not in event
    assert all(
        e["id"] != GLOBAL_OBJECT_ID_PROPERTY_ID for e in event["singleValueExtendedProperties"]
    )


def test_correlation_stamps_read_back() -> None:
    for kind in ("contact", "appointment", "email", "task"):
        assert correlation_id_of(kind, correlation_stamp(kind, "c-42")) == "c-42"
        assert correlation_id_of(kind, {}) is None
    assert "DynasyncCorrelationId" in expand_for("contact")
    assert "0x3A1F" in expand_for("contact")
    assert TASK_EXTENSION_NAME in expand_for("task")
    with pytest.raises(MappingError, match="correlation_id"):
        correlation_stamp("contact", "")


@pytest.mark.parametrize(
    ("kind", "item", "field"),
    [
        ("contact", {"givenName": 5}, "givenName"),
        ("contact", {"birthday": "22/07/1974"}, "birthday"),
        ("contact", {"emailAddresses": "a@b"}, "emailAddresses"),
        (
            "contact",
            {"singleValueExtendedProperties": [{"id": 1}]},
            "singleValueExtendedProperties[].id",
        ),
        (
            "contact",
            {
                "singleValueExtendedProperties": [
                    {"id": PARENT_CUSTOMER_PROPERTY_ID, "value": "account:not-a-guid"}
                ]
            },
            "parentcustomerid",
        ),
        ("appointment", {"showAs": "sleeping"}, "showAs"),
        ("appointment", {"importance": "urgent"}, "importance"),
        (
            "appointment",
            {"start": {"dateTime": "2024-13-01T00:00:00", "timeZone": "UTC"}},
            "start.dateTime",
        ),
        (
            "appointment",
            {"start": {"dateTime": "2024-01-01T00:00:00", "timeZone": "Mars/Base"}},
            "start.timeZone",
        ),
        (
            "appointment",
            {"attendees": [{"type": "vip", "emailAddress": {"address": "a@b"}}]},
            "attendees[].type",
        ),
        ("appointment", {"isAllDay": "yes"}, "isAllDay"),
        ("appointment", {"type": "series"}, "type"),
        (
            "appointment",
            {"recurrence": {"pattern": {"type": "hourly"}, "range": {}}},
            "recurrence.pattern.type",
        ),
        (
            "appointment",
            {
                "recurrence": {
                    "pattern": {"type": "weekly", "interval": 1},
                    "range": {"type": "noEnd", "startDate": "2024-01-01"},
                }
            },
            "recurrence.daysofweekmask",
        ),
        (
            "appointment",
            {
                "recurrence": {
                    "pattern": {"type": "daily", "interval": 0},
                    "range": {"type": "noEnd", "startDate": "2024-01-01"},
                }
            },
            "recurrence.interval",
        ),
        (
            "appointment",
            {
                "singleValueExtendedProperties": [
                    {"id": GLOBAL_OBJECT_ID_PROPERTY_ID, "value": "@@@"}
                ]
            },
            "globalobjectid",
        ),
        ("task", {"status": "done"}, "status"),
        ("task", {"body": {"content": "x", "contentType": "rtf"}}, "body.contentType"),
        (
            "task",
            {"extensions": [{"extensionName": TASK_EXTENSION_NAME, "percentComplete": 101}]},
            "percentComplete",
        ),
        ("email", {"sentDateTime": "yesterday"}, "sentDateTime"),
        ("email", {"toRecipients": [{"emailAddress": {"address": 7}}]}, "toRecipients[]"),
    ],
)
def test_garbage_names_the_field(kind: Any, item: dict[str, Any], field: str) -> None:
    with pytest.raises(MappingError) as caught:
        graph_to_projection(kind, item)
    assert caught.value.field == field
    assert field in str(caught.value)


@pytest.mark.parametrize(
    ("kind", "projection", "field"),
    [
        ("contact", {"firstname": 3}, "firstname"),
        ("contact", {"nosuch": "x"}, "nosuch"),
        ("appointment", {"statuscode": 9}, "statuscode"),
        ("appointment", {"prioritycode": 7}, "prioritycode"),
        ("appointment", {"organizer": {"email": ""}}, "organizer"),
        ("appointment", {"scheduledstart": "noon"}, "scheduledstart"),
        ("task", {"statuscode": 5, "statecode": 0}, "statecode"),
        ("task", {"statuscode": 1}, "statuscode"),
        ("task", {"regardingobjectid": {"table": "contact", "id": "x"}}, "regardingobjectid"),
        ("email", {"to": "a@b"}, "to"),
    ],
)
def test_bad_projection_names_the_field(kind: Any, projection: dict[str, Any], field: str) -> None:
    with pytest.raises(MappingError) as caught:
        projection_to_graph(kind, projection)
    assert caught.value.field == field


def test_missing_siblings_are_an_error_not_an_erase() -> None:
    with pytest.raises(MappingError, match="emailaddress1"):
        projection_to_graph("contact", {"emailaddress2": "b@x.example"})
    with pytest.raises(MappingError, match="optionalattendees"):
        projection_to_graph("appointment", {"requiredattendees": []})
    body = projection_to_graph("task", {"statecode": 0, "statuscode": 3, "regardingobjectid": None})
    assert body["extensions"][0]["percentComplete"] is None  # group off: may be absent


def test_every_windows_zone_resolves() -> None:
    for name in WINDOWS_ZONES:
        assert zone("timeZone", name).utcoffset(datetime(2024, 1, 1)) is not None
    assert zone("timeZone", "tzone://Microsoft/Utc") is UTC


def test_non_objects_and_unknown_kinds() -> None:
    with pytest.raises(MappingError, match="contact"):
        graph_to_projection("contact", [])  # type: ignore[arg-type]
    with pytest.raises(MappingError, match="kind"):
        graph_to_projection("note", {})  # type: ignore[arg-type]
    with pytest.raises(MappingError, match="start"):
        graph_to_projection("appointment", {"start": "2024-01-01T00:00:00"})
