"""Dataverse Web API rows ⇄ the synced field projection. Pure functions, no I/O.

Rows are read as the Web API returns them: lookups as ``_x_value`` with the
``…@Microsoft.Dynamics.CRM.lookuplogicalname`` annotation, activity parties as rows with
``participationtypemask``, ``_partyid_value`` (+ annotations) and ``addressused``. Writes use the
table's ``@odata.bind`` navigation names and the inline ``<table>_activity_parties`` collection.

Documented lossy cases:

- phone call / letter / fax have one open status: canonical 3/4/7 are written as it and read
  back as 2 Not Started; their several completed codes read as 5 Completed;
- party names come from the resolved record (the FormattedValue annotation), not from the write;
  parties without an ``addressused`` are left out;
- text longer than the column is cut (``RowPayload.truncated`` names the fields);
- ``percentcomplete`` exists on ``task`` only; ``conversationid`` has no column (Outlook only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from schemas.fields import (
    ABSENT_IF_NONE,
    FIELDS,
    OUTLOOK_ONLY,
    RECURRENCE_KEYS,
    MappingError,
    check_value,
    field_names,
    field_spec,
    fill_task_due,
    norm_bool,
    norm_date,
    norm_datetime,
    norm_int,
    norm_lookup,
    norm_party,
    norm_recurrence,
    norm_str,
    sort_parties,
    truncate,
)
from schemas.types import CrmTable, Kind, Projection

LOOKUP_TABLE: Final = "@Microsoft.Dynamics.CRM.lookuplogicalname"
FORMATTED: Final = "@OData.Community.Display.V1.FormattedValue"
BIND: Final = "@odata.bind"

#: Tables a regarding / parent customer lookup is cleared on (its polymorphic targets).
REGARDING_TARGETS: Final[tuple[str, ...]] = ("contact", "account", "lead")
PARENT_CUSTOMER_TARGETS: Final[tuple[str, ...]] = ("account", "contact")

#: Party fields per kind: canonical name → participationtypemask.
PARTY_MASKS: Final[Mapping[Kind, Mapping[str, int]]] = {
    "contact": {},
    "appointment": {"requiredattendees": 5, "optionalattendees": 6, "organizer": 7},
    "task": {},
    "email": {"from": 1, "to": 2, "cc": 3, "bcc": 4},
}
#: Appointment statuscode → statecode (0 Open, 1 Completed, 2 Canceled, 3 Scheduled).
APPOINTMENT_STATE: Final[Mapping[int, int]] = {1: 0, 2: 0, 3: 1, 4: 2, 5: 3, 6: 3}
#: Canonical (task) statuscode → statecode.
TASK_STATE: Final[Mapping[int, int]] = {2: 0, 3: 0, 4: 0, 7: 0, 5: 1, 6: 2}
#: Per task table: native statuscode → canonical (task) statuscode.
TASK_STATUS_IN: Final[Mapping[str, Mapping[int, int]]] = {
    "task": {2: 2, 3: 3, 4: 4, 7: 7, 5: 5, 6: 6},
    "phonecall": {1: 2, 2: 5, 4: 5, 3: 6},
    "letter": {1: 2, 2: 2, 3: 5, 4: 5, 5: 6},
    "fax": {1: 2, 2: 5, 3: 5, 4: 5, 5: 6},
}
#: Per task table: canonical statuscode → native statuscode.
TASK_STATUS_OUT: Final[Mapping[str, Mapping[int, int]]] = {
    "task": {2: 2, 3: 3, 4: 4, 7: 7, 5: 5, 6: 6},
    "phonecall": {2: 1, 3: 1, 4: 1, 7: 1, 5: 2, 6: 3},
    "letter": {2: 1, 3: 1, 4: 1, 7: 1, 5: 4, 6: 5},
    "fax": {2: 1, 3: 1, 4: 1, 7: 1, 5: 2, 6: 5},
}
#: Email statuscode → statecode (0 Open, 1 Completed, 2 Canceled).
EMAIL_STATE: Final[Mapping[int, int]] = {1: 0, 8: 0, 2: 1, 3: 1, 4: 1, 6: 1, 7: 1, 5: 2}

_KINDS: Final[Mapping[str, Kind]] = {
    "contact": "contact",
    "appointment": "appointment",
    "recurringappointmentmaster": "appointment",
    "task": "task",
    "phonecall": "task",
    "letter": "task",
    "fax": "task",
    "email": "email",
}
_ENTITY_SETS: Final[Mapping[str, str]] = {"fax": "faxes", "opportunity": "opportunities"}
_CRM_READ_ONLY: Final[frozenset[str]] = frozenset({"instancetypecode"})
_MASTER_TIMES: Final[Mapping[str, str]] = {"scheduledstart": "starttime", "scheduledend": "endtime"}


class PartyResolver(Protocol):
    """Finds the CRM record (table, id) behind an e-mail address, or None."""

    def resolve(self, email: str) -> tuple[str, str] | None: ...


@dataclass(frozen=True, slots=True)
class RowPayload:
    """A Web API create/PATCH body, and the canonical fields that had to be cut to fit."""

    body: dict[str, Any]
    truncated: frozenset[str] = frozenset()


def kind_of(table: CrmTable) -> Kind:
    """The sync kind of a CRM table."""
    if table not in _KINDS:
        raise MappingError("table", table, f"not one of {sorted(_KINDS)}")
    return _KINDS[table]


def entity_set(table: str) -> str:
    """The Web API entity set name of a logical table name ("contact" → "contacts")."""
    if table in _ENTITY_SETS:
        return _ENTITY_SETS[table]
    if table.endswith("y") and not table.endswith(("ay", "ey", "oy", "uy")):
        return table[:-1] + "ies"
    if table.endswith(("s", "x")):
        return table + "es"
    return table + "s"


def primary_key(table: CrmTable) -> str:
    """The primary key column: ``contactid`` for contacts, ``activityid`` for activities."""
    return "contactid" if kind_of(table) == "contact" else "activityid"


def party_collection(table: CrmTable) -> str:
    """The inline activity-party collection of an activity table."""
    if kind_of(table) == "contact":
        raise MappingError("table", table, "contacts have no activity parties")
    return f"{table}_activity_parties"


# ---------------------------------------------------------------------------------------------
# row → projection
# ---------------------------------------------------------------------------------------------


def _lookup(row: Mapping[str, Any], column: str) -> dict[str, str] | None:
    key = f"_{column}_value"
    value = row.get(key)
    if value is None:
        return None
    table = row.get(key + LOOKUP_TABLE)
    if table is None:
        raise MappingError(column, value, f"the {key}{LOOKUP_TABLE} annotation is missing")
    return norm_lookup(column, table, value)


def _party_rows(table: str, row: Mapping[str, Any], parties: Sequence[Any]) -> list[Any]:
    if parties:
        return list(parties)
    inline = row.get(f"{table}_activity_parties")
    if inline is None:
        return []
    if not isinstance(inline, list):
        raise MappingError(f"{table}_activity_parties", inline, "expected a list of parties")
    return inline


def _parties(kind: Kind, rows: Iterable[Any]) -> dict[str, Any]:
    masks = PARTY_MASKS[kind]
    by_mask: dict[int, list[dict[str, Any]]] = {m: [] for m in masks.values()}
    for party in rows:
        if not isinstance(party, Mapping):
            raise MappingError("activityparties[]", party, "expected an object")
        mask = norm_int(
            "activityparties[].participationtypemask", party.get("participationtypemask")
        )
        if mask is None or not 1 <= mask <= 12:
            raise MappingError("activityparties[].participationtypemask", mask, "expected 1..12")
        address = norm_str("activityparties[].addressused", party.get("addressused"))
        if mask not in by_mask or address is None:
            continue
        name = party.get(f"_partyid_value{FORMATTED}")
        by_mask[mask].append(norm_party("activityparties[].addressused", address, name))
    out: dict[str, Any] = {}
    for name, mask in masks.items():
        found = sort_parties(by_mask[mask])
        if field_spec(kind, name).type == "party":
            out[name] = found[0] if found else None
        else:
            out[name] = found
    return out


def _strings(kind: Kind, row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in FIELDS[kind]:
        if spec.type in ("string", "text") and spec.name not in OUTLOOK_ONLY[kind]:
            out[spec.name] = norm_str(spec.name, row.get(spec.name))
    return out


def _contact_in(row: Mapping[str, Any]) -> dict[str, Any]:
    p = _strings("contact", row)
    p["birthdate"] = norm_date("birthdate", row.get("birthdate"))
    p["anniversary"] = norm_date("anniversary", row.get("anniversary"))
    p["parentcustomerid"] = _lookup(row, "parentcustomerid")
    return p


def _global_object_id(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        bytes.fromhex(value)
    except ValueError:
        return value
    return value.upper()


def recurrence_from_row(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The canonical recurrence of a recurringappointmentmaster row."""
    rec = {key: row.get(key) for key in RECURRENCE_KEYS}
    pattern = norm_int("recurrencepatterntype", rec["recurrencepatterntype"], {0, 1, 2, 3})
    if pattern == 0 and norm_bool("isweekdaypattern", row.get("isweekdaypattern")):
        rec.update(recurrencepatterntype=1, interval=1, daysofweekmask=0x3E)
    nth = {2: "isnthmonthly", 3: "isnthyearly"}.get(pattern or 0)
    if nth is not None:
        relative = norm_bool(nth, row.get(nth))
        if relative is None:
            relative = bool(rec["instance"])
        if not relative:
            rec["instance"] = None
    return norm_recurrence(rec)


def _appointment_in(table: str, row: Mapping[str, Any], parties: list[Any]) -> dict[str, Any]:
    p = _strings("appointment", row)
    p["globalobjectid"] = _global_object_id(p["globalobjectid"])
    master = table == "recurringappointmentmaster"
    for name, column in _MASTER_TIMES.items():
        raw = row.get(column) if master else None
        p[name] = norm_datetime(column if master and raw else name, raw or row.get(name))
    p["isalldayevent"] = norm_bool("isalldayevent", row.get("isalldayevent"))
    p["prioritycode"] = norm_int("prioritycode", row.get("prioritycode"), {0, 1, 2})
    p["statuscode"] = norm_int("statuscode", row.get("statuscode"), set(APPOINTMENT_STATE))
    p["regardingobjectid"] = _lookup(row, "regardingobjectid")
    if master:
        p["instancetypecode"] = 1
        p["recurrence"] = recurrence_from_row(row)
    else:
        p["instancetypecode"] = norm_int(
            "instancetypecode", row.get("instancetypecode"), {0, 1, 2, 3}
        )
        p["recurrence"] = None
    p.update(_parties("appointment", parties))
    return p


def _task_in(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    p = _strings("task", row)
    for name in ("scheduledstart", "scheduledend", "actualend"):
        p[name] = norm_datetime(name, row.get(name))
    p["prioritycode"] = norm_int("prioritycode", row.get("prioritycode"), {0, 1, 2})
    native = TASK_STATUS_IN[table]
    status = norm_int("statuscode", row.get("statuscode"), set(native))
    norm_int("statecode", row.get("statecode"), {0, 1, 2})
    p["statuscode"] = native[status] if status is not None else None
    p["statecode"] = TASK_STATE[p["statuscode"]] if status is not None else None
    if table == "task":
        percent = norm_int("percentcomplete", row.get("percentcomplete"))
        if percent is not None and not 0 <= percent <= 100:
            raise MappingError("percentcomplete", percent, "outside 0..100")
        p["percentcomplete"] = percent
    p["regardingobjectid"] = _lookup(row, "regardingobjectid")
    return fill_task_due(p)


def _email_in(row: Mapping[str, Any], parties: list[Any]) -> dict[str, Any]:
    p = _strings("email", row)
    p["directioncode"] = norm_bool("directioncode", row.get("directioncode"))
    p["senton"] = norm_datetime("senton", row.get("senton"))
    p["prioritycode"] = norm_int("prioritycode", row.get("prioritycode"), {0, 1, 2})
    norm_int("statuscode", row.get("statuscode"), set(EMAIL_STATE))
    p.update(_parties("email", parties))
    return p


def row_to_projection(
    table: CrmTable,
    row: Mapping[str, Any],
    *,
    parties: Sequence[Mapping[str, Any]] = (),
    groups: frozenset[str] = frozenset(),
) -> Projection:
    """The synced projection of a Dataverse row (parties given, or inline as expanded)."""
    kind = kind_of(table)
    if not isinstance(row, Mapping):
        raise MappingError(table, row, "expected a JSON object")
    party_rows = _party_rows(table, row, parties)
    if kind == "contact":
        values = _contact_in(row)
    elif kind == "appointment":
        values = _appointment_in(table, row, party_rows)
    elif kind == "task":
        values = _task_in(table, row)
    else:
        values = _email_in(row, party_rows)
    absent = ABSENT_IF_NONE[kind] | OUTLOOK_ONLY[kind]
    out: Projection = {}
    for name in sorted(field_names(kind, groups)):
        value = values.get(name)
        if name in OUTLOOK_ONLY[kind] or (value is None and name in absent):
            continue
        out[name] = value
    return out


# ---------------------------------------------------------------------------------------------
# projection → row
# ---------------------------------------------------------------------------------------------


def _bind(
    column: str, lookup: Mapping[str, str] | None, targets: Sequence[str], suffix: str = ""
) -> dict[str, Any]:
    tail = f"_{suffix}" if suffix else ""
    if lookup is None:
        return {f"{column}_{t}{tail}{BIND}": None for t in targets}
    target = lookup["table"]
    return {f"{column}_{target}{tail}{BIND}": f"/{entity_set(target)}({lookup['id']})"}


def recurrence_to_row(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """The recurringappointmentmaster columns of a canonical recurrence."""
    rec = norm_recurrence(value)
    if rec is None:
        raise MappingError("recurrence", value, "a recurring appointment needs a recurrence")
    cols = dict(rec)
    for key in ("patternstartdate", "patternenddate"):
        if cols[key] is not None:
            cols[key] = f"{cols[key]}T00:00:00Z"
    relative = rec["instance"] is not None
    cols["isnthmonthly"] = relative and rec["recurrencepatterntype"] == 2
    cols["isnthyearly"] = relative and rec["recurrencepatterntype"] == 3
    cols["isweekdaypattern"] = False
    return cols


class _Row:
    """Accumulates a Web API body for one table."""

    def __init__(self, table: CrmTable, projection: Mapping[str, Any]) -> None:
        self.table = table
        self.kind = kind_of(table)
        self.projection = projection
        self.body: dict[str, Any] = {}
        self.truncated: set[str] = set()

    def value(self, name: str) -> Any:
        spec = field_spec(self.kind, name)
        if name not in self.projection and name not in ABSENT_IF_NONE[self.kind]:
            raise MappingError(name, None, "missing from the projection")
        value = check_value(spec, self.projection.get(name))
        if isinstance(value, str) and spec.type in ("string", "text"):
            value, cut = truncate(value, spec.max_length)
            if cut:
                self.truncated.add(name)
        return value


def _plain(row: _Row, fields: frozenset[str], skip: frozenset[str]) -> None:
    for spec in FIELDS[row.kind]:
        if (
            spec.name in fields
            and spec.name not in skip
            and spec.type
            not in (
                "party",
                "parties",
                "lookup",
                "recurrence",
            )
        ):
            row.body[spec.name] = row.value(spec.name)


def _write_parties(row: _Row, resolve: PartyResolver | None) -> None:
    out: list[dict[str, Any]] = []
    for name, mask in PARTY_MASKS[row.kind].items():
        value = row.value(name)
        for party in [value] if isinstance(value, dict) else value or []:
            entry: dict[str, Any] = {"participationtypemask": mask, "addressused": party["email"]}
            found = resolve.resolve(party["email"]) if resolve is not None else None
            if found is not None:
                target, row_id = found
                entry[f"partyid_{target}{BIND}"] = f"/{entity_set(target)}({row_id})"
            out.append(entry)
    row.body[party_collection(row.table)] = out


def _appointment_out(row: _Row, fields: frozenset[str]) -> None:
    master = row.table == "recurringappointmentmaster"
    _plain(row, fields, frozenset({"statuscode", *(_MASTER_TIMES if master else ())}))
    if "statuscode" in fields:
        code = row.value("statuscode")
        if code is not None and code not in APPOINTMENT_STATE:
            raise MappingError("statuscode", code, f"not one of {sorted(APPOINTMENT_STATE)}")
        row.body["statuscode"] = code
        if code is not None:
            row.body["statecode"] = APPOINTMENT_STATE[code]
    if "recurrence" in fields:
        if master:
            row.body.update(recurrence_to_row(row.value("recurrence")))
        elif row.value("recurrence") is not None:
            raise MappingError(
                "recurrence", row.projection["recurrence"], "appointment rows are single"
            )
    if master:
        for name, column in _MASTER_TIMES.items():
            if name in fields:
                row.body[column] = row.value(name)
        start, end = row.body.get("starttime"), row.body.get("endtime")
        if start and end:
            delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
            row.body["duration"] = max(0, int(delta.total_seconds() // 60))


def _task_out(row: _Row, fields: frozenset[str]) -> None:
    skip = {"statuscode", "statecode"} | ({"percentcomplete"} if row.table != "task" else set())
    _plain(row, fields, frozenset(skip))
    if fields & {"statuscode", "statecode"}:
        code, state = row.value("statuscode"), row.value("statecode")
        if code is None:
            return
        if code not in TASK_STATE:
            raise MappingError("statuscode", code, f"not one of {sorted(TASK_STATE)}")
        if state is not None and state != TASK_STATE[code]:
            raise MappingError("statecode", state, f"statuscode {code} needs {TASK_STATE[code]}")
        row.body["statecode"] = TASK_STATE[code]
        row.body["statuscode"] = TASK_STATUS_OUT[row.table][code]
    if "percentcomplete" in fields and row.table == "task":
        percent = row.body.get("percentcomplete")
        if percent is not None and not 0 <= percent <= 100:
            raise MappingError("percentcomplete", percent, "outside 0..100")


def projection_to_row(
    table: CrmTable,
    projection: Mapping[str, Any],
    *,
    fields: Iterable[str] | None = None,
    resolve: PartyResolver | None = None,
    email_statuscode: int | None = None,
) -> RowPayload:
    """The Web API create/PATCH body writing ``fields`` (default: every field in ``projection``).

    Party fields are written as the whole inline party collection (it replaces the row's parties),
    with ``partyid_<table>@odata.bind`` when ``resolve`` knows the address. ``email_statuscode``
    sets an e-mail's statuscode and matching statecode. Values are validated (``MappingError``).
    """
    kind = kind_of(table)
    if not isinstance(projection, Mapping):
        raise MappingError(table, projection, "expected a projection object")
    known = {f.name for f in FIELDS[kind]}
    wanted = set(projection) if fields is None else set(fields)
    unknown = wanted - known
    if unknown:
        raise MappingError(sorted(unknown)[0], sorted(unknown), f"not a synced {kind} field")
    chosen = frozenset(wanted - OUTLOOK_ONLY[kind] - _CRM_READ_ONLY)
    row = _Row(table, projection)
    if kind == "contact":
        _plain(row, chosen, frozenset())
    elif kind == "appointment":
        _appointment_out(row, chosen)
    elif kind == "task":
        _task_out(row, chosen)
    else:
        _plain(row, chosen, frozenset())
        if email_statuscode is not None:
            code = norm_int("email_statuscode", email_statuscode, set(EMAIL_STATE))
            row.body["statecode"], row.body["statuscode"] = EMAIL_STATE[email_statuscode], code
    if "parentcustomerid" in chosen:
        row.body.update(
            _bind("parentcustomerid", row.value("parentcustomerid"), PARENT_CUSTOMER_TARGETS)
        )
    if "regardingobjectid" in chosen:
        lookup = row.value("regardingobjectid")
        row.body.update(_bind("regardingobjectid", lookup, REGARDING_TARGETS, suffix=table))
    if chosen & set(PARTY_MASKS[kind]):
        _write_parties(row, resolve)
    return RowPayload(row.body, frozenset(row.truncated))
