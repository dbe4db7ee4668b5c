"""The writer and the change reader against the Dataverse emulator."""

from __future__ import annotations

from connectors.dataverse.ids import crm_row_id
from connectors.dataverse.reader import DataverseChangeSource
from connectors.dataverse.writer import DataverseWriter

from .fixtures import USER_A, USER_B, Emulator
from .helpers import ORG, command, read_round

ALICE = {"email": "alice@contoso.test", "name": None}
CAROL = {"email": "carol@example.test", "name": None}
DAVE = {"email": "dave@example.test", "name": None}


def appointment(n: int) -> dict[str, object]:
    return {
        "subject": f"Meeting {n}",
        "location": "Room 1",
        "scheduledstart": "2026-03-01T10:00:00Z",
        "scheduledend": "2026-03-01T11:00:00Z",
        "organizer": ALICE,
        "requiredattendees": [CAROL, DAVE],
        "optionalattendees": [],
    }


async def test_create_uses_the_deterministic_id_and_returns_the_version(dv: Emulator) -> None:
    writer = DataverseWriter(dv.client, org_id=ORG)
    cmd = command("contact", "create", fields={"firstname": "Ann", "lastname": "Lee"})
    (out,) = await writer.apply([cmd])
    assert out.status == "applied", out
    assert out.target_id == crm_row_id(ORG, cmd.correlation_id, "contact")
    assert out.version and out.version.isdigit()
    assert out.written == {"firstname": "Ann", "lastname": "Lee"}
    (again,) = await writer.apply([cmd])
    assert again.status == "applied" and again.target_id == out.target_id
    rows = await dv.client.get_json("contacts?$select=contactid")
    assert [r["contactid"] for r in rows["value"]] == [out.target_id]


async def test_appointment_with_parties_round_trips_through_the_reader(dv: Emulator) -> None:
    writer = DataverseWriter(dv.client, org_id=ORG)
    (out,) = await writer.apply(
        [command("appointment", "create", fields=appointment(1), run_as=USER_A)]
    )
    assert out.status == "applied", out
    source = DataverseChangeSource(dv.client, org_id=ORG, table="appointment", page_size=2)
    changes, cursor = await read_round(source, None)
    (change,) = changes
    assert change.op == "upsert" and change.item_id == out.target_id
    assert change.version == out.version
    assert change.change_id == f"crm:appointment:{out.target_id}:{out.version}"
    assert change.mailbox_id is None and change.origin == "full_sync"
    for name, value in appointment(1).items():
        assert change.projection[name] == value, name
    assert change.attributes["ownerid"] == USER_A
    assert change.attributes["ownerid_table"] == "systemuser"
    assert change.attributes["statecode"] == 3
    assert sorted(p["address"] for p in change.attributes["parties"]) == [
        "alice@contoso.test",
        "carol@example.test",
        "dave@example.test",
    ]
    quiet, cursor2 = await read_round(source, cursor)
    assert quiet == []
    assert cursor2


async def test_update_if_match_conflict_and_delete(dv: Emulator) -> None:
    writer = DataverseWriter(dv.client, org_id=ORG)
    (created,) = await writer.apply(
        [command("task", "create", fields={"subject": "Call back"}, run_as=USER_A)]
    )
    assert created.version
    upd = command(
        "task",
        "update",
        fields={"subject": "Call back today"},
        target_id=created.target_id,
        if_match=created.version,
        run_as=USER_A,
    )
    stale = command(
        "task",
        "update",
        fields={"subject": "stale"},
        target_id=created.target_id,
        if_match=created.version,
        run_as=USER_A,
    )
    other = command("contact", "create", fields={"lastname": "After"}, run_as=USER_A)
    out_upd, out_stale, out_other = await writer.apply([upd, stale, other])
    assert out_upd.status == "applied" and out_upd.version != created.version
    assert out_stale.status == "conflict" and out_stale.error_code == "0x80060882"
    assert out_other.status == "applied"
    row = await dv.client.get_json(f"tasks({created.target_id})?$select=subject")
    assert row["subject"] == "Call back today"
    source = DataverseChangeSource(dv.client, org_id=ORG, table="task")
    _, cursor = await read_round(source, None)
    missing = command(
        "task", "update", fields={"subject": "x"}, target_id=crm_row_id(ORG, "nope", "task")
    )
    delete = command("task", "delete", target_id=created.target_id, run_as=USER_A)
    out_missing, out_delete = await writer.apply([missing, delete])
    assert out_missing.status == "not_found"
    assert out_delete.status == "applied"
    changes, _ = await read_round(source, cursor)
    assert [(c.op, c.item_id, c.change_id) for c in changes] == [
        ("delete", created.target_id, f"crm:task:{created.target_id}:deleted")
    ]
    (again,) = await writer.apply([delete])
    assert again.status == "not_found"


async def test_impersonated_write_to_a_row_of_another_user_is_forbidden(dv: Emulator) -> None:
    writer = DataverseWriter(dv.client, org_id=ORG)
    (mine,) = await writer.apply(
        [command("contact", "create", fields={"lastname": "Owned"}, run_as=USER_A)]
    )
    steal = command(
        "contact", "update", fields={"lastname": "Hacked"}, target_id=mine.target_id, run_as=USER_B
    )
    drop = command("contact", "delete", target_id=mine.target_id, run_as=USER_B)
    out_steal, out_drop = await writer.apply([steal, drop])
    assert out_steal.status == "forbidden" and out_drop.status == "forbidden"
    assert out_steal.error_code == "0x80040220"
    assert "prvWriteContact" in (out_steal.error_message or "")
    row = await dv.client.get_json(f"contacts({mine.target_id})?$select=lastname,versionnumber")
    assert row["lastname"] == "Owned" and str(row["versionnumber"]) == mine.version


async def test_email_with_parties_regarding_and_message_id(dv: Emulator) -> None:
    writer = DataverseWriter(dv.client, org_id=ORG)
    (contact,) = await writer.apply(
        [command("contact", "create", fields={"lastname": "Reg"}, run_as=USER_A)]
    )
    assert contact.target_id
    fields = {
        "subject": "Re: offer",
        "description": "<p>Hello</p>",
        "directioncode": False,
        "messageid": "<abc@example.test>",
        "from": CAROL,
        "to": [ALICE],
        "cc": [],
        "bcc": [],
        "regardingobjectid": {"table": "contact", "id": contact.target_id},
    }
    (out,) = await writer.apply([command("email", "create", fields=fields, run_as=USER_A)])
    assert out.status == "applied", out
    source = DataverseChangeSource(dv.client, org_id=ORG, table="email")
    (change,), _ = await read_round(source, None)
    for name in ("subject", "directioncode", "messageid", "from", "to"):
        assert change.projection[name] == fields[name], name
    assert change.attributes["regardingobjectid"] == contact.target_id
    assert change.attributes["pending_send"] is False
    mark = command(
        "email",
        "mark_sent",
        target_id=out.target_id,
        fields={"messageid": "<sent@example.test>"},
        run_as=USER_A,
    )
    (sent,) = await writer.apply([mark])
    assert sent.status == "applied" and sent.version != out.version
    assert sent.written == {"messageid": "<sent@example.test>"}
    row = await dv.client.get_json(
        f"emails({out.target_id})?$select=statuscode,statecode,messageid"
    )
    assert (row["statecode"], row["statuscode"]) == (1, 3)
    assert row["messageid"] == "<sent@example.test>"
    bad = command("email", "mark_sent", target_id=out.target_id, fields={"messageid": 7})
    (refused,) = await writer.apply([bad])
    assert refused.status == "failed" and "messageid" in (refused.error_message or "")


async def test_phonecall_and_bad_commands(dv: Emulator) -> None:
    writer = DataverseWriter(dv.client, org_id=ORG)
    ok = command("task", "create", table="phonecall", fields={"subject": "Ring"}, run_as=USER_A)
    wrong_table = command("contact", "create", table="task", fields={"lastname": "x"})
    bad_field = command("task", "create", fields={"nope": 1})
    no_target = command("task", "update", fields={"subject": "x"})
    outlook_only = command("task", "send", target_id=crm_row_id(ORG, "c", "task"))
    outs = await writer.apply([ok, wrong_table, bad_field, no_target, outlook_only])
    assert [o.status for o in outs] == ["applied", "failed", "failed", "failed", "skipped"]
    assert outs[1].error_code == "invalid_command" and "not a contact table" in (
        outs[1].error_message or ""
    )
    assert "nope" in (outs[2].error_message or "")
    rows = await dv.client.get_json("phonecalls?$select=subject")
    assert [r["subject"] for r in rows["value"]] == ["Ring"]
