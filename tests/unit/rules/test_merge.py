"""3-way merge: per-field decisions, every policy, directions, absent sides, properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pipeline.rules.directions import FieldDirections
from pipeline.rules.merge import ConflictRecord, MergeResult, merge, mirror_policy
from schemas.types import CONFLICT_POLICIES, ConflictPolicy, Direction, Side

BOTH = FieldDirections.build("contact")
BASE = {"firstname": "Ann", "lastname": "Lee", "jobtitle": "CTO", "telephone1": None}
T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_nothing_changed() -> None:
    result = merge(BASE, BASE, BASE, BOTH)
    assert result.to_outlook == {} and result.to_crm == {}
    assert result.conflicts == ()
    assert {result.decisions[k] for k in BASE} == {"unchanged"}
    assert {k: result.merged[k] for k in BASE} == BASE


def test_disjoint_changes_merge() -> None:
    outlook = {**BASE, "firstname": "Anne"}
    crm = {**BASE, "jobtitle": "CEO", "telephone1": "+1 555"}
    result = merge(BASE, outlook, crm, BOTH)
    assert result.to_crm == {"firstname": "Anne"}
    assert result.to_outlook == {"jobtitle": "CEO", "telephone1": "+1 555"}
    assert result.decisions["firstname"] == "take_outlook"
    assert result.decisions["jobtitle"] == "take_crm"
    assert result.merged["firstname"] == "Anne" and result.merged["jobtitle"] == "CEO"
    assert result.conflicts == ()


def test_both_changed_to_the_same_value_is_no_conflict() -> None:
    same = {**BASE, "lastname": "Li"}
    result = merge(BASE, same, same, BOTH, "manual")
    assert result.conflicts == ()
    assert result.decisions["lastname"] == "unchanged"
    assert result.merged["lastname"] == "Li"
    assert result.to_crm == {} and result.to_outlook == {}


CLASH_O = {**BASE, "lastname": "Outlook"}
CLASH_C = {**BASE, "lastname": "Crm"}


@pytest.mark.parametrize(
    ("policy", "o_time", "c_time", "winner"),
    [
        ("crm_wins", None, None, "crm"),
        ("outlook_wins", None, None, "outlook"),
        ("newest", T0 + timedelta(seconds=1), T0, "outlook"),
        ("newest", T0, T0 + timedelta(seconds=1), "crm"),
        ("newest", "2026-01-01T12:00:05Z", "2026-01-01T12:00:01Z", "outlook"),
        ("newest", T0, T0, "crm"),
        ("newest", None, T0, "crm"),
        ("newest", "garbage", T0, "crm"),
        ("manual", None, None, None),
    ],
)
def test_same_field_conflict_by_policy(
    policy: ConflictPolicy, o_time: Any, c_time: Any, winner: Side | None
) -> None:
    result = merge(
        BASE, CLASH_O, CLASH_C, BOTH, policy, outlook_modified=o_time, crm_modified=c_time
    )
    assert result.conflicts == (
        ConflictRecord("lastname", "Lee", "Outlook", "Crm", policy, winner),
    )
    assert result.decisions["lastname"] == "conflict"
    if winner == "crm":
        assert result.merged["lastname"] == "Crm"
        assert result.to_outlook == {"lastname": "Crm"} and result.to_crm == {}
    elif winner == "outlook":
        assert result.merged["lastname"] == "Outlook"
        assert result.to_crm == {"lastname": "Outlook"} and result.to_outlook == {}
    else:
        assert result.unresolved == ("lastname",)
        assert result.merged["lastname"] == "Lee"
        assert result.to_crm == {} and result.to_outlook == {}


def test_every_conflict_is_recorded_alongside_clean_changes() -> None:
    outlook = {**BASE, "firstname": "A1", "lastname": "L1", "telephone1": "1"}
    crm = {**BASE, "firstname": "A2", "lastname": "L2", "jobtitle": "CEO"}
    result = merge(BASE, outlook, crm, BOTH, "outlook_wins")
    assert [c.field for c in result.conflicts] == ["firstname", "lastname"]
    assert all(c.winner == "outlook" for c in result.conflicts)
    assert result.to_crm == {"firstname": "A1", "lastname": "L1", "telephone1": "1"}
    assert result.to_outlook == {"jobtitle": "CEO"}


def test_directions_gate_what_counts_as_a_change() -> None:
    dirs = FieldDirections.build(
        "contact", {"firstname": "to_crm", "lastname": "to_outlook", "jobtitle": "none"}
    )
    outlook = {**BASE, "firstname": "O", "lastname": "O", "jobtitle": "O"}
    crm = {**BASE, "firstname": "C", "lastname": "C", "jobtitle": "C"}
    result = merge(BASE, outlook, crm, dirs, "manual")
    assert result.conflicts == ()
    assert result.to_crm == {"firstname": "O"}
    assert result.to_outlook == {"lastname": "C"}
    assert "jobtitle" not in result.merged and "jobtitle" not in result.decisions


def test_one_way_field_changed_only_on_the_wrong_side_is_kept() -> None:
    dirs = FieldDirections.build("contact", {"firstname": "to_outlook"})
    result = merge(BASE, {**BASE, "firstname": "Local"}, BASE, dirs)
    assert result.decisions["firstname"] == "unchanged"
    assert result.merged["firstname"] == "Ann"
    assert result.to_crm == {} and result.to_outlook == {}


def test_first_sync_without_base() -> None:
    outlook = {"firstname": "Ann", "lastname": None, "jobtitle": "CTO"}
    crm = {"firstname": "Ann", "lastname": "Lee", "jobtitle": "CEO"}
    result = merge(None, outlook, crm, BOTH)
    assert result.decisions["firstname"] == "unchanged"
    assert result.decisions["lastname"] == "take_crm"
    assert result.to_outlook == {"lastname": "Lee", "jobtitle": "CEO"}
    assert [c.field for c in result.conflicts] == ["jobtitle"]


def test_absent_side_gets_a_full_create_body() -> None:
    crm = {"firstname": "Ann", "lastname": "Lee"}
    result = merge(None, None, crm, FieldDirections.build("contact", {"lastname": "to_crm"}))
    assert result.to_crm == {}
    assert result.to_outlook["firstname"] == "Ann"
    assert "lastname" not in result.to_outlook
    assert result.to_outlook["jobtitle"] is None
    assert result.decisions["firstname"] == "take_crm"


def test_edit_vs_delete_recreate_body_carries_the_edits() -> None:
    crm = {**BASE, "jobtitle": "CEO"}
    result = merge(BASE, None, crm, BOTH)
    assert result.to_outlook["jobtitle"] == "CEO"
    assert result.to_outlook["firstname"] == "Ann"
    assert result.conflicts == ()
    deleted_in_crm = merge(BASE, {**BASE, "firstname": "Anne"}, None, BOTH)
    assert deleted_in_crm.to_crm["firstname"] == "Anne"
    assert deleted_in_crm.to_crm["lastname"] == "Lee"


def test_fields_not_reported_count_as_unchanged_but_absent_tokens_are_none() -> None:
    email = FieldDirections.build("email")
    base = {"subject": "Hi", "trackingtoken": "CRM:0000001", "conversationid": "conv"}
    outlook = {"subject": "Hi", "conversationid": "conv"}
    crm = {"subject": "Hi", "trackingtoken": "CRM:0000001"}
    result = merge(base, outlook, crm, email)
    assert result.decisions["conversationid"] == "unchanged"
    assert result.to_outlook == {}
    assert result.to_crm == {"trackingtoken": None}


def test_garbage_arguments() -> None:
    with pytest.raises(ValueError, match="unknown conflict policy 'loudest'"):
        merge(BASE, BASE, BASE, BOTH, cast(ConflictPolicy, "loudest"))
    with pytest.raises(TypeError, match="outlook must be a mapping or None"):
        merge(BASE, cast(Any, ["x"]), BASE, BOTH)


def test_result_is_immutable() -> None:
    result = merge(BASE, {**BASE, "firstname": "X"}, BASE, BOTH)
    with pytest.raises(TypeError):
        cast(Any, result.to_crm)["lastname"] = "Y"


# --- properties ---------------------------------------------------------------------------------

FIELDS = ("firstname", "lastname", "jobtitle", "telephone1", "nickname")
values = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d"]))
projections = st.fixed_dictionaries({f: values for f in FIELDS})
directions = st.fixed_dictionaries(
    {f: st.sampled_from(["both", "to_crm", "to_outlook", "none"]) for f in FIELDS}
)


def _only(result: MergeResult, mapping: Any) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k in FIELDS}


@settings(max_examples=300, deadline=None)
@given(base=projections, o_new=projections, c_new=projections, data=st.data())
def test_without_conflicts_result_applies_both_sides_changes(
    base: dict[str, Any], o_new: dict[str, Any], c_new: dict[str, Any], data: st.DataObject
) -> None:
    o_fields = data.draw(st.sets(st.sampled_from(FIELDS)))
    c_fields = data.draw(st.sets(st.sampled_from(FIELDS)))
    outlook = {**base, **{f: o_new[f] for f in o_fields}}
    crm = {**base, **{f: c_new[f] for f in c_fields}}
    assume(all(outlook[f] == crm[f] or outlook[f] == base[f] or crm[f] == base[f] for f in FIELDS))
    policy = data.draw(st.sampled_from(CONFLICT_POLICIES))
    result = merge(base, outlook, crm, BOTH, policy)
    expected = dict(base)
    expected.update({f: outlook[f] for f in FIELDS if outlook[f] != base[f]})
    expected.update({f: crm[f] for f in FIELDS if crm[f] != base[f]})
    assert result.conflicts == ()
    assert _only(result, result.merged) == expected
    assert _only(result, result.to_crm) == {
        f: outlook[f] for f in FIELDS if outlook[f] != base[f] and crm[f] == base[f]
    }
    assert _only(result, result.to_outlook) == {
        f: crm[f] for f in FIELDS if crm[f] != base[f] and outlook[f] == base[f]
    }
    # applying the patches makes both sides equal to the merged projection
    assert {**outlook, **result.to_outlook} == {**crm, **result.to_crm} == expected


_SWAP_DECISION = {"take_outlook": "take_crm", "take_crm": "take_outlook"}


@settings(max_examples=300, deadline=None)
@given(
    base=st.one_of(st.none(), projections),
    outlook=st.one_of(st.none(), projections),
    crm=st.one_of(st.none(), projections),
    config=directions,
    policy=st.sampled_from(CONFLICT_POLICIES),
    o_secs=st.integers(0, 100),
    c_secs=st.integers(0, 100),
)
def test_merge_is_symmetric_under_swapping_sides(
    base: dict[str, Any] | None,
    outlook: dict[str, Any] | None,
    crm: dict[str, Any] | None,
    config: dict[str, Direction],
    policy: ConflictPolicy,
    o_secs: int,
    c_secs: int,
) -> None:
    assume(policy != "newest" or o_secs != c_secs)
    dirs = FieldDirections.build("contact", config)
    o_time, c_time = T0 + timedelta(seconds=o_secs), T0 + timedelta(seconds=c_secs)
    ab = merge(base, outlook, crm, dirs, policy, outlook_modified=o_time, crm_modified=c_time)
    ba = merge(
        base,
        crm,
        outlook,
        dirs.mirrored(),
        mirror_policy(policy),
        outlook_modified=c_time,
        crm_modified=o_time,
    )
    assert ab.merged == ba.merged
    assert ab.to_outlook == ba.to_crm
    assert ab.to_crm == ba.to_outlook
    assert {k: _SWAP_DECISION.get(v, v) for k, v in ab.decisions.items()} == ba.decisions
    flipped = {"outlook": "crm", "crm": "outlook", None: None}
    assert [(c.field, c.outlook, c.crm, flipped[c.winner]) for c in ab.conflicts] == [
        (c.field, c.crm, c.outlook, c.winner) for c in ba.conflicts
    ]


@settings(max_examples=200, deadline=None)
@given(base=projections, outlook=projections, crm=projections)
def test_merge_is_deterministic_and_patches_respect_directions(
    base: dict[str, Any], outlook: dict[str, Any], crm: dict[str, Any]
) -> None:
    dirs = FieldDirections.build("contact", {"firstname": "to_crm", "lastname": "none"})
    first = merge(base, outlook, crm, dirs, "newest")
    assert first == merge(base, outlook, crm, dirs, "newest")
    assert set(first.to_crm) <= dirs.fields_to("crm")
    assert set(first.to_outlook) <= dirs.fields_to("outlook")
