"""CRUD, auth, tables and row shape."""

from __future__ import annotations

import re
import uuid

from .odata import RunningEmulator


async def test_missing_bearer_token_is_401(dv: RunningEmulator) -> None:
    dv.client.token = None
    reply = await dv.client.get("contacts")
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")


async def test_wrong_auth_scheme_is_401(dv: RunningEmulator) -> None:
    reply = await dv.client.get("contacts", headers={"Authorization": "Basic abc"})
    assert reply.status == 401


async def test_create_then_get_has_dataverse_shape(dv: RunningEmulator) -> None:
    cid = await dv.client.create(
        "contacts", {"firstname": "Ada", "lastname": "Lovelace", "emailaddress1": "ada@x.test"}
    )
    reply = await dv.client.get(f"contacts({cid})")
    assert reply.status == 200
    assert reply.headers["OData-Version"] == "4.0"
    row = reply.json
    assert row["@odata.context"] == f"{dv.client.root}$metadata#contacts/$entity"
    assert row["contactid"] == cid
    assert row["fullname"] == "Ada Lovelace"
    assert re.fullmatch(r'W/"\d+"', row["@odata.etag"])
    assert row["@odata.etag"] == f'W/"{row["versionnumber"]}"'
    assert row["statecode"] == 0 and row["statuscode"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["createdon"])
    assert row["modifiedon"] == row["createdon"]
    whoami = await dv.client.get("WhoAmI")
    assert row["_ownerid_value"] == whoami.json["UserId"]


async def test_create_returns_entity_id_header(dv: RunningEmulator) -> None:
    reply = await dv.client.post("accounts", {"name": "Contoso"})
    assert reply.status == 204
    assert reply.text == ""
    assert re.fullmatch(
        re.escape(dv.client.root) + r"accounts\([0-9a-f-]{36}\)", reply.headers["OData-EntityId"]
    )


async def test_return_representation_gives_201_and_row(dv: RunningEmulator) -> None:
    reply = await dv.client.post(
        "tasks?$select=subject",
        {"subject": "Call back"},
        headers={"Prefer": "return=representation"},
    )
    assert reply.status == 201
    assert reply.headers["Preference-Applied"] == "return=representation"
    assert reply.json["subject"] == "Call back"
    assert "activityid" in reply.json
    assert reply.json["@odata.context"].endswith("$metadata#tasks(subject)/$entity")
    assert "description" not in reply.json


async def test_client_chosen_primary_key(dv: RunningEmulator) -> None:
    wanted = str(uuid.uuid4())
    cid = await dv.client.create("contacts", {"contactid": wanted, "lastname": "Key"})
    assert cid == wanted
    again = await dv.client.post("contacts", {"contactid": wanted, "lastname": "Dup"})
    assert again.status == 412
    assert again.code == "0x80040237"


async def test_version_numbers_are_org_wide_and_increasing(dv: RunningEmulator) -> None:
    a = await dv.client.create("contacts", {"lastname": "A"})
    b = await dv.client.create("accounts", {"name": "B"})
    va = (await dv.client.get(f"contacts({a})")).json["versionnumber"]
    vb = (await dv.client.get(f"accounts({b})")).json["versionnumber"]
    assert vb > va
    await dv.client.patch(f"contacts({a})", {"lastname": "A2"})
    va2 = (await dv.client.get(f"contacts({a})")).json["versionnumber"]
    assert va2 > vb


async def test_all_tables_have_real_keys(dv: RunningEmulator) -> None:
    keys = {
        "systemusers": "systemuserid",
        "contacts": "contactid",
        "accounts": "accountid",
        "leads": "leadid",
        "appointments": "activityid",
        "recurringappointmentmasters": "activityid",
        "tasks": "activityid",
        "phonecalls": "activityid",
        "letters": "activityid",
        "faxes": "activityid",
        "emails": "activityid",
        "activityparties": "activitypartyid",
        "userqueries": "userqueryid",
        "savedqueries": "savedqueryid",
        "organizations": "organizationid",
    }
    for entity_set, key in keys.items():
        reply = await dv.client.get(f"{entity_set}?$select={key}")
        assert reply.status == 200, (entity_set, reply.text)
        assert isinstance(reply.json["value"], list)
    orgs = (await dv.client.get("organizations")).json["value"]
    assert orgs[0]["expirechangetrackingindays"] == 7
    users = (await dv.client.get("systemusers?$select=fullname,azureactivedirectoryobjectid")).json
    assert len(users["value"]) == 1


async def test_saved_and_user_queries(dv: RunningEmulator) -> None:
    fetch = '<fetch><entity name="contact"><attribute name="fullname"/></entity></fetch>'
    await dv.client.create(
        "userqueries",
        {"name": "My contacts", "fetchxml": fetch, "querytype": 256, "returnedtypecode": "contact"},
    )
    await dv.client.create(
        "savedqueries",
        {"name": "Template", "fetchxml": fetch, "querytype": 256, "returnedtypecode": "contact"},
    )
    reply = await dv.client.get("userqueries?$filter=querytype eq 256&$select=fetchxml,name")
    assert [r["fetchxml"] for r in reply.json["value"]] == [fetch]
    assert len((await dv.client.get("savedqueries")).json["value"]) == 1


async def test_get_missing_row_is_404(dv: RunningEmulator) -> None:
    missing = str(uuid.uuid4())
    reply = await dv.client.get(f"contacts({missing})")
    assert reply.status == 404
    assert reply.code == "0x80040217"
    assert reply.message == f"contact With Id = {missing} Does Not Exist"


async def test_unknown_entity_set_is_404(dv: RunningEmulator) -> None:
    reply = await dv.client.get("Contact")
    assert reply.status == 404
    assert reply.code == "0x8006088a"
    assert reply.message == "Resource not found for the segment 'Contact'."


async def test_delete(dv: RunningEmulator) -> None:
    cid = await dv.client.create("contacts", {"lastname": "Gone"})
    assert (await dv.client.delete(f"contacts({cid})")).status == 204
    assert (await dv.client.get(f"contacts({cid})")).status == 404
    again = await dv.client.delete(f"contacts({cid})")
    assert again.status == 404
    assert again.code == "0x80040217"


async def test_conditional_get_304(dv: RunningEmulator) -> None:
    cid = await dv.client.create("contacts", {"lastname": "Etag"})
    first = await dv.client.get(f"contacts({cid})")
    same = await dv.client.get(
        f"contacts({cid})", headers={"If-None-Match": first.json["@odata.etag"]}
    )
    assert same.status == 304


async def test_metadata_and_service_document(dv: RunningEmulator) -> None:
    import xml.etree.ElementTree as ET

    reply = await dv.client.get("$metadata")
    assert reply.status == 200
    doc = ET.fromstring(reply.text)
    ns = {"edm": "http://docs.oasis-open.org/odata/ns/edm"}
    appointment = doc.find(".//edm:EntityType[@Name='appointment']", ns)
    assert appointment is not None
    navs = {n.get("Name") for n in appointment.findall("edm:NavigationProperty", ns)}
    assert {"regardingobjectid_contact_appointment", "appointment_activity_parties"} <= navs
    key = appointment.find("edm:Key/edm:PropertyRef", ns)
    assert key is not None and key.get("Name") == "activityid"
    service = await dv.client.get("")
    names = {e["name"] for e in service.json["value"]}
    assert {"contacts", "activityparties", "savedqueries", "faxes"} <= names
