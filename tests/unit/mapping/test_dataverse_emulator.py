"""Write bodies from ``projection_to_row`` are accepted by the Dataverse emulator (a real HTTP
server on 127.0.0.1) and the rows it returns map back to the same projection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from connectors.dataverse.mapping import (
    entity_set,
    projection_to_row,
    row_to_projection,
)
from connectors.graph.mapping import graph_to_projection
from emulators.dataverse import EmulatorConfig, create_app
from schemas.types import CrmTable, Projection
from tests.unit.mapping.strategies import without_names
from tests.unit.mapping.test_graph_mapping import CONTACT, EVENT, MESSAGE, TODO_TASK

PREFER = 'return=representation,odata.include-annotations="*"'


class Api:
    """A minimal Web API client for the test."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.headers = {"Authorization": "Bearer test", "Prefer": PREFER}

    async def create(self, table: str, body: dict[str, Any]) -> str:
        async with self.session.post(
            f"{self.base}/{entity_set(table)}", json=body, headers=self.headers
        ) as resp:
            assert resp.status == 201, await resp.text()
            row = await resp.json()
        key = f"{table}id" if table in ("account", "contact") else "activityid"
        return str(row[key])

    async def update(self, table: CrmTable, row_id: str, body: dict[str, Any]) -> None:
        async with self.session.patch(
            f"{self.base}/{entity_set(table)}({row_id})",
            json=body,
            headers={**self.headers, "If-Match": "*"},
        ) as resp:
            assert resp.status in (200, 204), await resp.text()

    async def read(self, table: CrmTable, row_id: str) -> dict[str, Any]:
        query = "" if table == "contact" else f"?$expand={table}_activity_parties"
        async with self.session.get(
            f"{self.base}/{entity_set(table)}({row_id}){query}", headers=self.headers
        ) as resp:
            assert resp.status == 200, await resp.text()
            row: dict[str, Any] = await resp.json()
        return row


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    server = TestServer(create_app(EmulatorConfig()), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield Api(session, f"http://127.0.0.1:{server.port}/api/data/v9.2")
    await server.close()


class _Directory:
    def __init__(self) -> None:
        self.known: dict[str, tuple[str, str]] = {}

    def resolve(self, email: str) -> tuple[str, str] | None:
        return self.known.get(email)


async def _round_trip(
    api: Api, table: CrmTable, p: Projection, directory: Any = None
) -> Projection:
    payload = projection_to_row(table, p, resolve=directory)
    row_id = await api.create(table, payload.body)
    return row_to_projection(
        table, await api.read(table, row_id), groups=frozenset({"percentcomplete"})
    )


async def test_contact_with_parent_account(api: Api) -> None:
    account = await api.create("account", {"name": "Contoso"})
    p = graph_to_projection("contact", CONTACT)
    p["parentcustomerid"] = {"table": "account", "id": account}
    assert await _round_trip(api, "contact", p) == p


async def test_appointment_with_resolved_and_unresolved_parties(api: Api) -> None:
    contact = await api.create("contact", {"firstname": "Dana", "lastname": "Swope"})
    directory = _Directory()
    directory.known["dana@contoso.example"] = ("contact", contact)
    p = graph_to_projection("appointment", EVENT)
    p["regardingobjectid"] = {"table": "contact", "id": contact}
    back = await _round_trip(api, "appointment", p, directory)
    assert back["optionalattendees"] == [{"email": "dana@contoso.example", "name": "Dana Swope"}]
    assert back["instancetypecode"] is None  # read-only on the CRM side: not written
    back["instancetypecode"] = p["instancetypecode"]
    assert without_names(back) == without_names(p)


async def test_recurring_master(api: Api) -> None:
    item = {
        **EVENT,
        "type": "seriesMaster",
        "recurrence": {
            "pattern": {
                "type": "relativeMonthly",
                "interval": 1,
                "daysOfWeek": ["tuesday"],
                "index": "second",
            },
            "range": {"type": "numbered", "startDate": "2017-04-15", "numberOfOccurrences": 6},
        },
    }
    p = graph_to_projection("appointment", item)
    p["regardingobjectid"] = None
    assert without_names(await _round_trip(api, "recurringappointmentmaster", p)) == without_names(
        p
    )


async def test_tasks_and_status_updates(api: Api) -> None:
    p = graph_to_projection("task", TODO_TASK, groups=frozenset({"percentcomplete"}))
    p["regardingobjectid"] = None
    assert await _round_trip(api, "task", p) == p
    row_id = await api.create("task", projection_to_row("task", p).body)
    canceled = {**p, "statecode": 2, "statuscode": 6}
    await api.update(
        "task", row_id, projection_to_row("task", canceled, fields=["statuscode"]).body
    )
    back = row_to_projection("task", await api.read("task", row_id))
    assert (back["statecode"], back["statuscode"]) == (2, 6)


async def test_phonecall(api: Api) -> None:
    p = graph_to_projection("task", {**TODO_TASK, "status": "notStarted", "extensions": []})
    back = await _round_trip(api, "phonecall", p)
    assert back.pop("percentcomplete") is None  # phone calls have no percentcomplete
    assert back == p


async def test_email(api: Api) -> None:
    p = graph_to_projection("email", MESSAGE, mailbox="adelev@contoso.example")
    p.pop("conversationid")
    assert without_names(await _round_trip(api, "email", p)) == without_names(p)
