"""Appointment parties written to the Dataverse emulator are bound to the rows owning their
addresses (systemuser, contact, account, lead), and stay address-only when nobody owns them."""

from __future__ import annotations

from typing import Any

from connectors.dataverse.writer import DataverseWriter
from pipeline.crm_directory import CrmDirectory
from pipeline.parties import DirectoryParties, ResolvingSink, party_addresses
from tests.contract.dataverse_connector.fixtures import USER_A, Emulator
from tests.contract.dataverse_connector.helpers import ORG, command


async def _contact(dv: Emulator, last: str, email: str) -> str:
    resp = await dv.client.request(
        "POST",
        "contacts",
        json={"lastname": last, "emailaddress1": email},
        headers={"Prefer": "return=representation"},
    )
    return str(resp.json()["contactid"])


def _meeting() -> dict[str, Any]:
    return {
        "subject": "Kick-off",
        "scheduledstart": "2026-03-01T10:00:00Z",
        "scheduledend": "2026-03-01T11:00:00Z",
        "organizer": {"email": "Alice@Contoso.test", "name": None},
        "requiredattendees": [
            {"email": "cole@x.test", "name": "Cole"},
            {"email": "stranger@x.test", "name": None},
        ],
        "optionalattendees": [],
    }


async def test_attendees_are_bound_to_their_rows(dv: Emulator) -> None:
    cole = await _contact(dv, "Cole", "cole@x.test")
    parties = DirectoryParties(CrmDirectory(dv.client))
    sink = ResolvingSink(DataverseWriter(dv.client, org_id=ORG, resolver=parties), parties)
    (out,) = await sink.apply([command("appointment", "create", fields=_meeting(), run_as=USER_A)])
    assert out.status == "applied", out
    rows = await dv.client.get_json(
        f"appointments({out.target_id})?$expand=appointment_activity_parties"
    )
    bound = {
        p["addressused"]: (p.get("_partyid_value"), p["participationtypemask"])
        for p in rows["appointment_activity_parties"]
    }
    assert bound == {
        "alice@contoso.test": (USER_A, 7),
        "cole@x.test": (cole, 5),
        "stranger@x.test": (None, 5),
    }


def test_only_crm_commands_with_party_fields_are_asked_about() -> None:
    meeting = command("appointment", "create", fields=_meeting())
    task = command("task", "create", fields={"subject": "x"})
    assert sorted(party_addresses([meeting, task])) == [
        "Alice@Contoso.test",
        "cole@x.test",
        "stranger@x.test",
    ]
    garbage = command("appointment", "create", fields={"requiredattendees": ["not-a-party", 3]})
    assert list(party_addresses([garbage])) == []
