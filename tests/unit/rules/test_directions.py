"""Field directions: defaults, flows, fixed-field refusal, groups, recurring series, garbage."""

from __future__ import annotations

from typing import Any, cast

import pytest

from pipeline.rules.directions import DirectionsError, FieldDirections
from schemas.fields import FIELDS, field_names
from schemas.models import FieldDirections as DirectionsRecord
from schemas.types import KINDS, Kind


@pytest.mark.parametrize("kind", KINDS)
def test_default_is_both_for_every_catalogue_field(kind: Kind) -> None:
    dirs = FieldDirections.build(kind)
    assert set(dirs.directions) == field_names(kind)
    assert set(dirs.directions.values()) == {"both"}
    assert dirs.fields_to("crm") == dirs.fields_to("outlook") == field_names(kind)


def test_flows_per_direction() -> None:
    dirs = FieldDirections.build(
        "contact", {"firstname": "to_crm", "lastname": "to_outlook", "nickname": "none"}
    )
    assert dirs.flows("firstname", "outlook")
    assert not dirs.flows("firstname", "crm")
    assert dirs.flows("lastname", "crm")
    assert not dirs.flows("lastname", "outlook")
    assert not dirs.flows("nickname", "crm")
    assert not dirs.flows("nickname", "outlook")
    assert dirs.flows("jobtitle", "outlook") and dirs.flows("jobtitle", "crm")
    assert not dirs.flows("no_such_field", "crm")
    assert "firstname" in dirs.fields_to("crm") and "firstname" not in dirs.fields_to("outlook")
    assert "lastname" in dirs.fields_to("outlook") and "lastname" not in dirs.fields_to("crm")
    assert "nickname" not in dirs.synced()
    assert dirs.direction("nickname") == "none"


def test_fixed_fields_cannot_change() -> None:
    with pytest.raises(DirectionsError, match=r"appointment\.scheduledstart: fixed field"):
        FieldDirections.build("appointment", {"scheduledstart": "to_crm"})
    with pytest.raises(DirectionsError, match=r"contact\.parentcustomerid: fixed field"):
        FieldDirections.build("contact").set("parentcustomerid", "none")
    assert FieldDirections.build("appointment", {"organizer": "both"}).direction("organizer") == (
        "both"
    )


def test_set_returns_a_validated_copy() -> None:
    base = FieldDirections.build("task", {"subject": "to_outlook"})
    changed = base.set("description", "none")
    assert changed.direction("subject") == "to_outlook"
    assert changed.direction("description") == "none"
    assert base.direction("description") == "both"


def test_groups_enable_optional_fields() -> None:
    assert "address2_city" not in FieldDirections.build("contact").directions
    with pytest.raises(DirectionsError, match="group 'address2', which is not enabled"):
        FieldDirections.build("contact", {"address2_city": "to_crm"})
    dirs = FieldDirections.build("contact", {"address2_city": "to_crm"}, groups={"address2"})
    assert dirs.direction("address2_city") == "to_crm"
    assert dirs.direction("address2_line1") == "both"
    assert "address3_city" not in dirs.directions
    task = FieldDirections.build("task", groups=["percentcomplete"])
    assert task.flows("percentcomplete", "crm")


def test_recurring_series_only_subject_description_location() -> None:
    dirs = FieldDirections.build(
        "appointment",
        {"subject": "to_outlook", "description": "none", "location": "to_crm"},
        recurring=True,
    )
    assert dirs.direction("location") == "to_crm"
    with pytest.raises(DirectionsError, match="in a recurring series only"):
        FieldDirections.build("appointment", {"recurrence": "to_crm"}, recurring=True)
    with pytest.raises(DirectionsError, match="only appointments can be recurring"):
        FieldDirections.build("task", recurring=True)


@pytest.mark.parametrize(
    ("kind", "config", "groups", "message"),
    [
        ("contact", {"shoe_size": "both"}, (), r"contact\.shoe_size: not a synced contact field"),
        ("contact", {"firstname": "sideways"}, (), r"contact\.firstname: unknown direction"),
        ("contact", {"firstname": None}, (), "unknown direction None"),
        ("contact", {"firstname": 1}, (), "unknown direction 1"),
        ("contact", ["firstname"], (), "directions must be an object"),
        ("contact", {}, ("address9",), r"unknown group\(s\) \['address9'\]"),
        ("memo", {}, (), "unknown kind 'memo'"),
    ],
)
def test_garbage_config_is_refused(kind: str, config: Any, groups: Any, message: str) -> None:
    with pytest.raises(DirectionsError, match=message):
        FieldDirections.build(cast(Kind, kind), config, groups=groups)


def test_direction_of_unknown_field_is_an_error() -> None:
    with pytest.raises(DirectionsError, match=r"email\.colour: not a synced field"):
        FieldDirections.build("email").direction("colour")


def test_mirrored_swaps_sides() -> None:
    dirs = FieldDirections.build("contact", {"firstname": "to_crm", "nickname": "none"})
    mirror = dirs.mirrored()
    assert mirror.direction("firstname") == "to_outlook"
    assert mirror.direction("nickname") == "none"
    assert mirror.fields_to("outlook") == dirs.fields_to("crm")


def test_from_config_record() -> None:
    record = DirectionsRecord(org_id="org-1", kind="task", directions={"subject": "to_crm"})
    dirs = FieldDirections.from_record(record)
    assert dirs.kind == "task" and dirs.direction("subject") == "to_crm"
    bad = DirectionsRecord(org_id="org-1", kind="task", directions={"statecode": "to_crm"})
    with pytest.raises(DirectionsError, match=r"task\.statecode: fixed field"):
        FieldDirections.from_record(bad)


@pytest.mark.parametrize("kind", KINDS)
def test_fields_to_agrees_with_flows(kind: Kind) -> None:
    names = sorted(field_names(kind))
    config = {n: ("to_crm", "to_outlook", "none", "both")[i % 4] for i, n in enumerate(names)}
    fixed = {s.name for s in FIELDS[kind] if s.fixed}
    dirs = FieldDirections.build(kind, {n: d for n, d in config.items() if n not in fixed})
    assert dirs.fields_to("crm") == {n for n in names if dirs.flows(n, "outlook")}
    assert dirs.fields_to("outlook") == {n for n in names if dirs.flows(n, "crm")}
    assert dirs.synced() == dirs.fields_to("crm") | dirs.fields_to("outlook")
