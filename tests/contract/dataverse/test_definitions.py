"""``EntityDefinitions``: table and column definitions, as the Web API documents querying them,
derived from the emulator's own catalogue (so they describe what the emulator accepts)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from emulators.dataverse.catalog import build_catalog

from .odata import RunningEmulator

NS = "Microsoft.Dynamics.CRM"
CONTACT = "EntityDefinitions(LogicalName='contact')"


def _label(item: dict[str, Any], name: str = "DisplayName") -> str:
    return str(item[name]["UserLocalizedLabel"]["Label"])


async def _get(dv: RunningEmulator, path: str) -> Any:
    reply = await dv.client.get(path)
    assert reply.status == 200, reply.text
    return reply.json


async def test_list_of_table_definitions_with_select(dv: RunningEmulator) -> None:
    body = await _get(dv, "EntityDefinitions?$select=LogicalName,EntitySetName,ObjectTypeCode")
    assert body["@odata.context"] == (
        f"{dv.client.root}$metadata#EntityDefinitions(LogicalName,EntitySetName,ObjectTypeCode)"
    )
    rows = {r["LogicalName"]: r for r in body["value"]}
    catalog = build_catalog()
    assert set(rows) == set(catalog.by_logical)
    assert rows["contact"]["EntitySetName"] == "contacts" and rows["contact"]["ObjectTypeCode"] == 2
    assert rows["fax"]["EntitySetName"] == "faxes"
    assert all(
        set(r) == {"MetadataId", "LogicalName", "EntitySetName", "ObjectTypeCode"}
        for r in rows.values()
    )
    service = await _get(dv, "")
    assert "EntityDefinitions" in {s["name"] for s in service["value"]}


async def test_one_table_by_logical_name_and_by_metadata_id(dv: RunningEmulator) -> None:
    body = await _get(
        dv, f"{CONTACT}?$select=DisplayName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute"
    )
    assert body["@odata.context"].endswith(
        "$metadata#EntityDefinitions(DisplayName,EntitySetName,PrimaryIdAttribute,"
        "PrimaryNameAttribute)/$entity"
    )
    assert _label(body) == "Contact" and body["EntitySetName"] == "contacts"
    assert (body["PrimaryIdAttribute"], body["PrimaryNameAttribute"]) == ("contactid", "fullname")
    again = await _get(dv, f"EntityDefinitions({body['MetadataId']})?$select=LogicalName")
    assert again["LogicalName"] == "contact" and again["MetadataId"] == body["MetadataId"]
    whole = await _get(dv, "EntityDefinitions(LogicalName='email')")
    assert whole["IsActivity"] is True and whole["OwnershipType"] == "UserOwned"
    assert _label(whole, "DisplayCollectionName") == "Email Messages"


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (f"OwnershipType eq {NS}.OwnershipTypes'UserOwned'", {"contact", "email", "userquery"}),
        ("IsActivity eq true", {"appointment", "email", "fax", "task"}),
        ("LogicalName eq 'lead' or ObjectTypeCode eq 8", {"lead", "systemuser"}),
        ("CanCreateAttributes/Value eq true and not (IsActivity eq true)", {"contact"}),
        ("ObjectTypeCode ge 4200 and ObjectTypeCode lt 4205", {"appointment", "email", "fax"}),
    ],
)
async def test_filter_table_definitions(dv: RunningEmulator, expr: str, expected: set[str]) -> None:
    body = await _get(dv, f"EntityDefinitions?$select=LogicalName&$filter={quote(expr)}")
    names = {r["LogicalName"] for r in body["value"]}
    assert expected <= names
    if "ObjectTypeCode ge" in expr:
        assert names == expected
    if "OwnershipType" in expr:
        assert "systemuser" not in names and "organization" not in names


async def test_attributes_cover_every_column_and_lookup(dv: RunningEmulator) -> None:
    body = await _get(dv, f"{CONTACT}/Attributes?$select=LogicalName,AttributeType")
    assert "/Attributes(LogicalName,AttributeType)" in body["@odata.context"]
    kinds = {a["LogicalName"]: a["AttributeType"] for a in body["value"]}
    contact = build_catalog().table("contact")
    assert set(kinds) == set(contact.columns) | set(contact.lookups)
    assert kinds["firstname"] == "String" and kinds["description"] == "Memo"
    assert kinds["contactid"] == "Uniqueidentifier" and kinds["birthdate"] == "DateTime"
    assert (kinds["statecode"], kinds["statuscode"]) == ("State", "Status")
    assert (kinds["ownerid"], kinds["parentcustomerid"]) == ("Owner", "Customer")
    assert kinds["versionnumber"] == "BigInt"
    types = {a["LogicalName"]: a["@odata.type"] for a in body["value"]}
    assert types["firstname"] == f"#{NS}.StringAttributeMetadata"
    assert types["ownerid"] == f"#{NS}.LookupAttributeMetadata"


async def test_picklists_cast_with_their_option_sets(dv: RunningEmulator) -> None:
    path = (
        "EntityDefinitions(LogicalName='appointment')/Attributes/"
        f"{NS}.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet,GlobalOptionSet"
    )
    body = await _get(dv, path)
    assert body["@odata.context"].endswith(
        f"/Attributes/{NS}.PicklistAttributeMetadata(LogicalName,OptionSet,GlobalOptionSet)"
    )
    by_name = {a["LogicalName"]: a for a in body["value"]}
    assert set(by_name) == {"prioritycode", "instancetypecode"}
    priority = by_name["prioritycode"]
    assert "@odata.type" not in priority and priority["GlobalOptionSet"] is None
    options = priority["OptionSet"]["Options"]
    assert [(o["Value"], o["Label"]["UserLocalizedLabel"]["Label"]) for o in options] == [
        (0, "Low"),
        (1, "Normal"),
        (2, "High"),
    ]
    assert priority["OptionSet"]["OptionSetType"] == "Picklist"
    assert priority["OptionSet"]["IsGlobal"] is False


async def test_one_attribute_by_name_cast_and_its_option_set(dv: RunningEmulator) -> None:
    first = await _get(
        dv,
        f"{CONTACT}/Attributes(LogicalName='firstname')/{NS}.StringAttributeMetadata"
        "?$select=LogicalName,MaxLength,Format",
    )
    assert first["@odata.context"].endswith(
        f"/Attributes/{NS}.StringAttributeMetadata(LogicalName,MaxLength,Format)/$entity"
    )
    assert (first["LogicalName"], first["MaxLength"], first["Format"]) == ("firstname", 100, "Text")
    mail = await _get(dv, f"{CONTACT}/Attributes(LogicalName='emailaddress1')")
    assert mail["Format"] == "Email" and mail["IsValidForCreate"] is True
    by_id = await _get(dv, f"{CONTACT}/Attributes({mail['MetadataId']})?$select=LogicalName")
    assert by_id["LogicalName"] == "emailaddress1"
    full = await _get(dv, f"{CONTACT}/Attributes(LogicalName='fullname')")
    assert full["IsValidForCreate"] is False and full["IsPrimaryName"] is True
    options = await _get(
        dv,
        "EntityDefinitions(LogicalName='task')/Attributes(LogicalName='prioritycode')/"
        f"{NS}.PicklistAttributeMetadata/OptionSet?$select=Options",
    )
    assert options["@odata.context"].endswith("/OptionSet(Options)/$entity")
    assert [o["Value"] for o in options["Options"]] == [0, 1, 2]
    assert set(options) == {"@odata.context", "Options", "MetadataId"}
    direction = await _get(
        dv,
        "EntityDefinitions(LogicalName='email')/Attributes(LogicalName='directioncode')/"
        f"{NS}.BooleanAttributeMetadata?$expand=OptionSet",
    )
    labels = direction["OptionSet"]
    assert labels["TrueOption"]["Label"]["UserLocalizedLabel"]["Label"] == "Outgoing"
    assert labels["FalseOption"]["Value"] == 0


async def test_state_and_status_options_match_what_the_emulator_does(dv: RunningEmulator) -> None:
    base = "EntityDefinitions(LogicalName='task')/Attributes"
    state = await _get(
        dv, f"{base}(LogicalName='statecode')/{NS}.StateAttributeMetadata?$expand=OptionSet"
    )
    states = {o["Value"]: o for o in state["OptionSet"]["Options"]}
    assert states[0]["InvariantName"] == "Open" and states[1]["DefaultStatus"] == 5
    status = await _get(
        dv, f"{base}(LogicalName='statuscode')/{NS}.StatusAttributeMetadata?$expand=OptionSet"
    )
    pairs = {o["Value"]: o["State"] for o in status["OptionSet"]["Options"]}
    assert pairs == {2: 0, 3: 0, 4: 0, 7: 0, 5: 1, 6: 2}
    made = await dv.client.create("tasks", {"subject": "Call"})
    row = (await dv.client.get(f"tasks({made})?$select=statecode,statuscode")).json
    assert states[row["statecode"]]["DefaultStatus"] == row["statuscode"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            f"AttributeType eq {NS}.AttributeTypeCode'Picklist'",
            {"prioritycode", "instancetypecode"},
        ),
        (
            f"RequiredLevel/Value eq {NS}.AttributeRequiredLevel'SystemRequired'",
            {"activityid", "statecode", "ownerid"},
        ),
        ("IsValidForUpdate eq false and IsPrimaryId eq true", {"activityid"}),
    ],
)
async def test_filter_attributes(dv: RunningEmulator, query: str, expected: set[str]) -> None:
    body = await _get(
        dv,
        "EntityDefinitions(LogicalName='appointment')/Attributes"
        f"?$select=LogicalName&$filter={quote(query)}",
    )
    assert {a["LogicalName"] for a in body["value"]} == expected


async def test_expand_attributes_with_nested_options(dv: RunningEmulator) -> None:
    inner = f"$select=LogicalName;$filter=AttributeType eq {NS}.AttributeTypeCode'Picklist'"
    body = await _get(
        dv,
        f"EntityDefinitions(LogicalName='email')?$select=LogicalName&$expand=Attributes({quote(inner)})",
    )
    assert body["LogicalName"] == "email"
    assert sorted(a["LogicalName"] for a in body["Attributes"]) == [
        "correlationmethod",
        "prioritycode",
    ]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("EntityDefinitions(LogicalName='nosuchtable')", 404, "0x80041102"),
        (f"{CONTACT}/Attributes(LogicalName='nosuchcolumn')", 404, "0x80041103"),
        ("EntityDefinitions(contact)", 400, "0x80060888"),
        ("EntityDefinitions?$select=Nope", 400, "0x80060888"),
        (f"{CONTACT}/Attributes?$select=LogicalName,MaxLength", 400, "0x80060888"),
        (f"{CONTACT}/Attributes?$expand=OptionSet", 400, "0x80060888"),
        (f"{CONTACT}/Attributes/{NS}.EnumAttributeMetadata", 400, "0x80060888"),
        (f"{CONTACT}/Attributes/{NS}.Nonsense", 400, "0x80060888"),
        (
            f"{CONTACT}/Attributes(LogicalName='firstname')/{NS}.PicklistAttributeMetadata",
            404,
            "0x8006088a",
        ),
        (f"{CONTACT}/Attributes?$filter=AttributeType eq 'Picklist'", 400, "0x80060888"),
        (
            f"{CONTACT}/Attributes?$filter=AttributeType eq {NS}.OwnershipTypes'UserOwned'",
            400,
            "0x80060888",
        ),
        ("EntityDefinitions?$filter=DisplayName eq 'Contact'", 400, "0x80060888"),
        ("EntityDefinitions?$filter=LogicalName eq", 400, "0x80060888"),
        ("EntityDefinitions?$filter=LogicalName gt 'a'", 400, "0x80060888"),
        ("EntityDefinitions?$top=1", 400, "0x80060888"),
        ("EntityDefinitions?$expand=Attributes($top=1)", 400, "0x80060888"),
        ("EntityDefinitions/Attributes", 400, "0x80060888"),
    ],
)
async def test_malformed_definition_requests(
    dv: RunningEmulator, path: str, status: int, code: str
) -> None:
    target, _, query = path.partition("?")
    reply = await dv.client.get(target + ("?" + quote(query, safe="=&$,()'") if query else ""))
    assert reply.status == status, reply.text
    assert reply.code == code and reply.message


async def test_definitions_are_read_only(dv: RunningEmulator) -> None:
    reply = await dv.client.post("EntityDefinitions", {"LogicalName": "new_thing"})
    assert reply.status == 405 and reply.message
