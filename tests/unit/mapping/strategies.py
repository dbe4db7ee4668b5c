"""Hypothesis strategies for canonical projections, and a stand-in for Dataverse reads."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from connectors.dataverse.mapping import BIND, FORMATTED, LOOKUP_TABLE, entity_set
from schemas.fields import FIELDS, GROUPS, FieldSpec, fill_task_due, norm_recurrence
from schemas.types import Kind, Projection

ALL_GROUPS = frozenset(GROUPS)
_WORD = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-'",
    min_size=1,
    max_size=12,
)


@st.composite
def words(draw: st.DrawFn, max_length: int | None = None) -> str:
    """One-line text with no leading/trailing blanks, commas or tracking-token look-alikes."""
    parts = draw(st.lists(_WORD, min_size=1, max_size=4))
    text = " ".join(parts)[: max_length or 200].strip()
    return text or "x"


texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r"),
    min_size=1,
    max_size=300,
).map(lambda s: s + "\nend")
emails = st.builds(
    lambda a, b: f"{a}@{b}.example",
    st.text(alphabet="abcdefghijklmnop0123456789", min_size=1, max_size=8),
    st.text(alphabet="abcdefghij", min_size=1, max_size=6),
)
datetimes = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)).map(
    lambda d: d.replace(microsecond=0, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
)
dates = st.dates(min_value=datetime(1900, 1, 1).date(), max_value=datetime(2090, 1, 1).date()).map(
    lambda d: d.isoformat()
)
parties = st.builds(lambda e, n: {"email": e, "name": n}, emails, st.none() | words())
party_lists = st.lists(parties, max_size=4, unique_by=lambda p: p["email"]).map(
    lambda ps: sorted(ps, key=lambda p: (p["email"], p["name"] or ""))
)
lookups = st.builds(
    lambda t, i: {"table": t, "id": str(i)},
    st.sampled_from(["contact", "account", "lead"]),
    st.uuids(),
)


@st.composite
def recurrences(draw: st.DrawFn) -> dict[str, Any]:
    """A canonical recurrence of any pattern and range type."""
    pattern = draw(st.integers(0, 3))
    relative = pattern in (2, 3) and draw(st.booleans())
    end_type = draw(st.integers(1, 3))
    raw = {
        "recurrencepatterntype": pattern,
        "interval": draw(st.integers(1, 99)),
        "daysofweekmask": draw(st.integers(1, 127)),
        "dayofmonth": draw(st.integers(1, 31)),
        "monthofyear": draw(st.integers(1, 12)),
        "instance": draw(st.integers(1, 5)) if relative else None,
        "firstdayofweek": draw(st.integers(0, 6)),
        "patternendtype": end_type,
        "patternstartdate": draw(dates),
        "occurrences": draw(st.integers(1, 999)),
        "patternenddate": draw(dates),
    }
    result = norm_recurrence(raw)
    assert result is not None
    return result


def _value(spec: FieldSpec) -> st.SearchStrategy[Any]:
    if spec.type == "string":
        return st.none() | words(spec.max_length)
    if spec.type == "text":
        return st.none() | texts
    if spec.type == "bool":
        return st.none() | st.booleans()
    if spec.type == "date":
        return st.none() | dates
    if spec.type == "datetime":
        return st.none() | datetimes
    if spec.type == "party":
        return st.none() | parties
    if spec.type == "parties":
        return party_lists
    if spec.type == "lookup":
        return st.none() | lookups
    if spec.type == "recurrence":
        return st.none() | recurrences()
    return st.none() | st.sampled_from([0, 1, 2])


def _compact(p: Projection, names: list[str]) -> None:
    values = [p[n] for n in names if p[n] is not None]
    for i, name in enumerate(names):
        p[name] = values[i] if i < len(values) else None


@st.composite
def projections(draw: st.DrawFn, kind: Kind) -> Projection:
    """A canonical projection of ``kind`` with every optional group, free of lossy cases."""
    p: Projection = {spec.name: draw(_value(spec)) for spec in FIELDS[kind]}
    if kind == "contact":
        _compact(p, ["emailaddress1", "emailaddress2", "emailaddress3"])
        _compact(p, ["telephone1", "business2"])
        _compact(p, ["telephone2", "home2"])
        for prefix in ("address1", "address2", "address3"):
            _compact(p, [f"{prefix}_line{i}" for i in (1, 2, 3)])
        kids = draw(st.lists(words(20), max_size=3))
        p["childrensnames"] = ", ".join(kids) or None
    elif kind == "appointment":
        p["statuscode"] = draw(st.none() | st.sampled_from([1, 2, 3, 4, 5, 6]))
        p["instancetypecode"] = 1 if p["recurrence"] is not None else 0
        hexes = st.binary(min_size=1, max_size=40).map(lambda b: b.hex().upper())
        p["globalobjectid"] = draw(st.none() | hexes)
    elif kind == "task":
        code = draw(st.none() | st.sampled_from([2, 3, 4, 5, 6, 7]))
        p["statuscode"] = code
        p["statecode"] = None if code is None else {5: 1, 6: 2}.get(code, 0)
        p["percentcomplete"] = draw(st.none() | st.integers(0, 100))
        fill_task_due(p)
    elif kind == "email":
        token = draw(st.none() | st.integers(1, 9_999_999).map(lambda n: f"CRM:{n:07d}"))
        del p["trackingtoken"]
        if token is not None:
            p["trackingtoken"] = token
        p["conversationid"] = draw(st.none() | words())
    return p


def _lookup_row(row: dict[str, Any], key: str, value: Any) -> None:
    nav = key[: -len(BIND)]
    if value is None:
        return
    match = re.fullmatch(r"/(\w+)\(([0-9a-f-]+)\)", value)
    assert match is not None, value
    column = "parentcustomerid" if nav.startswith("parentcustomerid") else nav.split("_")[0]
    table = next(
        t for t in ("contact", "account", "lead", "systemuser") if entity_set(t) == match.group(1)
    )
    row[f"_{column}_value"] = match.group(2)
    row[f"_{column}_value{LOOKUP_TABLE}"] = table


def as_read(body: Mapping[str, Any], names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A write body as Dataverse would return the row (binds as ``_x_value``, parties inline).

    ``names`` maps a bound party id to the name Dataverse would show for it.
    """
    row: dict[str, Any] = {}
    for key, value in body.items():
        if key.endswith(BIND):
            _lookup_row(row, key, value)
        elif key.endswith("_activity_parties"):
            rows = []
            for party in value:
                read: dict[str, Any] = {
                    "activitypartyid": str(uuid.uuid4()),
                    "participationtypemask": party["participationtypemask"],
                    "addressused": party.get("addressused"),
                }
                for pk, pv in party.items():
                    if pk.endswith(BIND):
                        match = re.fullmatch(r"/(\w+)\(([0-9a-f-]+)\)", pv)
                        assert match is not None
                        read["_partyid_value"] = match.group(2)
                        read[f"_partyid_value{LOOKUP_TABLE}"] = pk.split("_")[1].split("@")[0]
                        if names and match.group(2) in names:
                            read[f"_partyid_value{FORMATTED}"] = names[match.group(2)]
                rows.append(read)
            row[key] = rows
        else:
            row[key] = value
    return row


def without_names(p: Projection) -> Projection:
    """``p`` with every party name dropped (names do not travel through Dataverse writes)."""
    out: Projection = {}
    for key, value in p.items():
        if isinstance(value, dict) and "email" in value:
            out[key] = {**value, "name": None}
        elif isinstance(value, list):
            out[key] = [{**v, "name": None} for v in value]
        else:
            out[key] = value
    return out
