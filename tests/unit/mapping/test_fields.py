"""The field catalogue lists FIELDS.md's synced fields with their groups and limits."""

from __future__ import annotations

import pytest

from schemas.fields import FIELDS, GROUPS, MappingError, field_names, field_spec, fields_for
from schemas.types import KINDS


def test_every_kind_has_unique_fields() -> None:
    for kind in KINDS:
        names = [f.name for f in FIELDS[kind]]
        assert len(names) == len(set(names)), kind
        assert all(f.kind == kind for f in FIELDS[kind])


def test_address_groups_off_by_default() -> None:
    default = field_names("contact")
    assert "address1_line1" in default
    assert "address2_city" not in default
    assert "address3_line1" not in default
    every = field_names("contact", frozenset({"address2", "address3"}))
    assert {"address2_city", "address3_country"} <= every


def test_percentcomplete_is_a_group() -> None:
    assert "percentcomplete" not in field_names("task")
    assert "percentcomplete" in field_names("task", frozenset({"percentcomplete"}))


def test_groups_are_known() -> None:
    for kind in KINDS:
        assert {f.group for f in FIELDS[kind] if f.group} <= GROUPS


def test_fixed_and_limits() -> None:
    assert field_spec("appointment", "scheduledstart").fixed
    assert not field_spec("appointment", "subject").fixed
    assert field_spec("task", "description").max_length == 2000
    assert field_spec("email", "subject").max_length == 800
    assert field_spec("contact", "parentcustomerid").type == "lookup"
    assert len(fields_for("contact")) == 42


def test_unknown_field_names_itself() -> None:
    with pytest.raises(MappingError, match="nosuch"):
        field_spec("contact", "nosuch")
