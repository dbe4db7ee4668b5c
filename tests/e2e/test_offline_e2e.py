"""Offline, as the old add-in promised: one side goes away for a while (a proxy between the
pipeline and its emulator resets every connection), the user keeps working on the other side,
the side comes back, and every queued change is applied in order, none lost, none twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.e2e.netcut import NetCut
from tests.e2e.world import World, by_surname, crm_contact_in_outlook, eventually, open_world

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

OFFLINE_S = 8.0
EDITS = 6


@pytest.fixture
async def offline_world(
    kafka_bootstrap: str, tmp_path: Path
) -> AsyncIterator[tuple[World, dict[str, NetCut]]]:
    """A world whose pipeline reaches each emulator through its own :class:`NetCut`."""
    cuts: dict[str, NetCut] = {}

    def through(side: str) -> Callable[[str], Awaitable[str]]:
        async def map_url(url: str) -> str:
            cuts[side] = NetCut(url)
            return await cuts[side].start()

        return map_url

    try:
        async with open_world(
            kafka_bootstrap,
            tmp_path,
            graph_api=through("graph"),
            dataverse_api=through("dataverse"),
        ) as w:
            yield w, cuts
    finally:
        for cut in cuts.values():
            await cut.stop()


async def test_crm_offline_then_outlook_offline_every_change_arrives_once(
    offline_world: tuple[World, dict[str, NetCut]],
) -> None:
    w, cuts = offline_world
    async with w.pipeline():
        await _crm_goes_offline(w, cuts["dataverse"])
        await _outlook_goes_offline(w, cuts["graph"])


async def _crm_goes_offline(w: World, cut: NetCut) -> None:
    tag = uuid.uuid4().hex[:6]
    a_row, a, _ = await crm_contact_in_outlook(w, "Ada", f"Alpha{tag}", "a@x.test", 90)
    c_row, _, _ = await crm_contact_in_outlook(w, "Cy", f"Gamma{tag}", "c@x.test", 30)

    cut.cut()
    # Outlook edits queue up for the CRM; CRM edits wait for the CRM reader to come back
    for n in range(1, EDITS + 1):
        resp = await w.outlook("PATCH", f"contacts/{a['id']}", {"givenName": f"Ada v{n}"})
        assert resp.status_code == 200, resp.text
        await asyncio.sleep(OFFLINE_S / EDITS)
    resp = await w.crm("PATCH", f"contacts({c_row})", {"jobtitle": "Offline CRM edit"})
    assert resp.status_code in (200, 204), resp.text
    assert (await w.crm_contact(a_row))["firstname"] == "Ada", "a write got through the cut"
    assert cut.refused > 0, "the pipeline did not even try the CRM while it was offline"

    cut.restore()

    async def caught_up() -> bool | None:
        row = await w.crm_contact(a_row)
        c = by_surname(await w.outlook_contacts(), f"Gamma{tag}")
        done = row["firstname"] == f"Ada v{EDITS}" and [x.get("jobTitle") for x in c] == [
            "Offline CRM edit"
        ]
        return True if done else None

    _, took = await eventually(caught_up, 90, "changes made while the CRM was offline")
    await _settled(w, [f"Alpha{tag}", f"Gamma{tag}"])
    assert (await w.crm_contact(a_row))["firstname"] == f"Ada v{EDITS}"
    print(f"\nCRM back: caught up in {took:.2f}s")


async def _outlook_goes_offline(w: World, cut: NetCut) -> None:
    tag = uuid.uuid4().hex[:6]
    b_row, b, _ = await crm_contact_in_outlook(w, "Bo", f"Beta{tag}", "b@x.test", 30)
    d_row, _, _ = await crm_contact_in_outlook(w, "Di", f"Delta{tag}", "d@x.test", 30)

    cut.cut()
    for n in range(1, EDITS + 1):
        resp = await w.crm("PATCH", f"contacts({b_row})", {"jobtitle": f"Title v{n}"})
        assert resp.status_code in (200, 204), resp.text
        await asyncio.sleep(OFFLINE_S / EDITS)
    created = await w.crm(
        "POST", "contacts", {"firstname": "Eve", "lastname": f"Epsilon{tag}", "emailaddress1": ""}
    )
    assert created.status_code in (200, 201), created.text
    deleted = await w.crm("DELETE", f"contacts({d_row})")
    assert deleted.status_code == 204, deleted.text
    resp = await w.outlook("PATCH", f"contacts/{b['id']}", {"givenName": "Bob"})
    assert resp.status_code == 200, resp.text
    assert not by_surname(await w.outlook_contacts(), f"Epsilon{tag}"), "a write got through"
    assert cut.refused > 0, "the pipeline did not even try Graph while it was offline"

    cut.restore()

    async def caught_up() -> bool | None:
        mine = await w.outlook_contacts()
        row = await w.crm_contact(b_row)
        (bo,) = by_surname(mine, f"Beta{tag}")
        done = (
            bo.get("jobTitle") == f"Title v{EDITS}"
            and row["firstname"] == "Bob"
            and len(by_surname(mine, f"Epsilon{tag}")) == 1
            and not by_surname(mine, f"Delta{tag}")
        )
        return True if done else None

    _, took = await eventually(caught_up, 90, "changes made while Outlook was offline")
    await _settled(w, [f"Beta{tag}", f"Epsilon{tag}"])
    print(f"Outlook back: caught up in {took:.2f}s")


async def _settled(w: World, surnames: list[str]) -> None:
    """Nothing more happens: one copy each side, and no echo keeps rewriting them."""
    before = await _versions(w, surnames)
    await asyncio.sleep(3)
    assert await _versions(w, surnames) == before


async def _versions(w: World, surnames: list[str]) -> dict[str, tuple[str, str]]:
    mine = await w.outlook_contacts()
    rows = await w.crm_contacts()
    seen: dict[str, tuple[str, str]] = {}
    for surname in surnames:
        outlook = by_surname(mine, surname)
        crm = [r for r in rows if r.get("lastname") == surname]
        assert len(outlook) == 1, f"{surname}: {len(outlook)} Outlook copies"
        assert len(crm) == 1, f"{surname}: {len(crm)} CRM rows"
        seen[surname] = (str(outlook[0]["changeKey"]), str(crm[0]["versionnumber"]))
    return seen
