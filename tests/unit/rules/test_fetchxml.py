"""FetchXML: every operator, nested and/or, link-entity membership, malformed input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.rules.fetchxml import (
    MAX_FETCHXML_CHARS,
    Condition,
    EvalContext,
    FetchQuery,
    FetchXmlError,
    Filter,
    parse_fetchxml,
)
from pipeline.rules.filterset import FilterSet

USER = "11111111-2222-3333-4444-555555555555"
OTHER = "99999999-8888-7777-6666-555555555555"
NOW = datetime(2026, 3, 15, 12, 0, 0, tzinfo=UTC)


def ctx(**links: list[dict[str, Any]]) -> EvalContext:
    return EvalContext(user_id=USER, now=NOW, links=links)


def one(condition: str, table: str = "contact") -> FetchQuery:
    return parse_fetchxml(
        f'<fetch><entity name="{table}"><filter>{condition}</filter></entity></fetch>'
    )


def holds(condition: str, record: dict[str, Any], context: EvalContext | None = None) -> bool:
    return one(condition).matches(record, context or ctx())


# --- operators -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "record", "expected"),
    [
        ('<condition attribute="statecode" operator="eq" value="0"/>', {"statecode": 0}, True),
        ('<condition attribute="statecode" operator="eq" value="0"/>', {"statecode": 1}, False),
        ('<condition attribute="statecode" operator="eq" value="0"/>', {}, False),
        (
            '<condition attribute="lastname" operator="eq" value="SMITH"/>',
            {"lastname": "smith"},
            True,
        ),
        ('<condition attribute="donotemail" operator="eq" value="1"/>', {"donotemail": True}, True),
        (
            '<condition attribute="donotemail" operator="eq" value="false"/>',
            {"donotemail": False},
            True,
        ),
        (
            '<condition attribute="donotemail" operator="eq" value="1"/>',
            {"donotemail": False},
            False,
        ),
        ('<condition attribute="statecode" operator="eq" value="x"/>', {"statecode": 0}, False),
        (
            f'<condition attribute="ownerid" operator="eq" value="{{{USER.upper()}}}"/>',
            {"ownerid": USER},
            True,
        ),
        (
            f'<condition attribute="parentcustomerid" operator="eq" value="{USER}"/>',
            {"parentcustomerid": {"table": "account", "id": USER}},
            True,
        ),
        ('<condition attribute="statecode" operator="ne" value="0"/>', {"statecode": 1}, True),
        ('<condition attribute="statecode" operator="ne" value="0"/>', {"statecode": 0}, False),
        ('<condition attribute="statecode" operator="ne" value="0"/>', {"statecode": None}, False),
        (
            '<condition attribute="prioritycode" operator="in"><value>0</value><value>2</value>'
            "</condition>",
            {"prioritycode": 2},
            True,
        ),
        (
            '<condition attribute="prioritycode" operator="in"><value>0</value><value>2</value>'
            "</condition>",
            {"prioritycode": 1},
            False,
        ),
        (
            '<condition attribute="prioritycode" operator="not-in"><value>0</value></condition>',
            {"prioritycode": 1},
            True,
        ),
        (
            '<condition attribute="prioritycode" operator="not-in"><value>0</value></condition>',
            {"prioritycode": 0},
            False,
        ),
        (
            '<condition attribute="prioritycode" operator="not-in"><value>0</value></condition>',
            {},
            False,
        ),
        (
            '<condition attribute="lastname" operator="like" value="sm%"/>',
            {"lastname": "Smith"},
            True,
        ),
        (
            '<condition attribute="lastname" operator="like" value="%IT%"/>',
            {"lastname": "Smith"},
            True,
        ),
        (
            '<condition attribute="lastname" operator="like" value="sm_th"/>',
            {"lastname": "SMYTH"},
            True,
        ),
        (
            '<condition attribute="lastname" operator="like" value="sm_th"/>',
            {"lastname": "Smiith"},
            False,
        ),
        (
            '<condition attribute="lastname" operator="like" value="a.c"/>',
            {"lastname": "abc"},
            False,
        ),
        (
            '<condition attribute="lastname" operator="like" value="a.c"/>',
            {"lastname": "A.C"},
            True,
        ),
        (
            '<condition attribute="lastname" operator="not-like" value="sm%"/>',
            {"lastname": "Jones"},
            True,
        ),
        (
            '<condition attribute="lastname" operator="not-like" value="sm%"/>',
            {"lastname": "Smith"},
            False,
        ),
        (
            '<condition attribute="lastname" operator="not-like" value="sm%"/>',
            {"lastname": None},
            False,
        ),
        (
            '<condition attribute="lastname" operator="begins-with" value="SM"/>',
            {"lastname": "smith"},
            True,
        ),
        (
            '<condition attribute="lastname" operator="ends-with" value="TH"/>',
            {"lastname": "smith"},
            True,
        ),
        (
            '<condition attribute="lastname" operator="ends-with" value="x"/>',
            {"lastname": "smith"},
            False,
        ),
        ('<condition attribute="telephone1" operator="null"/>', {}, True),
        ('<condition attribute="telephone1" operator="null"/>', {"telephone1": ""}, True),
        ('<condition attribute="telephone1" operator="null"/>', {"telephone1": "1"}, False),
        ('<condition attribute="telephone1" operator="not-null"/>', {"telephone1": "1"}, True),
        ('<condition attribute="telephone1" operator="not-null"/>', {"telephone1": None}, False),
        ('<condition attribute="ownerid" operator="eq-userid"/>', {"ownerid": USER.upper()}, True),
        ('<condition attribute="ownerid" operator="eq-userid"/>', {"ownerid": OTHER}, False),
        ('<condition attribute="ownerid" operator="eq-userid"/>', {}, False),
        ('<condition attribute="ownerid" operator="ne-userid"/>', {"ownerid": OTHER}, True),
        ('<condition attribute="ownerid" operator="ne-userid"/>', {"ownerid": USER}, False),
        ('<condition attribute="ownerid" operator="ne-userid"/>', {"ownerid": None}, False),
        ('<condition attribute="percent" operator="gt" value="10"/>', {"percent": 11}, True),
        ('<condition attribute="percent" operator="gt" value="10"/>', {"percent": 10}, False),
        ('<condition attribute="percent" operator="ge" value="10"/>', {"percent": 10}, True),
        ('<condition attribute="percent" operator="lt" value="10"/>', {"percent": 9.5}, True),
        ('<condition attribute="percent" operator="le" value="10"/>', {"percent": 11}, False),
        ('<condition attribute="percent" operator="gt" value="abc"/>', {"percent": 11}, False),
        (
            '<condition attribute="scheduledstart" operator="gt" value="2026-03-01T00:00:00Z"/>',
            {"scheduledstart": "2026-03-02T09:00:00Z"},
            True,
        ),
        ('<condition attribute="lastname" operator="lt" value="b"/>', {"lastname": "Adams"}, True),
    ],
)
def test_operator(condition: str, record: dict[str, Any], expected: bool) -> None:
    assert holds(condition, record) is expected


@pytest.mark.parametrize(
    ("operator", "value", "record_value", "expected"),
    [
        ("on", "2026-03-15", "2026-03-15T23:30:00Z", True),
        ("on", "2026-03-15", "2026-03-16T00:00:00Z", False),
        ("on", "2026-03-15", "2026-03-15", True),
        ("on-or-after", "2026-03-15", "2026-03-15T00:00:00Z", True),
        ("on-or-after", "2026-03-15", "2026-03-14T23:59:59Z", False),
        ("on-or-before", "2026-03-15", "2026-03-15T23:59:59Z", True),
        ("on-or-before", "2026-03-15", "2026-03-16T00:00:00Z", False),
        ("on", "2026-03-15", "not a date", False),
        ("last-x-days", "3", "2026-03-12T00:00:00Z", True),
        ("last-x-days", "3", "2026-03-11T23:59:59Z", False),
        ("last-x-days", "3", "2026-03-15T11:00:00Z", True),
        ("last-x-days", "3", "2026-03-15T13:00:00Z", False),
        ("next-x-days", "2", "2026-03-17T23:59:59Z", True),
        ("next-x-days", "2", "2026-03-18T00:00:00Z", False),
        ("next-x-days", "2", "2026-03-15T11:00:00Z", False),
        ("next-x-days", "0", "2026-03-15T18:00:00Z", True),
    ],
)
def test_date_operators(operator: str, value: str, record_value: str, expected: bool) -> None:
    condition = f'<condition attribute="scheduledstart" operator="{operator}" value="{value}"/>'
    assert holds(condition, {"scheduledstart": record_value}) is expected


def test_date_operators_use_the_users_time_zone() -> None:
    berlin = timezone(timedelta(hours=1))
    context = EvalContext(user_id=USER, now=NOW.astimezone(berlin))
    condition = '<condition attribute="scheduledstart" operator="on" value="2026-03-16"/>'
    # 23:30 UTC on the 15th is 00:30 on the 16th in UTC+1
    assert holds(condition, {"scheduledstart": "2026-03-15T23:30:00Z"}, context)
    assert not holds(condition, {"scheduledstart": "2026-03-15T23:30:00Z"})


def test_list_values_match_any_element_and_negations_need_all() -> None:
    record = {"tags": [{"email": "a@x.com", "name": None}, {"email": "b@x.com", "name": None}]}
    assert holds('<condition attribute="tags" operator="eq" value="B@X.com"/>', record)
    assert not holds('<condition attribute="tags" operator="ne" value="b@x.com"/>', record)
    assert holds('<condition attribute="tags" operator="null"/>', {"tags": []})


# --- nested filters ----------------------------------------------------------------------------


NESTED = """
<fetch version="1.0" mapping="logical">
  <entity name="contact">
    <attribute name="fullname"/>
    <order attribute="fullname"/>
    <filter type="and">
      <condition attribute="statecode" operator="eq" value="0"/>
      <filter type="or">
        <condition attribute="ownerid" operator="eq-userid"/>
        <filter type="and">
          <condition attribute="address1_city" operator="eq" value="Paris"/>
          <condition attribute="emailaddress1" operator="like" value="%@example.com"/>
        </filter>
      </filter>
    </filter>
  </entity>
</fetch>
"""


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"statecode": 0, "ownerid": USER}, True),
        ({"statecode": 1, "ownerid": USER}, False),
        ({"statecode": 0, "ownerid": OTHER}, False),
        ({"statecode": 0, "address1_city": "paris", "emailaddress1": "j@EXAMPLE.com"}, True),
        ({"statecode": 0, "address1_city": "paris", "emailaddress1": "j@other.com"}, False),
    ],
)
def test_nested_and_or(record: dict[str, Any], expected: bool) -> None:
    query = parse_fetchxml(NESTED, table="contact")
    assert query.attributes == ("fullname",)
    assert query.matches(record, ctx()) is expected


def test_empty_filters_and_several_top_level_filters() -> None:
    assert parse_fetchxml('<fetch><entity name="contact"/></fetch>').matches({}, ctx())
    assert (
        parse_fetchxml(
            '<fetch><entity name="contact"><filter type="or"/></entity></fetch>'
        ).matches({}, ctx())
        is False
    )
    two = parse_fetchxml(
        '<fetch><entity name="contact">'
        '<filter><condition attribute="a" operator="eq" value="1"/></filter>'
        '<filter><condition attribute="b" operator="eq" value="1"/></filter>'
        "</entity></fetch>"
    )
    assert two.matches({"a": 1, "b": 1}, ctx())
    assert not two.matches({"a": 1, "b": 2}, ctx())


def test_ast_is_built_from_the_text() -> None:
    query = one('<condition attribute="StateCode" operator="EQ" value="0"/>')
    assert query.filter == Filter("and", (Condition("statecode", "eq", ("0",)),))


# --- link-entity ---------------------------------------------------------------------------------

ATTENDEE = """
<fetch><entity name="appointment">
  <link-entity name="activityparty" from="activityid" to="activityid" alias="ap">
    <attribute name="partyid"/>
    <filter type="and">
      <condition attribute="partyid" operator="eq-userid"/>
      <condition attribute="participationtypemask" operator="in"><value>5</value><value>7</value>
      </condition>
    </filter>
  </link-entity>
  <filter><condition attribute="statecode" operator="ne" value="2"/></filter>
</entity></fetch>
"""
APPT = "aaaaaaaa-0000-0000-0000-000000000001"


def party(mask: int, who: str = USER, activity: str = APPT) -> dict[str, Any]:
    return {"activityid": activity, "partyid": who, "participationtypemask": mask}


@pytest.mark.parametrize(
    ("parties", "expected"),
    [
        ([party(7)], True),
        ([party(5)], True),
        ([party(6)], False),
        ([party(5, OTHER)], False),
        ([party(6), party(5, OTHER), party(7)], True),
        ([party(5, USER, "aaaaaaaa-0000-0000-0000-000000000002")], False),
        ([], False),
    ],
)
def test_link_entity_attendee_membership(parties: list[dict[str, Any]], expected: bool) -> None:
    query = parse_fetchxml(ATTENDEE, table="appointment")
    record = {"activityid": APPT, "statecode": 0}
    assert query.matches(record, ctx(activityparty=parties)) is expected


def test_link_entity_and_main_filter_both_hold() -> None:
    query = parse_fetchxml(ATTENDEE)
    assert not query.matches({"activityid": APPT, "statecode": 2}, ctx(activityparty=[party(7)]))


def test_outer_link_with_entityname_null_is_not_exists() -> None:
    query = parse_fetchxml(
        '<fetch><entity name="appointment">'
        '<link-entity name="activityparty" from="activityid" to="activityid" '
        'link-type="outer" alias="org">'
        '<filter><condition attribute="participationtypemask" operator="eq" value="7"/></filter>'
        "</link-entity>"
        '<filter><condition entityname="org" attribute="partyid" operator="null"/></filter>'
        "</entity></fetch>"
    )
    record = {"activityid": APPT}
    assert query.matches(record, ctx(activityparty=[party(5)]))
    assert not query.matches(record, ctx(activityparty=[party(7)]))


def test_not_any_link() -> None:
    query = parse_fetchxml(
        '<fetch><entity name="appointment">'
        '<link-entity name="activityparty" from="activityid" to="activityid" link-type="not any">'
        '<filter><condition attribute="partyid" operator="eq-userid"/></filter>'
        "</link-entity></entity></fetch>"
    )
    assert query.matches({"activityid": APPT}, ctx(activityparty=[party(5, OTHER)]))
    assert not query.matches({"activityid": APPT}, ctx(activityparty=[party(5)]))


# --- filter sets ---


CONTACT_WITH = (
    '<fetch><entity name="contact"><filter>'
    '<condition attribute="{attr}" operator="eq" value="1"/></filter></entity></fetch>'
)


def test_filter_set_or_combines_per_table() -> None:
    filters = FilterSet.from_fetchxml(
        [
            ("contact", CONTACT_WITH.format(attr="a")),
            ("Contact", CONTACT_WITH.format(attr="b")),
        ]
    )
    assert filters.tables() == {"contact"}
    assert filters.matches("contact", {"a": 1}, ctx())
    assert filters.matches("contact", {"b": 1}, ctx())
    assert not filters.matches("contact", {"a": 2, "b": 2}, ctx())
    assert not filters.matches("task", {"a": 1}, ctx())


def test_filter_set_refuses_a_text_for_another_table() -> None:
    with pytest.raises(FetchXmlError, match=r"fetch/entity: entity 'task' does not match table"):
        FilterSet.from_fetchxml([("contact", '<fetch><entity name="task"/></fetch>')])


# --- malformed ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "reason"),
    [
        ("", "<document>", "empty"),
        ("<fetch><entity name='contact'>", "<document>", "not well-formed XML at line 1"),
        ("<fetsh/>", "fetsh", "root element must be <fetch>"),
        ("<fetch/>", "fetch", "exactly one <entity>, found 0"),
        ("<fetch><entity name='a'/><entity name='b'/></fetch>", "fetch", "found 2"),
        ("<fetch><entity/></fetch>", "fetch/entity", "missing attribute 'name'"),
        ("<fetch><entity name='a b'/></fetch>", "fetch/entity", "not a logical name"),
        ("<fetch><thing/></fetch>", "fetch/thing", "unexpected element"),
        (
            "<fetch><entity name='c'><filter><bogus/></filter></entity></fetch>",
            "fetch/entity/filter/bogus",
            "unexpected element",
        ),
        (
            "<fetch><entity name='c'><filter type='xor'/></entity></fetch>",
            "fetch/entity/filter",
            "filter type must be 'and' or 'or'",
        ),
        (
            "<fetch><entity name='c'><filter><condition attribute='a' operator='eq' value='1'/>"
            "<condition attribute='a' operator='sounds-like' value='1'/></filter></entity></fetch>",
            "fetch/entity/filter/condition[2]",
            "unknown operator 'sounds-like'",
        ),
        (
            "<fetch><entity name='c'><filter><condition operator='eq' value='1'/>"
            "</filter></entity></fetch>",
            "fetch/entity/filter/condition",
            "missing attribute 'attribute'",
        ),
        (
            "<fetch><entity name='c'><filter><condition attribute='a' value='1'/>"
            "</filter></entity></fetch>",
            "fetch/entity/filter/condition",
            "missing attribute 'operator'",
        ),
        (
            "<fetch><entity name='c'><filter><condition attribute='a' operator='eq'/>"
            "</filter></entity></fetch>",
            "fetch/entity/filter/condition",
            "takes exactly one value, got 0",
        ),
        (
            "<fetch><entity name='c'><filter><condition attribute='a' operator='eq'>"
            "<value>1</value><value>2</value></condition></filter></entity></fetch>",
            "fetch/entity/filter/condition",
            "takes exactly one value, got 2",
        ),
        (
            "<fetch><entity name='c'><filter><condition attribute='a' operator='null' value='1'/>"
            "</filter></entity></fetch>",
            "fetch/entity/filter/condition",
            "takes no value",
        ),
        (
            "<fetch><entity name='c'><filter><condition attribute='a' operator='in'/>"
            "</filter></entity></fetch>",
            "fetch/entity/filter/condition",
            "needs at least one <value>",
        ),
        (
            "<fetch><entity name='c'><filter><condition attribute='a' operator='in' value='1'/>"
            "</filter></entity></fetch>",
            "fetch/entity/filter/condition",
            "not a value attribute",
        ),
        (
            "<fetch><entity name='c'><filter><condition attribute='a' operator='on' value='soon'/>"
            "</filter></entity></fetch>",
            "fetch/entity/filter/condition",
            "needs a date",
        ),
        (
            "<fetch><entity name='c'><filter>"
            "<condition attribute='a' operator='last-x-days' value='-1'/>"
            "</filter></entity></fetch>",
            "fetch/entity/filter/condition",
            "needs whole days",
        ),
        (
            "<fetch><entity name='c'><filter><condition attribute='a' operator='in'>"
            "<other>1</other></condition></filter></entity></fetch>",
            "fetch/entity/filter/condition/other",
            "only <value>",
        ),
        (
            "<fetch><entity name='c'><filter><condition entityname='zz' attribute='a' "
            "operator='null'/></filter></entity></fetch>",
            "fetch/entity/filter/condition",
            "names no link-entity alias",
        ),
        (
            "<fetch><entity name='c'><link-entity name='p' from='a'/></entity></fetch>",
            "fetch/entity/link-entity",
            "missing attribute 'to'",
        ),
        (
            "<fetch><entity name='c'><link-entity name='p' from='a' to='b' link-type='cross'/>"
            "</entity></fetch>",
            "fetch/entity/link-entity",
            "link-type must be one of",
        ),
        (
            "<fetch><entity name='c'><link-entity name='p' from='a' to='b'>"
            "<link-entity name='q' from='a' to='b'/></link-entity></entity></fetch>",
            "fetch/entity/link-entity/link-entity",
            "nested link-entity is not supported",
        ),
        (
            '<!DOCTYPE x [<!ENTITY a "aaaa">]><fetch/>',
            "<document>",
            "DOCTYPE and ENTITY declarations are not allowed",
        ),
        ("<fetch>text<entity name='c'/></fetch>", "fetch", "unexpected text"),
    ],
)
def test_malformed_fetchxml_names_element_and_reason(text: str, path: str, reason: str) -> None:
    with pytest.raises(FetchXmlError) as info:
        parse_fetchxml(text)
    assert info.value.path == path
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{path}: ")
    assert isinstance(info.value, ValueError)


def test_oversized_and_deeply_nested_input_is_refused() -> None:
    with pytest.raises(FetchXmlError, match="larger than"):
        parse_fetchxml("<fetch>" + " " * MAX_FETCHXML_CHARS + "</fetch>")
    deep = "<fetch><entity name='c'>" + "<filter>" * 40 + "</filter>" * 40 + "</entity></fetch>"
    with pytest.raises(FetchXmlError, match="nested deeper than 32"):
        parse_fetchxml(deep)


def test_garbage_types_are_refused() -> None:
    with pytest.raises(FetchXmlError, match="expected text"):
        parse_fetchxml(cast(Any, b"<fetch/>"))


def test_context_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        EvalContext(user_id=USER, now=datetime(2026, 1, 1))


# --- property: parse -> evaluate never raises ---

_OPS_ONE = ["eq", "ne", "like", "not-like", "gt", "ge", "lt", "le", "begins-with", "ends-with"]
_ATTRS = ["a", "b", "ownerid", "scheduledstart"]

scalar_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from([USER, OTHER.upper(), "2026-03-15", "2026-03-15T10:00:00Z", "", "%"]),
    st.fixed_dictionaries({"table": st.just("account"), "id": st.sampled_from([USER, OTHER])}),
)
record_values = st.one_of(scalar_values, st.lists(scalar_values, max_size=3))
arg_text = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters="<>&\"'"),
    max_size=10,
)


@st.composite
def conditions(draw: st.DrawFn) -> str:
    attr = draw(st.sampled_from(_ATTRS))
    kind = draw(st.integers(0, 4))
    if kind == 0:
        op = draw(st.sampled_from(["null", "not-null", "eq-userid", "ne-userid"]))
        return f'<condition attribute="{attr}" operator="{op}"/>'
    if kind == 1:
        op = draw(st.sampled_from(["in", "not-in"]))
        values = "".join(f"<value>{v}</value>" for v in draw(st.lists(arg_text, min_size=1)))
        return f'<condition attribute="{attr}" operator="{op}">{values}</condition>'
    if kind == 2:
        op = draw(st.sampled_from(["on", "on-or-after", "on-or-before"]))
        day = draw(st.dates()).isoformat()
        return f'<condition attribute="{attr}" operator="{op}" value="{day}"/>'
    if kind == 3:
        op = draw(st.sampled_from(["last-x-days", "next-x-days"]))
        return (
            f'<condition attribute="{attr}" operator="{op}" value="{draw(st.integers(0, 400))}"/>'
        )
    op = draw(st.sampled_from(_OPS_ONE))
    return f'<condition attribute="{attr}" operator="{op}" value="{draw(arg_text)}"/>'


def filters(depth: int = 0) -> st.SearchStrategy[str]:
    leaf = conditions()
    if depth >= 2:
        return leaf
    return st.one_of(
        leaf,
        st.builds(
            lambda t, items: f'<filter type="{t}">{"".join(items)}</filter>',
            st.sampled_from(["and", "or"]),
            st.lists(st.deferred(lambda: filters(depth + 1)), max_size=3),
        ),
    )


@settings(max_examples=300, deadline=None)
@given(
    body=filters(),
    record=st.dictionaries(st.sampled_from(_ATTRS), record_values),
    rows=st.lists(st.dictionaries(st.sampled_from(["partyid", "activityid", "a"]), record_values)),
    hours=st.integers(-14, 14),
)
def test_parse_then_evaluate_never_raises(
    body: str, record: dict[str, Any], rows: list[dict[str, Any]], hours: int
) -> None:
    text = (
        '<fetch><entity name="appointment">'
        '<link-entity name="activityparty" from="activityid" to="activityid" alias="p">'
        f"<filter>{body}</filter></link-entity>"
        f"<filter>{body}</filter></entity></fetch>"
    )
    query = parse_fetchxml(text)
    now = NOW.astimezone(timezone(timedelta(hours=hours)))
    result = query.matches(record, EvalContext(USER, now, {"activityparty": rows}))
    assert isinstance(result, bool)


ADVANCED_FIND = f"""<?xml version="1.0" encoding="utf-8"?>
<fetch version="1.0" output-format="xml-platform" mapping="logical" distinct="false">
  <entity name="contact">
    <attribute name="fullname" />
    <attribute name="contactid" />
    <order attribute="fullname" descending="false" />
    <filter type="and">
      <condition attribute="parentcustomerid" operator="in">
        <value uiname="Contoso" uitype="account">{{{OTHER.upper()}}}</value>
      </condition>
      <condition attribute="createdon" operator="last-x-days" value="30" />
    </filter>
  </entity>
</fetch>"""


def test_userquery_style_fetchxml_parses_and_evaluates() -> None:
    query = parse_fetchxml(ADVANCED_FIND, table="contact")
    record = {
        "parentcustomerid": {"table": "account", "id": OTHER},
        "createdon": "2026-03-01T08:00:00Z",
    }
    assert query.matches(record, ctx())
    assert not query.matches({**record, "createdon": "2026-01-01T08:00:00Z"}, ctx())
