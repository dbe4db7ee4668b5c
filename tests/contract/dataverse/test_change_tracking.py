"""Change tracking: deltaLink, new/updated rows, $deletedEntity, restrictions, expiry."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest

from .conftest import MakeEmulator
from .odata import RunningEmulator

TRACK = {"Prefer": "odata.track-changes"}


async def _initial(dv: RunningEmulator, query: str = "contacts?$select=lastname") -> dict[str, Any]:
    reply = await dv.client.get(query, headers=TRACK)
    assert reply.status == 200, reply.text
    assert "odata.track-changes" in reply.headers["Preference-Applied"]
    return dict(reply.json)


async def test_initial_sync_ends_with_delta_link(dv: RunningEmulator) -> None:
    await dv.client.create("contacts", {"lastname": "A"})
    body = await _initial(dv)
    assert [r["lastname"] for r in body["value"]] == ["A"]
    link = str(body["@odata.deltaLink"])
    assert link.startswith(f"{dv.client.root}contacts?$select=lastname&$deltatoken=")
    token = unquote(link.split("$deltatoken=")[1])
    assert re.fullmatch(r"\d+!\d\d/\d\d/\d{4} \d\d:\d\d:\d\d", token)
    assert "%21" in link and "%2F" in link


async def test_delta_returns_changes_then_deletes(dv: RunningEmulator) -> None:
    keep = await dv.client.create("contacts", {"lastname": "Keep"})
    edit = await dv.client.create("contacts", {"lastname": "Edit"})
    gone = await dv.client.create("contacts", {"lastname": "Gone"})
    link = str((await _initial(dv))["@odata.deltaLink"])
    empty = await dv.client.get(link)
    assert empty.json["value"] == []
    await dv.client.patch(f"contacts({edit})", {"lastname": "Edited"})
    new = await dv.client.create("contacts", {"lastname": "New"})
    await dv.client.delete(f"contacts({gone})")
    reply = await dv.client.get(link)
    assert reply.status == 200
    body = reply.json
    assert body["@odata.context"] == f"{dv.client.root}$metadata#contacts(lastname)/$delta"
    values = body["value"]
    assert [v.get("lastname") for v in values[:2]] == ["Edited", "New"]
    assert values[2] == {
        "@odata.context": f"{dv.client.root}$metadata#contacts/$deletedEntity",
        "id": gone,
        "reason": "deleted",
    }
    assert len(values) == 3
    assert {v.get("contactid") for v in values[:2]} == {edit, new}
    assert keep not in str(values)
    following = await dv.client.get(body["@odata.deltaLink"])
    assert following.json["value"] == []


async def test_delta_pages_with_maxpagesize(dv: RunningEmulator) -> None:
    link = str((await _initial(dv))["@odata.deltaLink"])
    ids = [await dv.client.create("contacts", {"lastname": f"N{i}"}) for i in range(5)]
    await dv.client.delete(f"contacts({ids[0]})")
    await dv.client.delete(f"contacts({ids[1]})")
    seen: list[dict[str, object]] = []
    url = link
    while True:
        reply = await dv.client.get(
            url, headers={"Prefer": "odata.track-changes,odata.maxpagesize=2"}
        )
        assert reply.status == 200, reply.text
        seen += reply.json["value"]
        if "@odata.nextLink" in reply.json:
            url = reply.json["@odata.nextLink"]
            continue
        assert "@odata.deltaLink" in reply.json
        break
    upserts = [v["contactid"] for v in seen if "reason" not in v]
    deletes = [v["id"] for v in seen if "reason" in v]
    assert upserts == ids[2:]
    assert deletes == ids[:2]


async def test_initial_sync_pages(dv: RunningEmulator) -> None:
    ids = sorted([await dv.client.create("contacts", {"lastname": f"I{i}"}) for i in range(5)])
    url = "contacts?$select=lastname"
    got: list[str] = []
    while True:
        reply = await dv.client.get(
            url, headers={"Prefer": "odata.track-changes,odata.maxpagesize=2"}
        )
        got += [r["contactid"] for r in reply.json["value"]]
        if "@odata.nextLink" not in reply.json:
            assert "@odata.deltaLink" in reply.json
            break
        assert "@odata.deltaLink" not in reply.json
        url = reply.json["@odata.nextLink"]
    assert got == ids


async def test_recreated_row_is_not_reported_deleted(dv: RunningEmulator) -> None:
    cid = await dv.client.create("contacts", {"lastname": "Phoenix"})
    link = str((await _initial(dv))["@odata.deltaLink"])
    await dv.client.delete(f"contacts({cid})")
    await dv.client.patch(f"contacts({cid})", {"lastname": "Phoenix2"})
    values = (await dv.client.get(link)).json["value"]
    assert [v.get("lastname") for v in values] == ["Phoenix2"]


@pytest.mark.parametrize(
    "query",
    [
        "contacts?$filter=lastname eq 'x'",
        "contacts?$orderby=lastname",
        "contacts?$expand=parentcustomerid_account",
        "contacts?$top=1",
    ],
)
async def test_query_options_with_change_tracking_are_400(dv: RunningEmulator, query: str) -> None:
    reply = await dv.client.get(query, headers=TRACK)
    assert reply.status == 400
    assert "change tracking" in reply.message


async def test_query_options_on_delta_link_are_400(dv: RunningEmulator) -> None:
    link = str((await _initial(dv))["@odata.deltaLink"])
    reply = await dv.client.get(link + "&$filter=lastname eq 'x'")
    assert reply.status == 400


async def test_garbage_delta_token_is_400(dv: RunningEmulator) -> None:
    reply = await dv.client.get("contacts?$deltatoken=nonsense")
    assert reply.status == 400
    assert "$deltatoken" in reply.message


async def test_expire_tokens_control(dv: RunningEmulator) -> None:
    link = str((await _initial(dv))["@odata.deltaLink"])
    assert (await dv.client.get(link)).status == 200
    assert (await dv.control("POST", "expire-tokens")).status == 200
    reply = await dv.client.get(link)
    assert reply.status == 400
    assert reply.code == "0x80044352"
    assert reply.message == (
        "Version stamp associated with the client has expired. Please perform a full sync."
    )
    fresh = str((await _initial(dv))["@odata.deltaLink"])
    assert (await dv.client.get(fresh)).status == 200


async def test_token_older_than_org_window_expires(make_emulator: MakeEmulator) -> None:
    now = [datetime(2025, 11, 8, 10, 0, tzinfo=UTC)]
    dv = await make_emulator(clock=lambda: now[0])
    link = str((await _initial(dv))["@odata.deltaLink"])
    assert "11%2F08%2F2025" in link
    now[0] += timedelta(days=6)
    assert (await dv.client.get(link)).status == 200
    org = (await dv.client.get("organizations")).json["value"][0]["organizationid"]
    await dv.client.patch(f"organizations({org})", {"expirechangetrackingindays": 3})
    reply = await dv.client.get(link)
    assert reply.status == 400
    assert reply.code == "0x80044352"


async def test_delta_on_activity_table_with_parties_select(dv: RunningEmulator) -> None:
    body = await _initial(dv, "appointments?$select=subject,scheduledstart")
    await dv.client.create(
        "appointments", {"subject": "Standup", "scheduledstart": "2025-11-10T09:00:00+01:00"}
    )
    values = (await dv.client.get(str(body["@odata.deltaLink"]))).json["value"]
    assert values[0]["subject"] == "Standup"
    assert values[0]["scheduledstart"] == "2025-11-10T08:00:00Z"
