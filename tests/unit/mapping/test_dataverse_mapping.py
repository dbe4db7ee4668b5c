"""Dataverse Web API rows → projections, write bodies, and equal data from both sides."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.dataverse.mapping import (
    LOOKUP_TABLE,
    entity_set,
    party_collection,
    primary_key,
    projection_to_row,
    row_to_projection,
)
from connectors.graph.mapping import graph_to_projection
from schemas.fields import MappingError, field_names
from tests.unit.mapping.test_graph_mapping import CONTACT, EVENT, MESSAGE, TODO_TASK

ACCOUNT_ID = "5d1c3e4a-0000-0000-0000-00000000abcd"
CONTACT_ROW: dict[str, Any] = {
    "@odata.etag": 'W/"1234"',
    "contactid": "aaaaaaaa-0000-0000-0000-000000000001",
    "firstname": "Pavel",
    "middlename": None,
    "lastname": "Bansky",
    "fullname": "Pavel Bansky",
    "suffix": "Jr.",
    "salutation": "Mr.",
    "yomifirstname": None,
    "yomilastname": None,
    "nickname": "Pasha",
    "jobtitle": "Buyer",
    "department": "Purchasing",
    "managername": "Ann",
    "assistantname": "Eve",
    "spousesname": "Olga",
    "childrensnames": "Ivan, Masha",
    "birthdate": "1974-07-22",
    "anniversary": "2001-06-02",
    "emailaddress1": "pavelb@contoso.example",
    "emailaddress2": "pavel@home.example",
    "emailaddress3": None,
    "telephone1": "+1 732 555 0102",
    "business2": None,
    "telephone2": None,
    "home2": None,
    "mobilephone": "+1 732 555 0199",
    "telephone3": "+1 555 0103",
    "fax": None,
    "pager": None,
    "callback": None,
    "company": None,
    "assistantphone": None,
    "governmentid": None,
    "ftpsiteurl": None,
    "websiteurl": "https://contoso.example",
    "address1_line1": "1 Main St",
    "address1_line2": "Suite 200",
    "address1_line3": None,
    "address1_city": "Redmond",
    "address1_stateorprovince": "WA",
    "address1_postalcode": "98052",
    "address1_country": "USA",
    "description": "Likes tea.",
    "_parentcustomerid_value": ACCOUNT_ID,
    f"_parentcustomerid_value{LOOKUP_TABLE}": "account",
    "statecode": 0,
}


def test_contact_row_equals_the_graph_contact() -> None:
    crm = row_to_projection("contact", CONTACT_ROW)
    outlook = graph_to_projection("contact", CONTACT)
    assert crm == outlook
    assert set(crm) == field_names("contact")


def _party(
    mask: int, address: str, name: str | None = None, table: str = "contact"
) -> dict[str, Any]:
    row: dict[str, Any] = {"participationtypemask": mask, "addressused": address}
    if name is not None:
        row["_partyid_value"] = "bbbbbbbb-0000-0000-0000-000000000001"
        row[f"_partyid_value{LOOKUP_TABLE}"] = table
        row["_partyid_value@OData.Community.Display.V1.FormattedValue"] = name
    return row


APPOINTMENT_ROW: dict[str, Any] = {
    "activityid": "cccccccc-0000-0000-0000-000000000001",
    "subject": "Let's go for lunch",
    "description": "Does noon work?\nTom & Jerry",
    "location": "Harry's Bar",
    "scheduledstart": "2017-04-15T19:00:00Z",
    "scheduledend": "2017-04-15T21:00:00Z",
    "isalldayevent": False,
    "prioritycode": 1,
    "statecode": 0,
    "statuscode": 2,
    "globalobjectid": "040082",
    "instancetypecode": 0,
    "_regardingobjectid_value": "1B2C3D4E-0000-0000-0000-000000000001",
    f"_regardingobjectid_value{LOOKUP_TABLE}": "contact",
}
APPOINTMENT_PARTIES = [
    _party(5, "SamanthaB@contoso.example", "Samantha Booth"),
    _party(6, "dana@contoso.example", "Dana Swope"),
    _party(7, "adelev@contoso.example", "Adele Vance", "systemuser"),
    _party(9, "owner@contoso.example", "Owner"),
    {"participationtypemask": 5, "addressused": None, "_partyid_value": None},
]


def test_appointment_row_equals_the_graph_event() -> None:
    crm = row_to_projection("appointment", APPOINTMENT_ROW, parties=APPOINTMENT_PARTIES)
    assert crm == graph_to_projection("appointment", EVENT)
    inline = {**APPOINTMENT_ROW, "appointment_activity_parties": APPOINTMENT_PARTIES}
    assert row_to_projection("appointment", inline) == crm


def test_recurring_master_row() -> None:
    row = {
        "activityid": "dddddddd-0000-0000-0000-000000000001",
        "subject": "Standup",
        "starttime": "2024-01-01T09:00:00Z",
        "endtime": "2024-01-01T09:15:00Z",
        "scheduledstart": "2024-01-01T00:00:00Z",
        "statuscode": 1,
        "recurrencepatterntype": 0,
        "isweekdaypattern": True,
        "interval": 1,
        "patternendtype": 2,
        "occurrences": 20,
        "patternstartdate": "2024-01-01T00:00:00Z",
        "dayofmonth": 0,
        "instance": 0,
    }
    p = row_to_projection("recurringappointmentmaster", row)
    assert p["scheduledstart"] == "2024-01-01T09:00:00Z"
    assert p["instancetypecode"] == 1
    assert p["recurrence"] == {
        "recurrencepatterntype": 1,
        "interval": 1,
        "daysofweekmask": 0x3E,
        "dayofmonth": None,
        "monthofyear": None,
        "instance": None,
        "firstdayofweek": 0,
        "patternendtype": 2,
        "patternstartdate": "2024-01-01",
        "occurrences": 20,
        "patternenddate": None,
    }
    body = projection_to_row("recurringappointmentmaster", p).body
    assert body["starttime"] == "2024-01-01T09:00:00Z"
    assert body["duration"] == 15
    assert body["patternstartdate"] == "2024-01-01T00:00:00Z"
    assert body["isnthmonthly"] is False
    assert "scheduledstart" not in body


def test_absolute_monthly_ignores_stale_instance() -> None:
    row = {
        "recurrencepatterntype": 2,
        "isnthmonthly": False,
        "instance": 2,
        "daysofweekmask": 4,
        "dayofmonth": 15,
        "interval": 1,
        "patternendtype": 1,
        "patternstartdate": "2024-01-01T00:00:00Z",
    }
    p = row_to_projection("recurringappointmentmaster", row)
    assert p["recurrence"]["instance"] is None
    assert p["recurrence"]["dayofmonth"] == 15
    assert p["recurrence"]["daysofweekmask"] is None


class _Directory:
    def __init__(self, known: dict[str, tuple[str, str]]) -> None:
        self.known = known

    def resolve(self, email: str) -> tuple[str, str] | None:
        return self.known.get(email)


def test_appointment_write_body() -> None:
    p = graph_to_projection("appointment", EVENT)
    directory = _Directory({"dana@contoso.example": ("contact", ACCOUNT_ID)})
    payload = projection_to_row(
        "appointment",
        p,
        fields=["optionalattendees", "statuscode", "regardingobjectid"],
        resolve=directory,
    )
    assert payload.truncated == frozenset()
    body = payload.body
    assert body["statuscode"] == 2 and body["statecode"] == 0
    assert body["regardingobjectid_contact_appointment@odata.bind"] == (
        "/contacts(1b2c3d4e-0000-0000-0000-000000000001)"
    )
    assert body["appointment_activity_parties"] == [
        {"participationtypemask": 5, "addressused": "samanthab@contoso.example"},
        {
            "participationtypemask": 6,
            "addressused": "dana@contoso.example",
            "partyid_contact@odata.bind": f"/contacts({ACCOUNT_ID})",
        },
        {"participationtypemask": 7, "addressused": "adelev@contoso.example"},
    ]
    assert "subject" not in body


def test_lookups_cleared_on_every_target() -> None:
    body = projection_to_row("task", {"regardingobjectid": None}).body
    assert body == {
        "regardingobjectid_contact_task@odata.bind": None,
        "regardingobjectid_account_task@odata.bind": None,
        "regardingobjectid_lead_task@odata.bind": None,
    }
    contact = projection_to_row(
        "contact", {"parentcustomerid": {"table": "contact", "id": ACCOUNT_ID}}
    ).body
    assert contact == {"parentcustomerid_contact@odata.bind": f"/contacts({ACCOUNT_ID})"}


TASK_ROW: dict[str, Any] = {
    "activityid": "eeeeeeee-0000-0000-0000-000000000001",
    "subject": "Send the contract",
    "description": "Draft attached",
    "scheduledstart": None,
    "scheduledend": "2024-05-02T00:00:00Z",
    "actualend": "2024-05-01T13:30:00Z",
    "prioritycode": 2,
    "statecode": 1,
    "statuscode": 5,
    "percentcomplete": 100,
    "_regardingobjectid_value": "00000000-0000-0000-0000-0000000000aa",
    f"_regardingobjectid_value{LOOKUP_TABLE}": "account",
}


def test_task_row_equals_the_todo_task() -> None:
    groups = frozenset({"percentcomplete"})
    assert row_to_projection("task", TASK_ROW, groups=groups) == graph_to_projection(
        "task", TODO_TASK, groups=groups
    )


@pytest.mark.parametrize(
    ("table", "native", "canonical"),
    [
        ("phonecall", (0, 1), (0, 2)),
        ("phonecall", (1, 4), (1, 5)),
        ("phonecall", (2, 3), (2, 6)),
        ("letter", (0, 2), (0, 2)),
        ("letter", (1, 4), (1, 5)),
        ("fax", (2, 5), (2, 6)),
        ("task", (0, 7), (0, 7)),
    ],
)
def test_task_table_statuses(
    table: Any, native: tuple[int, int], canonical: tuple[int, int]
) -> None:
    row = {"statecode": native[0], "statuscode": native[1]}
    p = row_to_projection(table, row)
    assert (p["statecode"], p["statuscode"]) == canonical


def test_phonecall_write_has_native_status_and_no_percent() -> None:
    p = {"statecode": 1, "statuscode": 5, "percentcomplete": 40, "subject": "Call back"}
    body = projection_to_row("phonecall", p).body
    assert body == {"subject": "Call back", "statecode": 1, "statuscode": 2}


def test_description_over_2000_is_truncated_and_flagged() -> None:
    p = {"description": "x" * 2500, "subject": "s" * 250}
    payload = projection_to_row("task", p)
    assert payload.body["description"] == "x" * 2000
    assert payload.body["subject"] == "s" * 200
    assert payload.truncated == frozenset({"description", "subject"})


EMAIL_ROW: dict[str, Any] = {
    "activityid": "ffffffff-0000-0000-0000-000000000001",
    "subject": "RE: Contract",
    "description": "<p>Signed.</p>",
    "directioncode": False,
    "messageid": "<BY5PR@contoso.example>",
    "inreplyto": "<orig@contoso.example>",
    "trackingtoken": "CRM:0001023",
    "senton": "2024-05-01T10:15:30Z",
    "prioritycode": 0,
    "statecode": 1,
    "statuscode": 4,
    "email_activity_parties": [
        _party(1, "MeganB@contoso.example", "Megan"),
        _party(2, "zed@x.example", "Zed"),
        _party(2, "adelev@contoso.example", "Adele", "systemuser"),
    ],
}


def test_email_row_equals_the_message_but_conversation() -> None:
    crm = row_to_projection("email", EMAIL_ROW)
    outlook = graph_to_projection("email", MESSAGE, mailbox="adelev@contoso.example")
    assert "conversationid" not in crm
    outlook.pop("conversationid")
    assert crm == outlook
    no_token = row_to_projection("email", {**EMAIL_ROW, "trackingtoken": None})
    assert "trackingtoken" not in no_token


def test_email_status_on_write() -> None:
    body = projection_to_row("email", {"subject": "x"}, email_statuscode=3).body
    assert (body["statecode"], body["statuscode"]) == (1, 3)
    with pytest.raises(MappingError, match="email_statuscode"):
        projection_to_row("email", {}, email_statuscode=9)


def test_names_and_keys() -> None:
    assert entity_set("contact") == "contacts"
    assert entity_set("appointment") == "appointments"
    assert entity_set("recurringappointmentmaster") == "recurringappointmentmasters"
    assert entity_set("phonecall") == "phonecalls"
    assert entity_set("fax") == "faxes"
    assert entity_set("opportunity") == "opportunities"
    assert entity_set("systemuser") == "systemusers"
    assert entity_set("activityparty") == "activityparties"
    assert primary_key("contact") == "contactid"
    assert {primary_key(t) for t in ("appointment", "task", "email", "fax")} == {"activityid"}
    assert party_collection("phonecall") == "phonecall_activity_parties"
    with pytest.raises(MappingError, match="table"):
        primary_key("account")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("table", "row", "field"),
    [
        ("contact", {"firstname": 1}, "firstname"),
        ("contact", {"birthdate": "1974-02-30"}, "birthdate"),
        ("contact", {"_parentcustomerid_value": ACCOUNT_ID}, "parentcustomerid"),
        (
            "contact",
            {
                "_parentcustomerid_value": "nope",
                f"_parentcustomerid_value{LOOKUP_TABLE}": "account",
            },
            "parentcustomerid",
        ),
        ("appointment", {"statuscode": 7}, "statuscode"),
        ("appointment", {"prioritycode": "high"}, "prioritycode"),
        ("appointment", {"isalldayevent": 1}, "isalldayevent"),
        ("appointment", {"scheduledstart": "2024-01-01 25:00"}, "scheduledstart"),
        ("appointment", {"appointment_activity_parties": {}}, "appointment_activity_parties"),
        (
            "appointment",
            {"appointment_activity_parties": [{"participationtypemask": 99}]},
            "activityparties[].participationtypemask",
        ),
        ("recurringappointmentmaster", {"recurrencepatterntype": 5}, "recurrencepatterntype"),
        (
            "recurringappointmentmaster",
            {
                "recurrencepatterntype": 1,
                "interval": 1,
                "daysofweekmask": 2,
                "patternendtype": 3,
                "patternstartdate": "2024-01-01T00:00:00Z",
            },
            "recurrence.patternenddate",
        ),
        ("task", {"statuscode": 1}, "statuscode"),
        ("task", {"percentcomplete": 150}, "percentcomplete"),
        ("phonecall", {"statuscode": 5}, "statuscode"),
        ("email", {"statuscode": 42}, "statuscode"),
        ("email", {"directioncode": "out"}, "directioncode"),
    ],
)
def test_garbage_rows_name_the_field(table: Any, row: dict[str, Any], field: str) -> None:
    with pytest.raises(MappingError) as caught:
        row_to_projection(table, row)
    assert caught.value.field == field
    assert field in str(caught.value)


@pytest.mark.parametrize(
    ("table", "projection", "field"),
    [
        ("contact", {"emailaddress1": ["a"]}, "emailaddress1"),
        ("contact", {"subject": "x"}, "subject"),
        (
            "appointment",
            {
                "recurrence": {
                    "recurrencepatterntype": 0,
                    "interval": 1,
                    "patternendtype": 1,
                    "patternstartdate": "2024-01-01",
                }
            },
            "recurrence",
        ),
        ("recurringappointmentmaster", {"recurrence": None}, "recurrence"),
        ("task", {"statuscode": 6, "statecode": 1}, "statecode"),
        ("task", {"percentcomplete": -1}, "percentcomplete"),
        ("email", {"from": {"name": "no address"}}, "from"),
    ],
)
def test_bad_projection_names_the_field(table: Any, projection: dict[str, Any], field: str) -> None:
    with pytest.raises(MappingError) as caught:
        projection_to_row(table, projection)
    assert caught.value.field == field


def test_fields_missing_from_the_projection_are_an_error() -> None:
    with pytest.raises(MappingError, match="lastname"):
        projection_to_row("contact", {"firstname": "A"}, fields=["lastname"])
