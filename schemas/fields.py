"""The synced field catalogue: which canonical fields exist per kind, and how they behave.

Canonical names are the Dataverse logical column names of FIELDS.md. A field in a ``group``
("address2", "address3", "percentcomplete") is synced only when its group is enabled.
``fixed`` fields always sync both ways; the admin cannot change their direction.
``max_length`` is the Dataverse column limit; longer values are truncated on the CRM side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from schemas.types import Kind

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
