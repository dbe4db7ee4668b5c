"""The synced field catalogue, and the canonical value forms both field mappings produce.

Canonical names are the Dataverse logical column names of FIELDS.md. A field in a ``group``
("address2", "address3", "percentcomplete") is synced only when its group is enabled.
``fixed`` fields always sync both ways; the admin cannot change their direction.
``max_length`` is the Dataverse column limit; longer values are truncated on the CRM side.
The ``norm_*``/``check_*`` helpers turn raw values into the projection conventions (UTC seconds
timestamps, lowercase party emails, sorted party lists, lookups {"table", "id"}) or raise
``MappingError`` naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any, Final, Literal, TypeAlias

from schemas.types import Kind, Projection

FieldType: TypeAlias = Literal[
    "string", "text", "int", "bool", "date", "datetime", "party", "parties", "lookup", "recurrence"
]


class MappingError(ValueError):
    """A value at the Graph/Dataverse edge that cannot be mapped; names the field and the value."""

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        shown = repr(value)
        if len(shown) > 120:
            shown = shown[:117] + "..."
        super().__init__(f"{field}: {reason} (got {shown})")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One synced field of one kind."""

    name: str
    kind: Kind
    type: FieldType
    fixed: bool = False
    group: str | None = None
    max_length: int | None = None


def _f(
    kind: Kind,
    name: str,
    type_: FieldType = "string",
    *,
    fixed: bool = False,
    group: str | None = None,
    max_length: int | None = None,
) -> FieldSpec:
    return FieldSpec(name, kind, type_, fixed, group, max_length)


def _address(prefix: str, group: str | None) -> tuple[FieldSpec, ...]:
    limits = (
        ("line1", 250),
        ("line2", 250),
        ("line3", 250),
        ("city", 80),
        ("stateorprovince", 50),
        ("postalcode", 20),
        ("country", 80),
    )
    return tuple(_f("contact", f"{prefix}_{part}", group=group, max_length=n) for part, n in limits)


_CONTACT_STRINGS: tuple[tuple[str, int], ...] = (
    ("firstname", 50),
    ("middlename", 50),
    ("lastname", 50),
    ("suffix", 10),
    ("salutation", 100),
    ("yomifirstname", 150),
    ("yomilastname", 150),
    ("nickname", 100),
    ("jobtitle", 100),
    ("department", 100),
    ("managername", 100),
    ("assistantname", 100),
    ("spousesname", 100),
    ("childrensnames", 255),
    ("emailaddress1", 100),
    ("emailaddress2", 100),
    ("emailaddress3", 100),
    ("telephone1", 50),
    ("business2", 50),
    ("telephone2", 50),
    ("home2", 50),
    ("mobilephone", 50),
    ("telephone3", 50),
    ("fax", 50),
    ("pager", 50),
    ("callback", 50),
    ("company", 50),
    ("assistantphone", 50),
    ("governmentid", 50),
    ("ftpsiteurl", 200),
    ("websiteurl", 200),
)

_CONTACT: tuple[FieldSpec, ...] = (
    *(_f("contact", n, max_length=m) for n, m in _CONTACT_STRINGS),
    _f("contact", "birthdate", "date"),
    _f("contact", "anniversary", "date"),
    *_address("address1", None),
    *_address("address2", "address2"),
    *_address("address3", "address3"),
    _f("contact", "description", "text", max_length=2000),
    _f("contact", "parentcustomerid", "lookup", fixed=True),
)

_APPOINTMENT: tuple[FieldSpec, ...] = (
    _f("appointment", "subject", max_length=200),
    _f("appointment", "description", "text", max_length=2000),
    _f("appointment", "location", max_length=200),
    _f("appointment", "scheduledstart", "datetime", fixed=True),
    _f("appointment", "scheduledend", "datetime", fixed=True),
    _f("appointment", "isalldayevent", "bool", fixed=True),
    _f("appointment", "prioritycode", "int", fixed=True),
    _f("appointment", "statuscode", "int", fixed=True),
    _f("appointment", "requiredattendees", "parties", fixed=True),
    _f("appointment", "optionalattendees", "parties", fixed=True),
    _f("appointment", "organizer", "party", fixed=True),
    _f("appointment", "regardingobjectid", "lookup", fixed=True),
    _f("appointment", "globalobjectid", fixed=True, max_length=300),
    _f("appointment", "instancetypecode", "int", fixed=True),
    _f("appointment", "recurrence", "recurrence", fixed=True),
)

_TASK: tuple[FieldSpec, ...] = (
    _f("task", "subject", max_length=200),
    _f("task", "description", "text", max_length=2000),
    _f("task", "scheduledstart", "datetime"),
    _f("task", "scheduledend", "datetime"),
    _f("task", "actualend", "datetime"),
    _f("task", "prioritycode", "int", fixed=True),
    _f("task", "statecode", "int", fixed=True),
    _f("task", "statuscode", "int", fixed=True),
    _f("task", "percentcomplete", "int", group="percentcomplete"),
    _f("task", "regardingobjectid", "lookup", fixed=True),
)

_EMAIL: tuple[FieldSpec, ...] = (
    _f("email", "subject", max_length=800),
    _f("email", "description", "text"),
    _f("email", "directioncode", "bool"),
    _f("email", "messageid", max_length=320),
    _f("email", "inreplyto", max_length=320),
    _f("email", "trackingtoken", max_length=50),
    _f("email", "from", "party"),
    _f("email", "to", "parties"),
    _f("email", "cc", "parties"),
    _f("email", "bcc", "parties"),
    _f("email", "senton", "datetime"),
    _f("email", "prioritycode", "int"),
    _f("email", "conversationid"),
)

#: Every synced field, per kind (groups included; filter with ``fields_for``).
FIELDS: Final[Mapping[Kind, tuple[FieldSpec, ...]]] = {
    "contact": _CONTACT,
    "appointment": _APPOINTMENT,
    "task": _TASK,
    "email": _EMAIL,
}

#: Optional groups, all off by default.
GROUPS: Final[frozenset[str]] = frozenset({"address2", "address3", "percentcomplete"})

#: Fields with no Dataverse column: present only in projections read from Outlook.
#: (Graph's conversationId is not Dataverse's conversationtrackingid.)
OUTLOOK_ONLY: Final[Mapping[Kind, frozenset[str]]] = {
    "contact": frozenset(),
    "appointment": frozenset(),
    "task": frozenset(),
    "email": frozenset({"conversationid"}),
}

#: Fields whose key is absent from a projection when they have no value (not None).
ABSENT_IF_NONE: Final[Mapping[Kind, frozenset[str]]] = {
    "contact": frozenset(),
    "appointment": frozenset(),
    "task": frozenset(),
    "email": frozenset({"trackingtoken"}),
}


def fields_for(kind: Kind, groups: frozenset[str] = frozenset()) -> tuple[FieldSpec, ...]:
    """The fields of ``kind`` that sync with the given optional groups enabled."""
    return tuple(f for f in FIELDS[kind] if f.group is None or f.group in groups)


def field_names(kind: Kind, groups: frozenset[str] = frozenset()) -> frozenset[str]:
    """The canonical names of ``fields_for(kind, groups)``."""
    return frozenset(f.name for f in fields_for(kind, groups))


def field_spec(kind: Kind, name: str) -> FieldSpec:
    """The spec of one field; ``MappingError`` if ``kind`` has no such field."""
    for spec in FIELDS[kind]:
        if spec.name == name:
            return spec
    raise MappingError(name, name, f"not a synced {kind} field")


# ---------------------------------------------------------------------------------------------
# Canonical value forms, shared by the Graph and Dataverse mappings.
# ---------------------------------------------------------------------------------------------

#: The keys of a canonical recurrence value (Dataverse recurringappointmentmaster columns).
RECURRENCE_KEYS: Final[tuple[str, ...]] = (
    "recurrencepatterntype",
    "interval",
    "daysofweekmask",
    "dayofmonth",
    "monthofyear",
    "instance",
    "firstdayofweek",
    "patternendtype",
    "patternstartdate",
    "occurrences",
    "patternenddate",
)

_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TABLE = re.compile(r"^[a-z][a-z0-9_]*$")


def norm_str(field: str, value: Any) -> str | None:
    """A string field: None and "" become None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MappingError(field, value, "expected a string")
    return value


def norm_int(field: str, value: Any, allowed: Collection[int] | None = None) -> int | None:
    """An int (option set) field, optionally restricted to ``allowed``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MappingError(field, value, "expected an integer")
    if allowed is not None and value not in allowed:
        raise MappingError(field, value, f"not one of {sorted(allowed)}")
    return value


def norm_bool(field: str, value: Any) -> bool | None:
    """A boolean field."""
    if value is None:
        return None
    if not isinstance(value, bool):
        raise MappingError(field, value, "expected a boolean")
    return value


def parse_datetime(field: str, value: Any, tz: tzinfo = UTC) -> datetime:
    """An ISO 8601 timestamp as an aware datetime; naive values are read in ``tz``."""
    if not isinstance(value, str):
        raise MappingError(field, value, "expected an ISO 8601 date-time string")
    text = value.strip()
    frac = re.match(r"^(.*T\d\d:\d\d:\d\d\.\d{6})\d+(.*)$", text)
    if frac:
        text = frac.group(1) + frac.group(2)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise MappingError(field, value, "not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed


def format_datetime(moment: datetime) -> str:
    """The canonical UTC form "YYYY-MM-DDTHH:MM:SSZ" (seconds precision)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def norm_datetime(field: str, value: Any) -> str | None:
    """A datetime field in canonical UTC form."""
    if value is None or value == "":
        return None
    return format_datetime(parse_datetime(field, value))


def norm_date(field: str, value: Any) -> str | None:
    """A date field as "YYYY-MM-DD"; a timestamp keeps its (UTC) date part."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MappingError(field, value, "expected a date string")
    if len(value) == 10:
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise MappingError(field, value, "not a YYYY-MM-DD date") from None
    return parse_datetime(field, value).astimezone(UTC).date().isoformat()


def norm_party(field: str, email: Any, name: Any = None) -> dict[str, Any]:
    """A party {"email": lowercased address, "name": str | None}."""
    address = norm_str(field, email)
    if address is None or not address.strip():
        raise MappingError(field, email, "a party needs an email address")
    return {"email": address.strip().lower(), "name": norm_str(field, name)}


def sort_parties(parties: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A party list in canonical order (by email, then name)."""
    return sorted(parties, key=lambda p: (p["email"], p["name"] or ""))


def norm_guid(field: str, value: Any) -> str:
    """A GUID in lowercase canonical form."""
    if not isinstance(value, str) or not _GUID.match(value.strip().strip("{}").lower()):
        raise MappingError(field, value, "expected a GUID")
    return value.strip().strip("{}").lower()


def norm_lookup(field: str, table: Any, row_id: Any) -> dict[str, str] | None:
    """A lookup {"table", "id"}; None when there is no id."""
    if row_id is None or row_id == "":
        return None
    if not isinstance(table, str) or not _TABLE.match(table):
        raise MappingError(field, table, "a lookup needs the target table's logical name")
    return {"table": table, "id": norm_guid(field, row_id)}


def lookup_to_text(lookup: Mapping[str, Any]) -> str:
    """A lookup as "table:id" (how it is stored on the Outlook side)."""
    return f"{lookup['table']}:{lookup['id']}"


def lookup_from_text(field: str, value: Any) -> dict[str, str] | None:
    """The inverse of ``lookup_to_text``."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or ":" not in value:
        raise MappingError(field, value, 'expected "table:guid"')
    table, _, row_id = value.partition(":")
    return norm_lookup(field, table, row_id)


def check_lookup(field: str, value: Any) -> dict[str, str] | None:
    """A projection's lookup value, validated."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise MappingError(field, value, 'expected {"table", "id"} or None')
    return norm_lookup(field, value.get("table"), value.get("id"))


def check_party(field: str, value: Any) -> dict[str, Any] | None:
    """A projection's party value, validated."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise MappingError(field, value, 'expected {"email", "name"} or None')
    return norm_party(field, value.get("email"), value.get("name"))


def check_parties(field: str, value: Any) -> list[dict[str, Any]]:
    """A projection's party list, validated (None counts as empty)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise MappingError(field, value, "expected a list of parties")
    return sort_parties([p for p in (check_party(field, v) for v in value) if p is not None])


def _rint(
    rec: Mapping[str, Any], key: str, low: int, high: int, *, zero_is_none: bool = False
) -> int | None:
    value = norm_int(f"recurrence.{key}", rec.get(key))
    if value is None or (zero_is_none and value == 0):
        return None
    if not low <= value <= high:
        raise MappingError(f"recurrence.{key}", value, f"outside {low}..{high}")
    return value


def _need(key: str, value: Any) -> Any:
    if value is None:
        raise MappingError(f"recurrence.{key}", value, "required by this pattern")
    return value


def norm_recurrence(value: Any) -> dict[str, Any] | None:
    """A recurrence in canonical form: unused columns None, the pattern's own ones checked.

    Monthly/yearly patterns are relative ("second Tuesday") exactly when ``instance`` is set.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise MappingError("recurrence", value, "expected an object or None")
    pattern = _need("recurrencepatterntype", _rint(value, "recurrencepatterntype", 0, 3))
    interval = _need("interval", _rint(value, "interval", 1, 1000))
    mask = _rint(value, "daysofweekmask", 1, 127, zero_is_none=True)
    day = _rint(value, "dayofmonth", 1, 31, zero_is_none=True)
    month = _rint(value, "monthofyear", 1, 12, zero_is_none=True)
    instance = _rint(value, "instance", 1, 5, zero_is_none=True)
    first_day = _rint(value, "firstdayofweek", 0, 6)
    out: dict[str, Any] = dict.fromkeys(RECURRENCE_KEYS)
    out["recurrencepatterntype"] = pattern
    out["interval"] = interval
    if pattern == 1:
        out["daysofweekmask"] = _need("daysofweekmask", mask)
        out["firstdayofweek"] = first_day or 0
    elif pattern in (2, 3):
        if pattern == 3:
            out["monthofyear"] = _need("monthofyear", month)
        if instance is not None:
            out["instance"] = instance
            out["daysofweekmask"] = _need("daysofweekmask", mask)
        else:
            out["dayofmonth"] = _need("dayofmonth", day)
    end_type = _need("patternendtype", _rint(value, "patternendtype", 1, 3))
    out["patternendtype"] = end_type
    out["patternstartdate"] = _need(
        "patternstartdate", norm_date("recurrence.patternstartdate", value.get("patternstartdate"))
    )
    if end_type == 2:
        out["occurrences"] = _need("occurrences", _rint(value, "occurrences", 1, 999))
    elif end_type == 3:
        out["patternenddate"] = _need(
            "patternenddate", norm_date("recurrence.patternenddate", value.get("patternenddate"))
        )
    return out


def fill_task_due(projection: Projection) -> Projection:
    """Tasks: when only the start is set, the due date is filled from it (both sides do this)."""
    if projection.get("scheduledend") is None and projection.get("scheduledstart") is not None:
        projection["scheduledend"] = projection["scheduledstart"]
    return projection


def check_value(spec: FieldSpec, value: Any) -> Any:
    """A projection value of ``spec``'s type, validated and in canonical form."""
    checks: dict[str, Any] = {
        "string": norm_str,
        "text": norm_str,
        "int": norm_int,
        "bool": norm_bool,
        "date": norm_date,
        "datetime": norm_datetime,
        "party": check_party,
        "parties": check_parties,
        "lookup": check_lookup,
    }
    if spec.type == "recurrence":
        return norm_recurrence(value)
    return checks[spec.type](spec.name, value)


def truncate(text: str, limit: int | None) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters, and whether it was cut."""
    if limit is None or len(text) <= limit:
        return text, False
    return text[:limit], True
