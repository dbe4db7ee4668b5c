"""Writes: @odata.bind navigation names, inline parties, upsert, If-Match / If-None-Match."""

from __future__ import annotations

import uuid

import pytest

from emulators.dataverse import EmulatorConfig

from .conftest import MakeEmulator
from .odata import RunningEmulator

UNDECLARED = "An undeclared property '{}' which only has property annotations in the payload"


async def test_bind_names_per_table(dv: RunningEmulator) -> None:
    contact = await dv.client.create("contacts", {"lastname": "C"})
    account = await dv.client.create("accounts", {"name": "A"})
    lead = await dv.client.create("leads", {"lastname": "L"})
    task = await dv.client.create(
        "tasks",
        {"subject": "t", "regardingobjectid_account_task@odata.bind": f"/accounts({account})"},
    )
    row = (await dv.client.get(f"tasks({task})")).json
    assert row["_regardingobjectid_value"] == account
    for table, target, tid in (("emails", "lead", lead), ("phonecalls", "contact", contact)):
        logical = table[:-1] if table != "faxes" else "fax"
        nav = f"regardingobjectid_{target}_{logical}@odata.bind"
        await dv.client.create(table, {"subject": "s", nav: f"/{target}s({tid})"})
    await dv.client.patch(
        f"contacts({contact})", {"parentcustomerid_account@odata.bind": f"/accounts({account})"}
    )
    assert (await dv.client.get(f"contacts({contact})")).json["_parentcustomerid_value"] == account
    await dv.client.patch(f"contacts({contact})", {"parentcustomerid_account@odata.bind": None})
    assert (await dv.client.get(f"contacts({contact})")).json["_parentcustomerid_value"] is None


@pytest.mark.parametrize(
    ("entity_set", "nav", "target"),
    [
        ("appointments", "regardingobjectid_contact_task", "contacts"),
        ("appointments", "regardingobjectid", "contacts"),
        ("appointments", "RegardingObjectId_contact_appointment", "contacts"),
        ("contacts", "parentcustomerid", "accounts"),
        ("contacts", "parentcustomerid_lead", "leads"),
        ("tasks", "ownerid_systemuser", "systemusers"),
    ],
)
async def test_wrong_navigation_name_is_400(
    dv: RunningEmulator, entity_set: str, nav: str, target: str
) -> None:
    reply = await dv.client.post(entity_set, {f"{nav}@odata.bind": f"/{target}({uuid.uuid4()})"})
    assert reply.status == 400
    assert reply.code == "0x80060888"
    assert reply.message.startswith(UNDECLARED.format(nav))
    assert (await dv.client.get(entity_set)).json["value"] == []


async def test_bind_to_wrong_entity_set_is_400(dv: RunningEmulator) -> None:
    account = await dv.client.create("accounts", {"name": "A"})
    reply = await dv.client.post(
        "appointments",
        {"regardingobjectid_contact_appointment@odata.bind": f"/accounts({account})"},
    )
    assert reply.status == 400
    assert "expected 'contacts'" in reply.message


async def test_bind_to_missing_row_is_404(dv: RunningEmulator) -> None:
    missing = str(uuid.uuid4())
    reply = await dv.client.post(
        "contacts", {"parentcustomerid_account@odata.bind": f"/accounts({missing})"}
    )
    assert reply.status == 404
    assert reply.message == f"account With Id = {missing} Does Not Exist"
    assert (await dv.client.get("contacts")).json["value"] == []


async def test_owner_bind_and_direct_lookup_write(dv: RunningEmulator) -> None:
    user, _ = await dv.seed_user("Owner")
    cid = await dv.client.create(
        "contacts", {"lastname": "X", "ownerid@odata.bind": f"/systemusers({user})"}
    )
    assert (await dv.client.get(f"contacts({cid})")).json["_ownerid_value"] == user
    reply = await dv.client.patch(f"contacts({cid})", {"_ownerid_value": user})
    assert reply.status == 400
    assert reply.code == "0x80048d19"


async def test_party_bind_names_checked(dv: RunningEmulator) -> None:
    contact = await dv.client.create("contacts", {"lastname": "C"})
    for bad in ("partyid@odata.bind", "partyid_email@odata.bind", "partyid_Contact@odata.bind"):
        reply = await dv.client.post(
            "emails",
            {
                "subject": "x",
                "email_activity_parties": [
                    {"participationtypemask": 2, bad: f"/contacts({contact})"}
                ],
            },
        )
        assert reply.status == 400, bad
        assert reply.message.startswith(UNDECLARED.format(bad.split("@")[0]))
    wrong_collection = await dv.client.post(
        "emails", {"appointment_activity_parties": [{"participationtypemask": 2}]}
    )
    assert wrong_collection.status == 400
    assert "does not exist on type 'Microsoft.Dynamics.CRM.email'" in wrong_collection.message
    assert (await dv.client.get("emails")).json["value"] == []
    assert (await dv.client.get("activityparties")).json["value"] == []


@pytest.mark.parametrize(
    "party",
    [
        {"participationtypemask": 13, "addressused": "a@b.test"},
        {"participationtypemask": 0, "addressused": "a@b.test"},
        {"participationtypemask": "2", "addressused": "a@b.test"},
        {"addressused": "a@b.test"},
        {"participationtypemask": 2},
        {"participationtypemask": 2, "addressused": "a@b.test", "color": "red"},
        "not-an-object",
    ],
)
async def test_bad_parties_are_400(dv: RunningEmulator, party: object) -> None:
    reply = await dv.client.post("emails", {"subject": "x", "email_activity_parties": [party]})
    assert reply.status == 400


async def test_patch_with_parties_replaces_them(dv: RunningEmulator) -> None:
    contact = await dv.client.create("contacts", {"lastname": "C", "emailaddress1": "c@x.test"})
    eid = await dv.client.create(
        "emails",
        {
            "subject": "hi",
            "directioncode": True,
            "messageid": "<m1@x>",
            "email_activity_parties": [
                {"participationtypemask": 1, "addressused": "me@x.test"},
                {"participationtypemask": 2, "partyid_contact@odata.bind": f"/contacts({contact})"},
            ],
        },
    )
    await dv.client.patch(
        f"emails({eid})",
        {"email_activity_parties": [{"participationtypemask": 3, "addressused": "cc@x.test"}]},
    )
    reply = await dv.client.get(f"emails({eid})?$expand=email_activity_parties")
    parties = reply.json["email_activity_parties"]
    assert [(p["participationtypemask"], p["addressused"]) for p in parties] == [(3, "cc@x.test")]
    assert len((await dv.client.get("activityparties")).json["value"]) == 1
    await dv.client.delete(f"emails({eid})")
    assert (await dv.client.get("activityparties")).json["value"] == []


async def test_upsert_creates_with_given_id_then_updates(dv: RunningEmulator) -> None:
    cid = str(uuid.uuid4())
    created = await dv.client.patch(
        f"contacts({cid})", {"lastname": "Upsert"}, headers={"Prefer": "return=representation"}
    )
    assert created.status == 201
    assert created.json["contactid"] == cid
    updated = await dv.client.patch(
        f"contacts({cid})", {"firstname": "Una"}, headers={"Prefer": "return=representation"}
    )
    assert updated.status == 200
    assert updated.json["fullname"] == "Una Upsert"
    plain = await dv.client.patch(f"contacts({cid})", {"jobtitle": "Dev"})
    assert plain.status == 204
    assert plain.headers["OData-EntityId"].endswith(f"contacts({cid})")


async def test_if_match_star_forbids_create(dv: RunningEmulator) -> None:
    cid = str(uuid.uuid4())
    reply = await dv.client.patch(f"contacts({cid})", {"lastname": "X"}, headers={"If-Match": "*"})
    assert reply.status == 404
    assert reply.code == "0x80040217"
    assert (await dv.client.get(f"contacts({cid})")).status == 404
    await dv.client.create("contacts", {"contactid": cid, "lastname": "X"})
    ok = await dv.client.patch(f"contacts({cid})", {"lastname": "Y"}, headers={"If-Match": "*"})
    assert ok.status == 204


async def test_if_none_match_star_forbids_update(dv: RunningEmulator) -> None:
    cid = str(uuid.uuid4())
    first = await dv.client.patch(
        f"contacts({cid})", {"lastname": "New"}, headers={"If-None-Match": "*"}
    )
    assert first.status == 204
    second = await dv.client.patch(
        f"contacts({cid})", {"lastname": "Changed"}, headers={"If-None-Match": "*"}
    )
    assert second.status == 412
    assert second.code == "0x80040237"
    assert (await dv.client.get(f"contacts({cid})")).json["lastname"] == "New"


async def test_stale_etag_is_412(dv: RunningEmulator) -> None:
    cid = await dv.client.create("contacts", {"lastname": "V1"})
    etag = (await dv.client.get(f"contacts({cid})")).json["@odata.etag"]
    assert (
        await dv.client.patch(f"contacts({cid})", {"lastname": "V2"}, headers={"If-Match": etag})
    ).status == 204
    stale = await dv.client.patch(
        f"contacts({cid})", {"lastname": "V3"}, headers={"If-Match": etag}
    )
    assert stale.status == 412
    assert stale.code == "0x80060882"
    assert stale.message == (
        "The version of the existing record doesn't match the RowVersion property provided."
    )
    stale_delete = await dv.client.delete(f"contacts({cid})", headers={"If-Match": etag})
    assert stale_delete.status == 412
    assert (await dv.client.get(f"contacts({cid})")).json["lastname"] == "V2"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"lastname": 5}, "Cannot convert the literal 5 to the expected type 'Edm.String'"),
        ({"statecode": "active"}, "Edm.Int32"),
        ({"statecode": True}, "Edm.Int32"),
        ({"birthdate": "yesterday"}, "Edm.Date"),
        ({"birthdate": "2024-02-30"}, "Edm.Date"),
        (
            {"nosuch": 1},
            "The property 'nosuch' does not exist on type 'Microsoft.Dynamics.CRM.contact'",
        ),
        ({"lastname": "x" * 101}, "maximum allowed length"),
        ({"parentcustomerid_account@odata.bind": 42}, "must be a string"),
        ({"parentcustomerid_account@odata.bind": "/accounts(not-a-guid)"}, "not a valid entity"),
        ({"parentcustomerid_account": {"name": "deep"}}, "Deep insert"),
        ({"contactid": "nope"}, "Edm.Guid"),
    ],
)
async def test_wrong_types_and_unknown_columns_are_400(
    dv: RunningEmulator, body: dict[str, object], fragment: str
) -> None:
    reply = await dv.client.post("contacts", body)
    assert reply.status == 400, reply.text
    assert fragment in reply.message
    assert (await dv.client.get("contacts")).json["value"] == []


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"", b'"text"', b"\xff\xfe"])
async def test_malformed_bodies_are_400(dv: RunningEmulator, raw: bytes) -> None:
    reply = await dv.client.request(
        "POST", "contacts", raw=raw, headers={"Content-Type": "application/json"}
    )
    assert reply.status == 400
    assert reply.json["error"]["message"]


async def test_bad_keys_and_methods(dv: RunningEmulator) -> None:
    assert (await dv.client.get("contacts(123)")).status == 400
    assert (await dv.client.get("contacts(lastname='x')")).status == 400
    put = await dv.client.request("PUT", "contacts", {"lastname": "x"})
    assert put.status == 405
    body_id = await dv.client.patch(
        f"contacts({uuid.uuid4()})", {"contactid": str(uuid.uuid4()), "lastname": "x"}
    )
    assert body_id.status == 400
    both = await dv.client.patch(
        f"contacts({uuid.uuid4()})",
        {"lastname": "x"},
        headers={"If-Match": "*", "If-None-Match": "*"},
    )
    assert both.status == 400


async def test_activityparties_are_written_only_through_activities(dv: RunningEmulator) -> None:
    reply = await dv.client.post("activityparties", {"participationtypemask": 1})
    assert reply.status == 400
    assert "'Create' method does not support entities of type 'activityparty'" in reply.message
    await dv.client.create(
        "tasks",
        {
            "subject": "t",
            "task_activity_parties": [{"participationtypemask": 9, "addressused": "o@x.test"}],
        },
    )
    party = (await dv.client.get("activityparties")).json["value"][0]
    assert party["_activityid_value"]
    reply = await dv.client.delete(f"activityparties({party['activitypartyid']})")
    assert reply.status == 400


async def test_oversized_body_is_413(make_emulator: MakeEmulator) -> None:
    dv = await make_emulator(EmulatorConfig(max_body_bytes=2048))
    reply = await dv.client.post("contacts", {"description": "x" * 1900, "lastname": "y" * 200})
    assert reply.status == 413
    assert reply.json["error"]["code"] == "0x80040216"
    assert (await dv.client.get("contacts")).json["value"] == []
