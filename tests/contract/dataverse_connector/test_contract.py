"""The Dataverse reader and writer honour the shared connector contract (over the emulator).

The CRM side keeps no correlation id on its rows: a create's row id is derived from it
(uuid5), so where the suite checks correlation ids this subclass checks the derived row id.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from connectors.base import ChangeSource, CommandSink
from connectors.dataverse.ids import crm_row_id
from connectors.dataverse.mapping import entity_set
from connectors.dataverse.reader import DataverseChangeSource
from connectors.dataverse.writer import DataverseWriter
from schemas.types import CrmTable, Kind, Projection, Side
from tests.contract.suite import ConnectorContract, ContractBackend, read_all

from .fixtures import Emulator
from .helpers import ORG


@dataclass
class DataverseBackend:
    emulator: Emulator
    side: Side = "crm"
    mailbox_id: str = "mbx-a"
    org_id: str = ORG
    kinds: Sequence[Kind] = ("contact", "task")

    def source(self, kind: Kind) -> ChangeSource:
        return DataverseChangeSource(
            self.emulator.client, org_id=ORG, table=self.crm_table(kind), page_size=2
        )

    def sink(self) -> CommandSink:
        return DataverseWriter(self.emulator.client, org_id=ORG)

    def crm_table(self, kind: Kind) -> CrmTable:
        return "contact" if kind == "contact" else "task"

    def table(self, kind: Kind) -> CrmTable | None:
        return self.crm_table(kind)

    def sample(self, kind: Kind, n: int) -> Projection:
        if kind == "contact":
            return {"firstname": f"First{n}", "lastname": f"Last{n}"}
        return {"subject": f"Task {n}"}

    async def user_edit(self, kind: Kind, item_id: str, n: int) -> None:
        url = f"{entity_set(self.crm_table(kind))}({item_id})"
        await self.emulator.client.request(
            "PATCH", url, json=self.sample(kind, n), headers={"If-Match": "*"}
        )

    async def user_delete(self, kind: Kind, item_id: str) -> None:
        url = f"{entity_set(self.crm_table(kind))}({item_id})"
        await self.emulator.client.request("DELETE", url)


class TestDataverseContract(ConnectorContract):
    @pytest.fixture
    def backend(self, dv: Emulator) -> DataverseBackend:
        return DataverseBackend(dv)

    async def test_created_item_is_read_back_with_its_fields(
        self, backend: ContractBackend
    ) -> None:
        for kind in backend.kinds:
            outcome = await self.create(backend, kind, 1)
            table = backend.table(kind)
            assert table is not None
            assert outcome.target_id == crm_row_id(ORG, outcome.correlation_id, table)
            read = await read_all(backend.source(kind), None)
            mine = [c for c in read.changes if c.item_id == outcome.target_id]
            assert len(mine) == 1, kind
            assert mine[0].op == "upsert" and mine[0].version == outcome.version
            for name, value in backend.sample(kind, 1).items():
                assert mine[0].projection.get(name) == value, (kind, name)

    async def test_create_is_idempotent_by_correlation_id(self, backend: ContractBackend) -> None:
        kind = backend.kinds[0]
        cid = f"contract-{uuid.uuid4().hex}"
        fields = backend.sample(kind, 2)
        first = self.command(backend, kind, "create", correlation_id=cid, fields=fields)
        again = self.command(backend, kind, "create", correlation_id=cid, fields=fields)
        out1, out2 = await backend.sink().apply([first, again])
        assert out1.status == out2.status == "applied"
        assert out1.target_id == out2.target_id
        read = await read_all(backend.source(kind), None)
        assert sum(1 for c in read.changes if c.item_id == out1.target_id) == 1
