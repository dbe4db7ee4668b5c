"""Writable properties of each Graph type, and validation of request bodies against them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .errors import GraphError
from .ext_body import validate_list
from .ids import parse_iso

Check = Callable[[Any], Any]
"""Takes a JSON value, returns it as stored (enum members in Graph's casing, booleans sent as
strings as booleans), or raises ``Invalid`` with Graph's message."""


class Invalid(Exception):
    """A value a check refuses; ``validate_body`` answers it with Graph's 400."""


def _fail(expected: str, value: Any) -> Invalid:
    return Invalid(f"Cannot convert the literal '{value}' to the expected type '{expected}'.")


def string(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    raise _fail("Edm.String", value)


def boolean(value: Any) -> bool:
    """``true``/``false``; Graph also reads them from a JSON string, in any case."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _fail("Edm.Boolean", value)


def integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _fail("Edm.Int32", value)


def datetime_str(value: Any) -> Any:
    if value is None or (isinstance(value, str) and parse_iso(value) is not None):
        return value
    raise _fail("Edm.DateTimeOffset", value)


def enum(*allowed: str) -> Check:
    """A member of ``allowed``, matched case-insensitively and stored in Graph's casing."""
    members = {name.lower(): name for name in allowed}

    def check(value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() in members:
            return members[value.strip().lower()]
        raise Invalid(
            f"Requested value '{value}' was not found; expected one of {', '.join(allowed)}."
        )

    return check


def strings(value: Any) -> list[str]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise _fail("Collection(Edm.String)", value)


class Obj:
    """A check for a complex type; ``fields`` are its properties' checks."""

    def __init__(self, fields: Mapping[str, Check], type_name: str) -> None:
        self.fields = fields
        self.type_name = type_name

    def __call__(self, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise _fail(self.type_name, value)
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key.startswith("@odata."):
                out[key] = item
                continue
            if key not in self.fields:
                raise Invalid(f"The property '{key}' does not exist on type '{self.type_name}'.")
            out[key] = self.fields[key](item)
        return out


def obj(fields: Mapping[str, Check], type_name: str) -> Obj:
    return Obj(fields, type_name)


def nested_paths(kind: str) -> frozenset[str]:
    """``start/dateTime``, ``organizer/emailAddress/address``…: paths into ``kind``'s complex
    properties, usable in ``$orderby``."""
    out: set[str] = set()

    def walk(prefix: str, check: Check) -> None:
        if isinstance(check, Obj):
            for name, inner in check.fields.items():
                out.add(f"{prefix}/{name}")
                walk(f"{prefix}/{name}", inner)

    for name, check in SCHEMAS[kind].items():
        walk(name, check)
    return frozenset(out)


def list_of(inner: Check, type_name: str) -> Check:
    def check(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise _fail(f"Collection({type_name})", value)
        return [inner(item) for item in value]

    return check


def _extensions(value: Any) -> Any:
    problem = validate_list(value)
    if problem:
        raise Invalid(problem)
    return value


EMAIL_ADDRESS = obj({"name": string, "address": string}, "microsoft.graph.emailAddress")
RECIPIENT = obj({"emailAddress": EMAIL_ADDRESS}, "microsoft.graph.recipient")
RECIPIENTS = list_of(RECIPIENT, "microsoft.graph.recipient")
BODY = obj({"contentType": enum("text", "html"), "content": string}, "microsoft.graph.itemBody")
DTZ = obj({"dateTime": string, "timeZone": string}, "microsoft.graph.dateTimeTimeZone")
ADDRESS = obj(
    {
        "street": string,
        "city": string,
        "state": string,
        "countryOrRegion": string,
        "postalCode": string,
    },
    "microsoft.graph.physicalAddress",
)
HEADER = obj({"name": string, "value": string}, "microsoft.graph.internetMessageHeader")
FLAG = obj(
    {
        "flagStatus": enum("notFlagged", "complete", "flagged"),
        "dueDateTime": DTZ,
        "startDateTime": DTZ,
        "completedDateTime": DTZ,
    },
    "microsoft.graph.followupFlag",
)
IMPORTANCE = enum("low", "normal", "high")
ONLINE_MEETING_PROVIDER = enum(
    "unknown", "skypeForBusiness", "skypeForConsumer", "teamsForBusiness"
)
LOCATION = obj(
    {
        "displayName": string,
        "locationType": enum(
            "default",
            "conferenceRoom",
            "homeAddress",
            "businessAddress",
            "geoCoordinates",
            "streetAddress",
            "hotel",
            "restaurant",
            "localBusiness",
            "postalAddress",
        ),
        "uniqueId": string,
        "uniqueIdType": enum("unknown", "locationStore", "directory", "private", "bing"),
        "address": ADDRESS,
        "locationEmailAddress": string,
        "locationUri": string,
    },
    "microsoft.graph.location",
)
STATUS = obj(
    {
        "response": enum(
            "none", "organizer", "tentativelyAccepted", "accepted", "declined", "notResponded"
        ),
        "time": datetime_str,
    },
    "microsoft.graph.responseStatus",
)
ATTENDEE = obj(
    {
        "emailAddress": EMAIL_ADDRESS,
        "type": enum("required", "optional", "resource"),
        "status": STATUS,
    },
    "microsoft.graph.attendee",
)
DAYS = list_of(
    enum("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"),
    "microsoft.graph.dayOfWeek",
)
PATTERN = obj(
    {
        "type": enum(
            "daily",
            "weekly",
            "absoluteMonthly",
            "relativeMonthly",
            "absoluteYearly",
            "relativeYearly",
        ),
        "interval": integer,
        "month": integer,
        "dayOfMonth": integer,
        "daysOfWeek": DAYS,
        "firstDayOfWeek": enum(
            "sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"
        ),
        "index": enum("first", "second", "third", "fourth", "last"),
    },
    "microsoft.graph.recurrencePattern",
)
RANGE = obj(
    {
        "type": enum("endDate", "noEnd", "numbered"),
        "startDate": string,
        "endDate": string,
        "recurrenceTimeZone": string,
        "numberOfOccurrences": integer,
    },
    "microsoft.graph.recurrenceRange",
)
RECURRENCE = obj({"pattern": PATTERN, "range": RANGE}, "microsoft.graph.patternedRecurrence")
EMAILS = list_of(
    obj({"name": string, "address": string}, "microsoft.graph.emailAddress"),
    "microsoft.graph.emailAddress",
)
EXTENDED = list_of(
    obj({"id": string, "value": string}, "microsoft.graph.singleValueLegacyExtendedProperty"),
    "microsoft.graph.singleValueLegacyExtendedProperty",
)
LINKED = obj(
    {"webUrl": string, "applicationName": string, "displayName": string, "externalId": string},
    "microsoft.graph.linkedResource",
)

MESSAGE: dict[str, Check] = {
    "subject": string,
    "body": BODY,
    "from": RECIPIENT,
    "sender": RECIPIENT,
    "toRecipients": RECIPIENTS,
    "ccRecipients": RECIPIENTS,
    "bccRecipients": RECIPIENTS,
    "replyTo": RECIPIENTS,
    "categories": strings,
    "importance": IMPORTANCE,
    "isRead": boolean,
    "isDraft": boolean,
    "internetMessageId": string,
    "conversationId": string,
    "internetMessageHeaders": list_of(HEADER, "microsoft.graph.internetMessageHeader"),
    "sentDateTime": datetime_str,
    "receivedDateTime": datetime_str,
    "inferenceClassification": enum("focused", "other"),
    "flag": FLAG,
    "isReadReceiptRequested": boolean,
    "isDeliveryReceiptRequested": boolean,
    "singleValueExtendedProperties": EXTENDED,
}
CONTACT: dict[str, Check] = {
    "givenName": string,
    "surname": string,
    "middleName": string,
    "displayName": string,
    "nickName": string,
    "yomiGivenName": string,
    "yomiSurname": string,
    "yomiCompanyName": string,
    "title": string,
    "generation": string,
    "initials": string,
    "jobTitle": string,
    "companyName": string,
    "department": string,
    "officeLocation": string,
    "profession": string,
    "manager": string,
    "assistantName": string,
    "spouseName": string,
    "personalNotes": string,
    "birthday": datetime_str,
    "emailAddresses": EMAILS,
    "businessPhones": strings,
    "homePhones": strings,
    "mobilePhone": string,
    "imAddresses": strings,
    "categories": strings,
    "businessAddress": ADDRESS,
    "homeAddress": ADDRESS,
    "otherAddress": ADDRESS,
    "businessHomePage": string,
    "fileAs": string,
    "children": strings,
    "singleValueExtendedProperties": EXTENDED,
}
EVENT: dict[str, Check] = {
    "subject": string,
    "body": BODY,
    "start": DTZ,
    "end": DTZ,
    "isAllDay": boolean,
    "location": LOCATION,
    "locations": list_of(LOCATION, "microsoft.graph.location"),
    "attendees": list_of(ATTENDEE, "microsoft.graph.attendee"),
    "organizer": RECIPIENT,
    "showAs": enum("free", "tentative", "busy", "oof", "workingElsewhere", "unknown"),
    "importance": IMPORTANCE,
    "sensitivity": enum("normal", "personal", "private", "confidential"),
    "isCancelled": boolean,
    "isReminderOn": boolean,
    "reminderMinutesBeforeStart": integer,
    "responseRequested": boolean,
    "categories": strings,
    "recurrence": RECURRENCE,
    "isOnlineMeeting": boolean,
    "onlineMeetingProvider": ONLINE_MEETING_PROVIDER,
    "allowNewTimeProposals": boolean,
    "hideAttendees": boolean,
    "transactionId": string,
    "singleValueExtendedProperties": EXTENDED,
}
TASK: dict[str, Check] = {
    "title": string,
    "status": enum("notStarted", "inProgress", "completed", "waitingOnOthers", "deferred"),
    "importance": IMPORTANCE,
    "body": BODY,
    "dueDateTime": DTZ,
    "startDateTime": DTZ,
    "completedDateTime": DTZ,
    "reminderDateTime": DTZ,
    "isReminderOn": boolean,
    "categories": strings,
    "recurrence": RECURRENCE,
    "linkedResources": list_of(LINKED, "microsoft.graph.linkedResource"),
    "extensions": _extensions,
}
MAIL_FOLDER: dict[str, Check] = {"displayName": string, "isHidden": boolean}
CONTACT_FOLDER: dict[str, Check] = {"displayName": string}
TODO_LIST: dict[str, Check] = {"displayName": string}
LINKED_RESOURCE: dict[str, Check] = {
    "webUrl": string,
    "applicationName": string,
    "displayName": string,
    "externalId": string,
}

CHECKLIST_ITEM: dict[str, Check] = {
    "displayName": string,
    "isChecked": boolean,
    "checkedDateTime": datetime_str,
}

SCHEMAS: dict[str, dict[str, Check]] = {
    "message": MESSAGE,
    "contact": CONTACT,
    "event": EVENT,
    "todoTask": TASK,
    "mailFolder": MAIL_FOLDER,
    "contactFolder": CONTACT_FOLDER,
    "todoTaskList": TODO_LIST,
    "linkedResource": LINKED_RESOURCE,
    "checklistItem": CHECKLIST_ITEM,
}

READ_ONLY = frozenset(
    {
        "id",
        "createdDateTime",
        "lastModifiedDateTime",
        "changeKey",
        "parentFolderId",
        "type",
        "seriesMasterId",
        "hasAttachments",
        "webLink",
        "wellKnownName",
        "isOwner",
        "iCalUId",
        "originalStart",
        "childFolderCount",
        "unreadItemCount",
        "totalItemCount",
        "bodyPreview",
    }
)


def validate_body(kind: str, body: Any) -> dict[str, Any]:
    """Check a create/update body for ``kind``; returns the writable properties.

    Raises ``GraphError`` 400 ``RequestBodyRead`` like Graph does for bad JSON shapes.
    """
    if not isinstance(body, dict):
        raise GraphError(400, "RequestBodyRead", "The request body must be a JSON object.")
    fields = SCHEMAS[kind]
    clean: dict[str, Any] = {}
    for key, value in body.items():
        if key.startswith("@odata.") or key in READ_ONLY:
            continue
        check = fields.get(key)
        if check is None:
            raise GraphError(
                400,
                "RequestBodyRead",
                f"The property '{key}' does not exist on type 'microsoft.graph.{kind}'. "
                "Make sure to only use property names that are defined by the type or mark "
                "the type as open type.",
            )
        try:
            clean[key] = check(value) if value is not None else None
        except Invalid as exc:
            raise GraphError(400, "RequestBodyRead", str(exc)) from None
    return clean
