"""Graph v1.0 JSON (contact, event, todoTask, message) ⇄ the synced field projection.

Pure functions, no I/O. Outlook has no place for some CRM fields; Dynasync keeps them in its own
named extended properties (contacts, events, messages) or in an open extension (To Do tasks):

- ``parentcustomerid`` (contact) and ``regardingobjectid`` (event) as "table:guid";
- the CRM status an event cannot show (3 Completed: showAs busy; 4 Canceled: showAs free until the
  writer cancels the meeting) and the task status To Do lacks (6 Canceled: status completed);
- ``percentcomplete`` and ``regardingobjectid`` of tasks.

Documented lossy cases (Graph → projection):

- contact e-mail/phone lists and address lines have no gaps: a value after an empty slot moves up;
  more than three street lines are folded into line 3 (joined with ", ");
- ``childrensnames`` is split on "," when written as Graph's ``children`` list;
- HTML bodies of events and tasks are reduced to text (writes are text);
- birthdays/anniversaries stored at a non-midnight UTC time are rounded to the nearest date.

Read-only on Graph (``GRAPH_READ_ONLY``, never written): event ``globalobjectid`` and
``instancetypecode``; e-mail ``directioncode``, ``inreplyto``, ``senton``, ``conversationid``.
Writers must cancel meetings through ``/cancel``; ``isCancelled`` cannot be set.
Contact ``companyName`` is a display name and is not mapped (``parentcustomerid`` is the lookup).
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.fields import (
    ABSENT_IF_NONE,
    FIELDS,
    MappingError,
    check_value,
    field_names,
    field_spec,
    fill_task_due,
    lookup_from_text,
    lookup_to_text,
    norm_bool,
    norm_datetime,
    norm_party,
    norm_recurrence,
    norm_str,
    parse_datetime,
    sort_parties,
)
from schemas.models import OutlookAttributes
from schemas.token import TrackingTokenFormat
from schemas.types import Kind, Projection

#: Dynasync's own MAPI property set (a fixed GUID) for its named extended properties.
DYNASYNC_PROPERTY_SET: Final = "{3f6c2b1e-8d4a-4c57-9e0b-6a1d5c7f2e93}"
CORRELATION_PROPERTY_ID: Final = f"String {DYNASYNC_PROPERTY_SET} Name DynasyncCorrelationId"
REGARDING_PROPERTY_ID: Final = f"String {DYNASYNC_PROPERTY_SET} Name DynasyncRegarding"
PARENT_CUSTOMER_PROPERTY_ID: Final = f"String {DYNASYNC_PROPERTY_SET} Name DynasyncParentCustomer"
CRM_STATUS_PROPERTY_ID: Final = f"String {DYNASYNC_PROPERTY_SET} Name DynasyncCrmStatus"
#: PidLidGlobalObjectId, the meeting's match key across mailboxes.
GLOBAL_OBJECT_ID_PROPERTY_ID: Final = "Binary {6ED8DA90-450B-101B-98DA-00AA003F1305} Id 0x0003"
#: Contact fields Graph v1.0 exposes only as MAPI properties (FIELDS.md "ext").
CONTACT_EXTENDED_PROPERTIES: Final[Mapping[str, str]] = {
    "telephone3": "String 0x3A1F",
    "fax": "String 0x3A24",
    "pager": "String 0x3A21",
    "callback": "String 0x3A02",
    "company": "String 0x3A57",
    "assistantphone": "String 0x3A2E",
    "governmentid": "String 0x3A07",
    "ftpsiteurl": "String 0x3A4C",
    "anniversary": "SystemTime 0x3A41",
}
#: The open extension on To Do tasks holding percentComplete, crmStatusCode and regarding.
TASK_EXTENSION_NAME: Final = "com.dynasync.task"
#: ``applicationName`` of the linkedResource that carries a To Do task's correlation id.
LINKED_RESOURCE_APPLICATION: Final = "Dynasync"

#: Canonical fields never written to Graph (read-only there or derived).
GRAPH_READ_ONLY: Final[Mapping[Kind, frozenset[str]]] = {
    "contact": frozenset(),
    "appointment": frozenset({"globalobjectid", "instancetypecode"}),
    "task": frozenset(),
    "email": frozenset({"directioncode", "inreplyto", "senton", "conversationid"}),
}

IMPORTANCE: Final[Mapping[str, int]] = {"low": 0, "normal": 1, "high": 2}
SHOW_AS: Final[Mapping[str, int]] = {
    "free": 1,
    "tentative": 2,
    "busy": 5,
    "oof": 6,
    "workingElsewhere": 5,
    "unknown": 5,
}
_STATUS_SHOW_AS: Final[Mapping[int, str]] = {
    1: "free",
    2: "tentative",
    3: "busy",
    4: "free",
    5: "busy",
    6: "oof",
}
EVENT_TYPE: Final[Mapping[str, int]] = {
    "singleInstance": 0,
    "seriesMaster": 1,
    "occurrence": 2,
    "exception": 3,
}
#: To Do status → (statecode, statuscode) of a CRM task.
TASK_STATUS: Final[Mapping[str, tuple[int, int]]] = {
    "notStarted": (0, 2),
    "inProgress": (0, 3),
    "waitingOnOthers": (0, 4),
    "deferred": (0, 7),
    "completed": (1, 5),
}
#: CRM task statuscode → (statecode, To Do status); 6 Canceled shows as completed.
TASK_STATUSCODE: Final[Mapping[int, tuple[int, str]]] = {
    2: (0, "notStarted"),
    3: (0, "inProgress"),
    4: (0, "waitingOnOthers"),
    7: (0, "deferred"),
    5: (1, "completed"),
    6: (2, "completed"),
}
DAYS: Final[tuple[str, ...]] = (
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
)
INDEXES: Final[tuple[str, ...]] = ("first", "second", "third", "fourth", "last")
_PATTERNS: Final[Mapping[str, tuple[int, bool]]] = {
    "daily": (0, False),
    "weekly": (1, False),
    "absoluteMonthly": (2, False),
    "relativeMonthly": (2, True),
    "absoluteYearly": (3, False),
    "relativeYearly": (3, True),
}
_RANGES: Final[Mapping[str, int]] = {"noEnd": 1, "numbered": 2, "endDate": 3}
#: Common Windows time zone names Outlook uses, with their IANA equivalents.
WINDOWS_ZONES: Final[Mapping[str, str]] = {
    "Coordinated Universal Time": "UTC",
    "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "W. Europe Standard Time": "Europe/Berlin",
    "Central Europe Standard Time": "Europe/Budapest",
    "Central European Standard Time": "Europe/Warsaw",
    "Romance Standard Time": "Europe/Paris",
    "E. Europe Standard Time": "Europe/Chisinau",
    "FLE Standard Time": "Europe/Kiev",
    "GTB Standard Time": "Europe/Bucharest",
    "Russian Standard Time": "Europe/Moscow",
    "Turkey Standard Time": "Europe/Istanbul",
    "Israel Standard Time": "Asia/Jerusalem",
    "South Africa Standard Time": "Africa/Johannesburg",
    "Arabian Standard Time": "Asia/Dubai",
    "India Standard Time": "Asia/Kolkata",
    "China Standard Time": "Asia/Shanghai",
    "Singapore Standard Time": "Asia/Singapore",
    "Tokyo Standard Time": "Asia/Tokyo",
    "Korea Standard Time": "Asia/Seoul",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "E. Australia Standard Time": "Australia/Brisbane",
    "W. Australia Standard Time": "Australia/Perth",
    "New Zealand Standard Time": "Pacific/Auckland",
    "Eastern Standard Time": "America/New_York",
    "Central Standard Time": "America/Chicago",
    "Mountain Standard Time": "America/Denver",
    "US Mountain Standard Time": "America/Phoenix",
    "Pacific Standard Time": "America/Los_Angeles",
    "Alaskan Standard Time": "America/Anchorage",
    "Hawaiian Standard Time": "Pacific/Honolulu",
    "Atlantic Standard Time": "America/Halifax",
    "E. South America Standard Time": "America/Sao_Paulo",
    "Argentina Standard Time": "America/Buenos_Aires",
    "SA Pacific Standard Time": "America/Bogota",
    "Central Standard Time (Mexico)": "America/Mexico_City",
}

_CONTACT_SIMPLE: Final[Mapping[str, str]] = {
    "firstname": "givenName",
    "middlename": "middleName",
    "lastname": "surname",
    "suffix": "generation",
    "salutation": "title",
    "yomifirstname": "yomiGivenName",
    "yomilastname": "yomiSurname",
    "nickname": "nickName",
    "jobtitle": "jobTitle",
    "department": "department",
    "managername": "manager",
    "assistantname": "assistantName",
    "spousesname": "spouseName",
    "mobilephone": "mobilePhone",
    "websiteurl": "businessHomePage",
    "description": "personalNotes",
}
_ADDRESSES: Final[Mapping[str, str]] = {
    "address1": "businessAddress",
    "address2": "homeAddress",
    "address3": "otherAddress",
}
_ADDRESS_PARTS: Final[Mapping[str, str]] = {
    "city": "city",
    "stateorprovince": "state",
    "postalcode": "postalCode",
    "country": "countryOrRegion",
}
_EMAILS: Final = ("emailaddress1", "emailaddress2", "emailaddress3")
_BUSINESS_PHONES: Final = ("telephone1", "business2")
_HOME_PHONES: Final = ("telephone2", "home2")
_RECIPIENTS: Final[Mapping[str, str]] = {
    "to": "toRecipients",
    "cc": "ccRecipients",
    "bcc": "bccRecipients",
}
#: Tracking tokens in Dynamics' default format (``CRM:`` and digits).
DEFAULT_TOKEN_FORMAT: Final = TrackingTokenFormat()


# ---------------------------------------------------------------------------------------------
# Small readers
# ---------------------------------------------------------------------------------------------


def _obj(field: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MappingError(field, value, "expected a JSON object")
    return value


def _list(field: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MappingError(field, value, "expected a JSON array")
    return value


def _option(field: str, value: Any, options: Mapping[str, int]) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in options:
        raise MappingError(field, value, f"not one of {sorted(options)}")
    return options[value]


def _key(property_id: str) -> str:
    return " ".join(property_id.split()).casefold()


def _extended(item: Mapping[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for entry in _list("singleValueExtendedProperties", item.get("singleValueExtendedProperties")):
        entry = _obj("singleValueExtendedProperties[]", entry)
        pid = entry.get("id")
        if not isinstance(pid, str):
            raise MappingError("singleValueExtendedProperties[].id", pid, "expected a string")
        props[_key(pid)] = entry.get("value")
    return props


def _task_extension(item: Mapping[str, Any]) -> Mapping[str, Any]:
    for entry in _list("extensions", item.get("extensions")):
        entry = _obj("extensions[]", entry)
        name = entry.get("extensionName", entry.get("id"))
        if isinstance(name, str) and name.endswith(TASK_EXTENSION_NAME):
            return entry
    return {}


def zone(field: str, name: Any) -> tzinfo:
    """The tzinfo of a Graph ``timeZone``: "UTC", an IANA name or a common Windows name."""
    if not isinstance(name, str) or not name:
        raise MappingError(field, name, "expected a time zone name")
    if name.upper() in ("UTC", "GMT", "ETC/UTC", "Z", "TZONE://MICROSOFT/UTC"):
        return UTC
    try:
        return ZoneInfo(WINDOWS_ZONES.get(name, name))
    except (ZoneInfoNotFoundError, ValueError):
        raise MappingError(field, name, "unknown time zone") from None


def _dtz(field: str, value: Any) -> str | None:
    """A Graph dateTimeTimeZone as canonical UTC."""
    if value is None:
        return None
    obj = _obj(field, value)
    when = obj.get("dateTime")
    if when is None or when == "":
        return None
    tz = zone(f"{field}.timeZone", obj.get("timeZone") or "UTC")
    moment = parse_datetime(f"{field}.dateTime", when, tz)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _to_dtz(value: str | None) -> dict[str, str] | None:
    if value is None:
        return None
    return {"dateTime": value.removesuffix("Z"), "timeZone": "UTC"}


def _graph_date(field: str, value: Any) -> str | None:
    """A Graph birthday-style timestamp as a date, rounding to the nearest UTC midnight."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and len(value) == 10:
        return _checked_date(field, value)
    moment = parse_datetime(field, value).astimezone(UTC)
    if moment.hour >= 12:
        moment += timedelta(days=1)
    return moment.date().isoformat()


def _checked_date(field: str, value: str) -> str:
    try:
        return datetime.strptime(value, "%Y-%m-%d").date().isoformat()
    except ValueError:
        raise MappingError(field, value, "not a YYYY-MM-DD date") from None


def html_to_text(content: str) -> str:
    """A plain-text rendering of an HTML body (tags dropped, block ends as newlines)."""
    text = re.sub(r"(?is)<(head|style|script)\b.*?</\1\s*>", "", content)
    text = re.sub(r"(?i)<br\s*/?>", "\n", text)
    text = re.sub(r"(?i)</(p|div|li|tr|h[1-6])\s*>", "\n", text)
    text = re.sub(r"<[^>]*>", "", text)
    text = html.unescape(text).replace("\r\n", "\n").replace("\xa0", " ")
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _body_text(field: str, value: Any) -> str | None:
    body = _obj(field, value)
    content = norm_str(f"{field}.content", body.get("content"))
    if content is None:
        return None
    kind = body.get("contentType", "text")
    if not isinstance(kind, str) or kind.lower() not in ("text", "html"):
        raise MappingError(f"{field}.contentType", kind, 'expected "text" or "html"')
    return norm_str(field, html_to_text(content)) if kind.lower() == "html" else content


def _recipient(field: str, value: Any) -> dict[str, Any] | None:
    address = _obj(f"{field}.emailAddress", _obj(field, value).get("emailAddress"))
    if not address.get("address"):
        return None
    return norm_party(field, address.get("address"), address.get("name"))


def _recipients(field: str, value: Any) -> list[dict[str, Any]]:
    parties = [_recipient(f"{field}[]", v) for v in _list(field, value)]
    return sort_parties([p for p in parties if p is not None])


def _strings(field: str, value: Any) -> list[str]:
    return [s for s in (norm_str(f"{field}[]", v) for v in _list(field, value)) if s is not None]


def _finish(kind: Kind, values: Mapping[str, Any], groups: frozenset[str]) -> Projection:
    absent = ABSENT_IF_NONE[kind]
    out: Projection = {}
    for name in sorted(field_names(kind, groups)):
        value = values.get(name)
        if value is None and name in absent:
            continue
        out[name] = value
    return out


# ---------------------------------------------------------------------------------------------
# Graph → projection
# ---------------------------------------------------------------------------------------------


def _contact_in(item: Mapping[str, Any]) -> dict[str, Any]:
    ext = _extended(item)
    p: dict[str, Any] = {n: norm_str(g, item.get(g)) for n, g in _CONTACT_SIMPLE.items()}
    emails = [
        _obj("emailAddresses[]", e).get("address")
        for e in _list("emailAddresses", item.get("emailAddresses"))
    ]
    emails = [a for a in (norm_str("emailAddresses[].address", e) for e in emails) if a]
    for name, value in zip(_EMAILS, [*emails, None, None, None], strict=False):
        p[name] = value
    for names, prop in ((_BUSINESS_PHONES, "businessPhones"), (_HOME_PHONES, "homePhones")):
        phones = _strings(prop, item.get(prop))
        for name, value in zip(names, [*phones, None, None], strict=False):
            p[name] = value
    children = _strings("children", item.get("children"))
    p["childrensnames"] = ", ".join(children) or None
    p["birthdate"] = _graph_date("birthday", item.get("birthday"))
    for name, pid in CONTACT_EXTENDED_PROPERTIES.items():
        raw = ext.get(_key(pid))
        if name == "anniversary":
            p[name] = _graph_date(pid, raw)
        else:
            p[name] = norm_str(pid, raw)
    for prefix, prop in _ADDRESSES.items():
        address = _obj(prop, item.get(prop))
        street = norm_str(f"{prop}.street", address.get("street"))
        lines = [s for s in (street or "").replace("\r\n", "\n").split("\n") if s.strip()]
        if len(lines) > 3:
            lines = [*lines[:2], ", ".join(lines[2:])]
        for i in range(3):
            p[f"{prefix}_line{i + 1}"] = lines[i] if i < len(lines) else None
        for part, graph_part in _ADDRESS_PARTS.items():
            p[f"{prefix}_{part}"] = norm_str(f"{prop}.{graph_part}", address.get(graph_part))
    p["parentcustomerid"] = lookup_from_text(
        "parentcustomerid", ext.get(_key(PARENT_CUSTOMER_PROPERTY_ID))
    )
    return p


def _status_marker(ext: Mapping[str, Any]) -> int | None:
    raw = ext.get(_key(CRM_STATUS_PROPERTY_ID))
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or not raw.isdigit():
        raise MappingError(CRM_STATUS_PROPERTY_ID, raw, "expected a status code")
    return int(raw)


def _event_status(item: Mapping[str, Any], ext: Mapping[str, Any]) -> int | None:
    if norm_bool("isCancelled", item.get("isCancelled")):
        return 4
    show_as = item.get("showAs")
    code = _option("showAs", show_as, SHOW_AS)
    marker = _status_marker(ext)
    if (marker == 3 and show_as == "busy") or (marker == 4 and show_as == "free"):
        return marker
    return code


def _global_object_id(raw: Any) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise MappingError("globalobjectid", raw, "expected base64 text")
    try:
        return base64.b64decode(raw, validate=True).hex().upper()
    except (binascii.Error, ValueError):
        raise MappingError("globalobjectid", raw, "not base64") from None


def _mask(field: str, days: Any) -> int | None:
    mask = 0
    for day in _list(field, days):
        if day not in DAYS:
            raise MappingError(field, day, f"not one of {list(DAYS)}")
        mask |= 1 << DAYS.index(day)
    return mask or None


def recurrence_from_graph(value: Any) -> dict[str, Any] | None:
    """A Graph patternedRecurrence as the canonical recurrence dict."""
    if value is None:
        return None
    rec = _obj("recurrence", value)
    pattern = _obj("recurrence.pattern", rec.get("pattern"))
    span = _obj("recurrence.range", rec.get("range"))
    kind = pattern.get("type")
    if not isinstance(kind, str) or kind not in _PATTERNS:
        raise MappingError("recurrence.pattern.type", kind, f"not one of {sorted(_PATTERNS)}")
    number, relative = _PATTERNS[kind]
    first_day = pattern.get("firstDayOfWeek")
    if first_day is not None and first_day not in DAYS:
        raise MappingError("recurrence.pattern.firstDayOfWeek", first_day, "not a day name")
    index = pattern.get("index") if relative else None
    if index is not None and index not in INDEXES:
        raise MappingError("recurrence.pattern.index", index, f"not one of {list(INDEXES)}")
    end_type = _option("recurrence.range.type", span.get("type"), _RANGES)
    return norm_recurrence(
        {
            "recurrencepatterntype": number,
            "interval": pattern.get("interval"),
            "daysofweekmask": _mask("recurrence.pattern.daysOfWeek", pattern.get("daysOfWeek")),
            "dayofmonth": None if relative else pattern.get("dayOfMonth"),
            "monthofyear": pattern.get("month") if number == 3 else None,
            "instance": INDEXES.index(index) + 1 if relative else None,
            "firstdayofweek": DAYS.index(first_day) if first_day else None,
            "patternendtype": end_type,
            "patternstartdate": span.get("startDate"),
            "occurrences": span.get("numberOfOccurrences") if end_type == 2 else None,
            "patternenddate": span.get("endDate") if end_type == 3 else None,
        }
    )


def _event_in(item: Mapping[str, Any]) -> dict[str, Any]:
    ext = _extended(item)
    required: list[dict[str, Any]] = []
    optional: list[dict[str, Any]] = []
    for attendee in _list("attendees", item.get("attendees")):
        kind = _obj("attendees[]", attendee).get("type", "required")
        if kind not in ("required", "optional", "resource"):
            raise MappingError("attendees[].type", kind, "not required/optional/resource")
        party = _recipient("attendees[]", attendee)
        if party is not None and kind != "resource":
            (required if kind == "required" else optional).append(party)
    return {
        "subject": norm_str("subject", item.get("subject")),
        "description": _body_text("body", item.get("body")),
        "location": norm_str(
            "location.displayName", _obj("location", item.get("location")).get("displayName")
        ),
        "scheduledstart": _dtz("start", item.get("start")),
        "scheduledend": _dtz("end", item.get("end")),
        "isalldayevent": norm_bool("isAllDay", item.get("isAllDay")),
        "prioritycode": _option("importance", item.get("importance"), IMPORTANCE),
        "statuscode": _event_status(item, ext),
        "requiredattendees": sort_parties(required),
        "optionalattendees": sort_parties(optional),
        "organizer": _recipient("organizer", item.get("organizer")),
        "regardingobjectid": lookup_from_text(
            "regardingobjectid", ext.get(_key(REGARDING_PROPERTY_ID))
        ),
        "globalobjectid": _global_object_id(ext.get(_key(GLOBAL_OBJECT_ID_PROPERTY_ID))),
        "instancetypecode": _option("type", item.get("type"), EVENT_TYPE),
        "recurrence": recurrence_from_graph(item.get("recurrence")),
    }


def _task_in(item: Mapping[str, Any]) -> dict[str, Any]:
    extension = _task_extension(item)
    status = item.get("status")
    state: tuple[int, int] | tuple[None, None] = (None, None)
    if status is not None:
        if status not in TASK_STATUS:
            raise MappingError("status", status, f"not one of {sorted(TASK_STATUS)}")
        state = TASK_STATUS[status]
        if status == "completed" and extension.get("crmStatusCode") == 6:
            state = (2, 6)
    percent = extension.get("percentComplete")
    if percent is not None and (
        isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100
    ):
        raise MappingError("percentComplete", percent, "expected an integer 0..100")
    return fill_task_due(
        {
            "subject": norm_str("title", item.get("title")),
            "description": _body_text("body", item.get("body")),
            "scheduledstart": _dtz("startDateTime", item.get("startDateTime")),
            "scheduledend": _dtz("dueDateTime", item.get("dueDateTime")),
            "actualend": _dtz("completedDateTime", item.get("completedDateTime")),
            "prioritycode": _option("importance", item.get("importance"), IMPORTANCE),
            "statecode": state[0],
            "statuscode": state[1],
            "percentcomplete": percent,
            "regardingobjectid": lookup_from_text("regarding", extension.get("regarding")),
        }
    )


def _in_reply_to(item: Mapping[str, Any]) -> str | None:
    for header in _list("internetMessageHeaders", item.get("internetMessageHeaders")):
        header = _obj("internetMessageHeaders[]", header)
        name = header.get("name")
        if isinstance(name, str) and name.lower() == "in-reply-to":
            return norm_str("internetMessageHeaders[In-Reply-To]", header.get("value"))
    return None


def _email_in(
    item: Mapping[str, Any],
    mailbox: str | None,
    sent_folder_ids: Collection[str],
    token_format: TrackingTokenFormat,
) -> dict[str, Any]:
    subject, token = token_format.split(norm_str("subject", item.get("subject")))
    sender = _recipient("from", item.get("from"))
    body = _obj("body", item.get("body"))
    outgoing = item.get("parentFolderId") in sent_folder_ids or (
        sender is not None and mailbox is not None and sender["email"] == mailbox.strip().lower()
    )
    p: dict[str, Any] = {
        "subject": subject,
        "trackingtoken": token,
        "description": norm_str("body.content", body.get("content")),
        "directioncode": outgoing,
        "messageid": norm_str("internetMessageId", item.get("internetMessageId")),
        "inreplyto": _in_reply_to(item),
        "from": sender,
        "senton": norm_datetime("sentDateTime", item.get("sentDateTime")),
        "prioritycode": _option("importance", item.get("importance"), IMPORTANCE),
        "conversationid": norm_str("conversationId", item.get("conversationId")),
    }
    for name, prop in _RECIPIENTS.items():
        p[name] = _recipients(prop, item.get(prop))
    return p


def graph_to_projection(
    kind: Kind,
    item: Mapping[str, Any],
    *,
    groups: frozenset[str] = frozenset(),
    mailbox: str | None = None,
    sent_folder_ids: Collection[str] = (),
    token_format: TrackingTokenFormat = DEFAULT_TOKEN_FORMAT,
) -> Projection:
    """The synced projection of a Graph contact / event / todoTask / message.

    ``mailbox`` (the owner's address) and ``sent_folder_ids`` decide an e-mail's direction;
    the tracking token (``token_format``, the organisation's) is split off its subject.
    Extended properties are read from the expanded ``singleValueExtendedProperties`` (see
    ``expand_for``), task extras from the expanded ``extensions``.
    """
    if not isinstance(item, Mapping):
        raise MappingError(kind, item, "expected a JSON object")
    if kind == "contact":
        values = _contact_in(item)
    elif kind == "appointment":
        values = _event_in(item)
    elif kind == "task":
        values = _task_in(item)
    elif kind == "email":
        values = _email_in(item, mailbox, sent_folder_ids, token_format)
    else:
        raise MappingError("kind", kind, "unknown kind")
    return _finish(kind, values, groups)


def _bounded(field: str, value: str | None, limit: int) -> str | None:
    if value is not None and len(value) > limit:
        raise MappingError(field, value[:80], f"longer than {limit} characters")
    return value


def outlook_attributes(
    kind: Kind,
    item: Mapping[str, Any],
    *,
    token_format: TrackingTokenFormat = DEFAULT_TOKEN_FORMAT,
) -> OutlookAttributes:
    """What the rules need of a Graph item besides its synced fields: its folder and
    categories, and a message's internetMessageId, In-Reply-To, tracking token (the same
    ``token_format`` the projection's subject is split with) and conversationId."""
    if not isinstance(item, Mapping):
        raise MappingError(kind, item, "expected a JSON object")
    folder = _bounded("parentFolderId", norm_str("parentFolderId", item.get("parentFolderId")), 512)
    categories = [c for c in _strings("categories", item.get("categories"))[:256] if c.strip()]
    if kind != "email":
        return OutlookAttributes(folder_id=folder, categories=categories)
    subject = norm_str("subject", item.get("subject"))
    return OutlookAttributes(
        folder_id=folder,
        categories=categories,
        internet_message_id=_bounded(
            "internetMessageId", norm_str("internetMessageId", item.get("internetMessageId")), 998
        ),
        in_reply_to=_bounded("In-Reply-To", _in_reply_to(item), 998),
        tracking_token=token_format.find(subject),
        conversation_id=_bounded(
            "conversationId", norm_str("conversationId", item.get("conversationId")), 512
        ),
    )


# ---------------------------------------------------------------------------------------------
# projection → Graph
# ---------------------------------------------------------------------------------------------


def _party_out(party: Mapping[str, Any]) -> dict[str, Any]:
    address: dict[str, Any] = {"address": party["email"]}
    if party.get("name"):
        address["name"] = party["name"]
    return {"emailAddress": address}


def recurrence_to_graph(rec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The canonical recurrence dict as a Graph patternedRecurrence."""
    canon = norm_recurrence(rec)
    if canon is None:
        return None
    number = canon["recurrencepatterntype"]
    relative = canon["instance"] is not None
    name = {0: "daily", 1: "weekly"}.get(number) or (
        ("relative" if relative else "absolute") + ("Monthly" if number == 2 else "Yearly")
    )
    pattern: dict[str, Any] = {"type": name, "interval": canon["interval"]}
    if canon["daysofweekmask"] is not None:
        mask = canon["daysofweekmask"]
        pattern["daysOfWeek"] = [d for i, d in enumerate(DAYS) if mask & (1 << i)]
    if number == 1:
        pattern["firstDayOfWeek"] = DAYS[canon["firstdayofweek"]]
    if relative:
        pattern["index"] = INDEXES[canon["instance"] - 1]
    elif number in (2, 3):
        pattern["dayOfMonth"] = canon["dayofmonth"]
    if number == 3:
        pattern["month"] = canon["monthofyear"]
    end_type = canon["patternendtype"]
    span: dict[str, Any] = {
        "type": {1: "noEnd", 2: "numbered", 3: "endDate"}[end_type],
        "startDate": canon["patternstartdate"],
        "recurrenceTimeZone": "UTC",
    }
    if end_type == 2:
        span["numberOfOccurrences"] = canon["occurrences"]
    if end_type == 3:
        span["endDate"] = canon["patternenddate"]
    return {"pattern": pattern, "range": span}


class _Out:
    """Accumulates a Graph body: plain properties and extended properties."""

    def __init__(self, kind: Kind, projection: Mapping[str, Any]) -> None:
        self.kind = kind
        self.projection = projection
        self.body: dict[str, Any] = {}
        self.extended: list[dict[str, Any]] = []

    def value(self, name: str) -> Any:
        spec = field_spec(self.kind, name)
        if (
            name not in self.projection
            and spec.group is None
            and name not in ABSENT_IF_NONE[self.kind]
        ):
            raise MappingError(name, None, "missing from the projection")
        return check_value(spec, self.projection.get(name))

    def ext(self, property_id: str, value: str | None) -> None:
        self.extended.append({"id": property_id, "value": value or ""})

    def result(self) -> dict[str, Any]:
        if self.extended:
            self.body["singleValueExtendedProperties"] = self.extended
        return self.body


def _contact_out(out: _Out, fields: frozenset[str]) -> None:
    for name, prop in _CONTACT_SIMPLE.items():
        if name in fields:
            out.body[prop] = out.value(name)
    if fields & set(_EMAILS):
        emails = [e for e in (out.value(n) for n in _EMAILS) if e]
        out.body["emailAddresses"] = [{"address": e, "name": e} for e in emails]
    for names, prop in ((_BUSINESS_PHONES, "businessPhones"), (_HOME_PHONES, "homePhones")):
        if fields & set(names):
            out.body[prop] = [v for v in (out.value(n) for n in names) if v]
    if "childrensnames" in fields:
        joined = out.value("childrensnames") or ""
        out.body["children"] = [c.strip() for c in joined.split(",") if c.strip()]
    if "birthdate" in fields:
        born = out.value("birthdate")
        out.body["birthday"] = f"{born}T00:00:00Z" if born else None
    for name, pid in CONTACT_EXTENDED_PROPERTIES.items():
        if name in fields:
            raw = out.value(name)
            out.ext(pid, f"{raw}T00:00:00Z" if raw and name == "anniversary" else raw)
    for prefix, prop in _ADDRESSES.items():
        parts = [f"line{i}" for i in (1, 2, 3)] + list(_ADDRESS_PARTS)
        if not fields & {f"{prefix}_{part}" for part in parts}:
            continue
        lines = [out.value(f"{prefix}_line{i}") for i in (1, 2, 3)]
        address: dict[str, Any] = {"street": "\n".join(s for s in lines if s) or None}
        for part, graph_part in _ADDRESS_PARTS.items():
            address[graph_part] = out.value(f"{prefix}_{part}")
        out.body[prop] = address
    if "parentcustomerid" in fields:
        parent = out.value("parentcustomerid")
        out.ext(PARENT_CUSTOMER_PROPERTY_ID, lookup_to_text(parent) if parent else None)


def _event_out(out: _Out, fields: frozenset[str]) -> None:
    if "subject" in fields:
        out.body["subject"] = out.value("subject")
    if "description" in fields:
        out.body["body"] = {"contentType": "text", "content": out.value("description") or ""}
    if "location" in fields:
        out.body["location"] = {"displayName": out.value("location") or ""}
    if "scheduledstart" in fields:
        out.body["start"] = _to_dtz(out.value("scheduledstart"))
    if "scheduledend" in fields:
        out.body["end"] = _to_dtz(out.value("scheduledend"))
    if "isalldayevent" in fields:
        out.body["isAllDay"] = out.value("isalldayevent")
    if "prioritycode" in fields:
        out.body["importance"] = _importance_out(out.value("prioritycode"))
    if "statuscode" in fields:
        code = out.value("statuscode")
        if code is not None and code not in _STATUS_SHOW_AS:
            raise MappingError("statuscode", code, f"not one of {sorted(_STATUS_SHOW_AS)}")
        out.body["showAs"] = _STATUS_SHOW_AS[code] if code is not None else None
        out.ext(CRM_STATUS_PROPERTY_ID, str(code) if code is not None else None)
    if fields & {"requiredattendees", "optionalattendees"}:
        out.body["attendees"] = [
            {**_party_out(p), "type": kind}
            for name, kind in (("requiredattendees", "required"), ("optionalattendees", "optional"))
            for p in out.value(name)
        ]
    if "organizer" in fields:
        organizer = out.value("organizer")
        out.body["organizer"] = _party_out(organizer) if organizer else None
    if "regardingobjectid" in fields:
        regarding = out.value("regardingobjectid")
        out.ext(REGARDING_PROPERTY_ID, lookup_to_text(regarding) if regarding else None)
    if "recurrence" in fields:
        out.body["recurrence"] = recurrence_to_graph(out.value("recurrence"))


def _importance_out(code: int | None) -> str | None:
    if code is None:
        return None
    names = {v: k for k, v in IMPORTANCE.items()}
    if code not in names:
        raise MappingError("prioritycode", code, "not one of [0, 1, 2]")
    return names[code]


def _task_out(out: _Out, fields: frozenset[str]) -> None:
    if "subject" in fields:
        out.body["title"] = out.value("subject")
    if "description" in fields:
        out.body["body"] = {"contentType": "text", "content": out.value("description") or ""}
    for name, prop in (
        ("scheduledstart", "startDateTime"),
        ("scheduledend", "dueDateTime"),
        ("actualend", "completedDateTime"),
    ):
        if name in fields:
            out.body[prop] = _to_dtz(out.value(name))
    if "prioritycode" in fields:
        out.body["importance"] = _importance_out(out.value("prioritycode"))
    status_code: int | None = None
    if fields & {"statuscode", "statecode"}:
        status_code = out.value("statuscode")
        if status_code is not None and status_code not in TASK_STATUSCODE:
            raise MappingError("statuscode", status_code, f"not one of {sorted(TASK_STATUSCODE)}")
        state = out.value("statecode")
        if status_code is not None:
            expected, status = TASK_STATUSCODE[status_code]
            if state is not None and state != expected:
                raise MappingError("statecode", state, f"statuscode {status_code} needs {expected}")
            out.body["status"] = status
    if fields & {"statuscode", "statecode", "percentcomplete", "regardingobjectid"}:
        regarding = out.value("regardingobjectid")
        percent = out.value("percentcomplete")
        if percent is not None and not 0 <= percent <= 100:
            raise MappingError("percentcomplete", percent, "outside 0..100")
        out.body["extensions"] = [
            {
                "@odata.type": "microsoft.graph.openTypeExtension",
                "extensionName": TASK_EXTENSION_NAME,
                "percentComplete": percent,
                "crmStatusCode": out.value("statuscode"),
                "regarding": lookup_to_text(regarding) if regarding else None,
            }
        ]


def _email_out(out: _Out, fields: frozenset[str]) -> None:
    if fields & {"subject", "trackingtoken"}:
        subject, token = out.value("subject"), out.value("trackingtoken")
        out.body["subject"] = " ".join(s for s in (subject, token) if s) if token else subject
    if "description" in fields:
        out.body["body"] = {"contentType": "html", "content": out.value("description") or ""}
    if "messageid" in fields and out.value("messageid"):  # absent: the service assigns one
        out.body["internetMessageId"] = out.value("messageid")
    if "from" in fields:
        sender = out.value("from")
        out.body["from"] = _party_out(sender) if sender else None
    for name, prop in _RECIPIENTS.items():
        if name in fields:
            out.body[prop] = [_party_out(p) for p in out.value(name)]
    if "prioritycode" in fields:
        out.body["importance"] = _importance_out(out.value("prioritycode"))


def projection_to_graph(
    kind: Kind, projection: Mapping[str, Any], *, fields: Iterable[str] | None = None
) -> dict[str, Any]:
    """The Graph create/PATCH body writing ``fields`` (default: every field in ``projection``).

    Fields that share one Graph property (e-mail lists, phone lists, addresses, attendees,
    subject + tracking token, the task extension) are written whole from ``projection``, so
    those siblings must be in it (``MappingError`` otherwise; group fields may be absent).
    ``GRAPH_READ_ONLY`` fields are skipped. Values are validated (``MappingError``).
    """
    if not isinstance(projection, Mapping):
        raise MappingError(kind, projection, "expected a projection object")
    known = {f.name for f in FIELDS[kind]}
    wanted = set(projection) if fields is None else set(fields)
    unknown = wanted - known
    if unknown:
        raise MappingError(sorted(unknown)[0], sorted(unknown), f"not a synced {kind} field")
    chosen = frozenset(wanted - GRAPH_READ_ONLY[kind])
    out = _Out(kind, projection)
    writer = {
        "contact": _contact_out,
        "appointment": _event_out,
        "task": _task_out,
        "email": _email_out,
    }[kind]
    writer(out, chosen)
    return out.result()


# ---------------------------------------------------------------------------------------------
# Correlation
# ---------------------------------------------------------------------------------------------


def correlation_id_of(kind: Kind, item: Mapping[str, Any]) -> str | None:
    """The Dynasync correlation id stamped on a Graph item, if any."""
    if kind == "task":
        for link in _list("linkedResources", item.get("linkedResources")):
            link = _obj("linkedResources[]", link)
            if link.get("applicationName") == LINKED_RESOURCE_APPLICATION:
                return norm_str("linkedResources[].externalId", link.get("externalId"))
        return None
    return norm_str(CORRELATION_PROPERTY_ID, _extended(item).get(_key(CORRELATION_PROPERTY_ID)))


def correlation_stamp(kind: Kind, correlation_id: str) -> dict[str, Any]:
    """The Graph body fragment that stamps ``correlation_id`` on an item of ``kind``."""
    if not isinstance(correlation_id, str) or not correlation_id:
        raise MappingError("correlation_id", correlation_id, "expected a non-empty string")
    if kind == "task":
        return {
            "linkedResources": [
                {
                    "applicationName": LINKED_RESOURCE_APPLICATION,
                    "displayName": "Dynasync",
                    "externalId": correlation_id,
                }
            ]
        }
    return {
        "singleValueExtendedProperties": [{"id": CORRELATION_PROPERTY_ID, "value": correlation_id}]
    }


def expand_for(kind: Kind) -> str:
    """The ``$expand`` value a reader needs so ``graph_to_projection`` sees every synced field."""
    if kind == "task":
        return f"extensions($filter=id eq '{TASK_EXTENSION_NAME}'),linkedResources"
    ids = [CORRELATION_PROPERTY_ID]
    if kind == "contact":
        ids += [PARENT_CUSTOMER_PROPERTY_ID, *CONTACT_EXTENDED_PROPERTIES.values()]
    elif kind == "appointment":
        ids += [REGARDING_PROPERTY_ID, CRM_STATUS_PROPERTY_ID, GLOBAL_OBJECT_ID_PROPERTY_ID]
    filters = " or ".join(f"id eq '{pid}'" for pid in ids)
    return f"singleValueExtendedProperties($filter={filters})"
