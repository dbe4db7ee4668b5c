"""Impersonation (CallerObjectId / MSCRMCallerID), ownership, sharing."""

from __future__ import annotations

import uuid

from .odata import RunningEmulator


async def test_caller_object_id_impersonates_and_owns(dv: RunningEmulator) -> None:
    user, aad = await dv.seed_user("Alice")
    who = await dv.client.get("WhoAmI", headers={"CallerObjectId": aad})
    assert who.json["UserId"] == user
    cid = await dv.client.create("contacts", {"lastname": "Hers"}, headers={"CallerObjectId": aad})
    row = (await dv.client.get(f"contacts({cid})")).json
    assert row["_ownerid_value"] == user
    assert row["_createdby_value"] == user
    ok = await dv.client.patch(
        f"contacts({cid})", {"jobtitle": "x"}, headers={"CallerObjectId": aad}
    )
    assert ok.status == 204


async def test_other_users_rows_are_403_until_shared(dv: RunningEmulator) -> None:
    _alice, alice_aad = await dv.seed_user("Alice")
    bob, _ = await dv.seed_user("Bob")
    as_bob = {"MSCRMCallerID": bob}
    cid = await dv.client.create(
        "contacts", {"lastname": "Alices"}, headers={"CallerObjectId": alice_aad}
    )
    denied = await dv.client.patch(f"contacts({cid})", {"lastname": "Bobbed"}, headers=as_bob)
    assert denied.status == 403
    assert denied.code == "0x80040220"
    assert (
        f"Principal user (Id={bob}, type=8) is missing prvWriteContact privilege" in denied.message
    )
    deleted = await dv.client.delete(f"contacts({cid})", headers=as_bob)
    assert deleted.status == 403
    assert "prvDeleteContact" in deleted.message
    assert (await dv.client.get(f"contacts({cid})")).json["lastname"] == "Alices"
    shared = await dv.control(
        "POST", "share", {"table": "contacts", "id": cid, "systemuserid": bob}
    )
    assert shared.status == 200
    assert (
        await dv.client.patch(f"contacts({cid})", {"lastname": "Bobbed"}, headers=as_bob)
    ).status == 204
    assert (await dv.client.get(f"contacts({cid})")).json["lastname"] == "Bobbed"


async def test_app_user_rows_are_not_writable_by_users(dv: RunningEmulator) -> None:
    user, _ = await dv.seed_user("Carol")
    aid = await dv.client.create("appointments", {"subject": "App's"})
    reply = await dv.client.patch(
        f"appointments({aid})", {"subject": "mine"}, headers={"MSCRMCallerID": user}
    )
    assert reply.status == 403
    assert "prvWriteAppointment" in reply.message
    upsert_create = await dv.client.patch(
        f"appointments({uuid.uuid4()})", {"subject": "new"}, headers={"MSCRMCallerID": user}
    )
    assert upsert_create.status == 204


async def test_org_owned_tables_denied_to_users(dv: RunningEmulator) -> None:
    user, _ = await dv.seed_user("Dan")
    reply = await dv.client.post("savedqueries", {"name": "x"}, headers={"MSCRMCallerID": user})
    assert reply.status == 403
    assert "prvCreateSavedQuery" in reply.message


async def test_unknown_or_bad_callers_are_rejected(dv: RunningEmulator) -> None:
    unknown = str(uuid.uuid4())
    reply = await dv.client.get("contacts", headers={"CallerObjectId": unknown})
    assert reply.status == 404
    assert unknown in reply.message
    reply = await dv.client.get("contacts", headers={"MSCRMCallerID": unknown})
    assert reply.status == 404
    assert reply.message == f"systemuser With Id = {unknown} Does Not Exist"
    bad = await dv.client.get("contacts", headers={"CallerObjectId": "not-a-guid"})
    assert bad.status == 400
    assert "CallerObjectId" in bad.message
    both = await dv.client.get(
        "contacts", headers={"CallerObjectId": unknown, "MSCRMCallerID": unknown}
    )
    assert both.status == 400


async def test_disabled_user_cannot_be_impersonated(dv: RunningEmulator) -> None:
    user, _ = await dv.seed_user("Eve")
    await dv.client.patch(f"systemusers({user})", {"isdisabled": True})
    reply = await dv.client.get("contacts", headers={"MSCRMCallerID": user})
    assert reply.status == 403


async def test_share_control_validation(dv: RunningEmulator) -> None:
    user, _ = await dv.seed_user("Finn")
    cid = await dv.client.create("contacts", {"lastname": "S"})
    bad_bodies: list[object] = [
        {},
        {"table": "contacts", "id": cid},
        {"table": "nosuch", "id": cid, "systemuserid": user},
        {"table": "contacts", "id": "x", "systemuserid": user},
        {"table": "contacts", "id": cid, "systemuserid": 5},
        [1, 2],
    ]
    for body in bad_bodies:
        reply = await dv.control("POST", "share", body)
        assert reply.status == 400, body
    missing = await dv.control(
        "POST", "share", {"table": "contact", "id": str(uuid.uuid4()), "systemuserid": user}
    )
    assert missing.status == 404


async def test_impersonating_the_app_user_keeps_its_rights(dv: RunningEmulator) -> None:
    app_user = (await dv.client.get("WhoAmI")).json["UserId"]
    reply = await dv.client.post("savedqueries", {"name": "x"}, headers={"MSCRMCallerID": app_user})
    assert reply.status == 204
