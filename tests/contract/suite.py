"""One contract every connector honours. A backend subclasses ``ConnectorContract`` and
provides the ``backend`` fixture; the same tests then run against the in-memory side, the
Graph connector over the Graph emulator, and the Dataverse connector over its emulator."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import pytest

from connectors.base import ChangeSource, CommandSink
from schemas.models import CommandAction, ItemChange, WriteCommand, WriteOutcome
from schemas.types import CrmTable, Kind, Projection, Side


class ContractBackend(Protocol):
    """What a connector under contract offers the suite."""

    side: Side
    mailbox_id: str
    org_id: str
    kinds: Sequence[Kind]

    def source(self, kind: Kind) -> ChangeSource:
        """A reader of ``kind`` items of this side."""
        ...

    def sink(self) -> CommandSink:
        """A writer of this side."""
        ...

    def table(self, kind: Kind) -> CrmTable | None:
        """The CRM table of ``kind`` (None on the Outlook side)."""
        ...

    def sample(self, kind: Kind, n: int) -> Projection:
        """A valid projection of ``kind``, distinct for each ``n``."""
        ...

    async def user_edit(self, kind: Kind, item_id: str, n: int) -> None:
        """Change the item out of band, as its user would (a new version)."""
        ...

    async def user_delete(self, kind: Kind, item_id: str) -> None:
        """Delete the item out of band."""
        ...


@dataclass(frozen=True, slots=True)
class _Read:
    changes: list[ItemChange]
    cursor: str


async def read_all(source: ChangeSource, cursor: str | None) -> _Read:
    """Read every page from ``cursor``; return the changes and the final cursor."""
    changes: list[ItemChange] = []
    final: str | None = None
    async for batch in source.read(cursor):
        changes.extend(batch.changes)
        if batch.cursor is not None:
            final = batch.cursor
    assert final is not None, "a read round must end with a cursor"
    return _Read(changes, final)


class ConnectorContract:
    """The contract tests. Subclasses define the ``backend`` fixture."""

    @pytest.fixture
    def backend(self) -> ContractBackend:
        raise NotImplementedError

    def command(
        self,
        b: ContractBackend,
        kind: Kind,
        action: CommandAction,
        *,
        correlation_id: str,
        fields: Projection | None = None,
        target_id: str | None = None,
        if_match: str | None = None,
    ) -> WriteCommand:
        return WriteCommand(
            command_id=uuid.uuid4().hex,
            mailbox_id=b.mailbox_id,
            org_id=b.org_id,
            target=b.side,
            kind=kind,
            action=action,
            correlation_id=correlation_id,
            caused_by="contract-test",
            issued_at="2026-01-01T00:00:00Z",
            table=b.table(kind),
            target_id=target_id,
            if_match=if_match,
            fields=fields or {},
        )

    async def create(self, b: ContractBackend, kind: Kind, n: int) -> WriteOutcome:
        cid = f"contract-{uuid.uuid4().hex}"
        cmd = self.command(b, kind, "create", correlation_id=cid, fields=b.sample(kind, n))
        (outcome,) = await b.sink().apply([cmd])
        assert outcome.status == "applied", outcome
        assert outcome.target_id
        return outcome

    async def test_created_item_is_read_back_with_its_fields(
        self, backend: ContractBackend
    ) -> None:
        for kind in backend.kinds:
            outcome = await self.create(backend, kind, 1)
            read = await read_all(backend.source(kind), None)
            mine = [c for c in read.changes if c.item_id == outcome.target_id]
            assert len(mine) == 1, kind
            assert mine[0].op == "upsert"
            assert mine[0].correlation_id == outcome.correlation_id
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
        assert sum(1 for c in read.changes if c.correlation_id == cid) == 1

    async def test_resume_from_cursor_yields_only_later_changes(
        self, backend: ContractBackend
    ) -> None:
        kind = backend.kinds[0]
        a = await self.create(backend, kind, 3)
        b = await self.create(backend, kind, 4)
        first = await read_all(backend.source(kind), None)
        quiet = await read_all(backend.source(kind), first.cursor)
        assert [c for c in quiet.changes if c.item_id in (a.target_id, b.target_id)] == []
        assert b.target_id
        await backend.user_edit(kind, b.target_id, 5)
        later = await read_all(backend.source(kind), quiet.cursor)
        ids = [c.item_id for c in later.changes]
        assert b.target_id in ids
        assert a.target_id not in ids
        edited = next(c for c in later.changes if c.item_id == b.target_id)
        assert edited.version != b.version

    async def test_update_with_current_version_applies(self, backend: ContractBackend) -> None:
        kind = backend.kinds[0]
        created = await self.create(backend, kind, 6)
        fields = backend.sample(kind, 7)
        cmd = self.command(
            backend,
            kind,
            "update",
            correlation_id=created.correlation_id,
            fields=fields,
            target_id=created.target_id,
            if_match=created.version,
        )
        (outcome,) = await backend.sink().apply([cmd])
        assert outcome.status == "applied"
        assert outcome.version != created.version
        read = await read_all(backend.source(kind), None)
        item = next(c for c in read.changes if c.item_id == created.target_id)
        for name, value in fields.items():
            assert item.projection.get(name) == value, name

    async def test_update_with_stale_version_is_a_conflict(self, backend: ContractBackend) -> None:
        kind = backend.kinds[0]
        created = await self.create(backend, kind, 8)
        assert created.target_id
        await backend.user_edit(kind, created.target_id, 9)
        cmd = self.command(
            backend,
            kind,
            "update",
            correlation_id=created.correlation_id,
            fields=backend.sample(kind, 10),
            target_id=created.target_id,
            if_match=created.version,
        )
        (outcome,) = await backend.sink().apply([cmd])
        assert outcome.status == "conflict"
        read = await read_all(backend.source(kind), None)
        item = next(c for c in read.changes if c.item_id == created.target_id)
        for name, value in backend.sample(kind, 9).items():
            assert item.projection.get(name) == value, name

    async def test_user_delete_is_read_as_delete(self, backend: ContractBackend) -> None:
        kind = backend.kinds[0]
        created = await self.create(backend, kind, 11)
        assert created.target_id
        before = await read_all(backend.source(kind), None)
        await backend.user_delete(kind, created.target_id)
        after = await read_all(backend.source(kind), before.cursor)
        deletes = [c for c in after.changes if c.item_id == created.target_id]
        assert [c.op for c in deletes] == ["delete"]

    async def test_delete_command_removes_the_item(self, backend: ContractBackend) -> None:
        kind = backend.kinds[0]
        created = await self.create(backend, kind, 12)
        cmd = self.command(
            backend,
            kind,
            "delete",
            correlation_id=created.correlation_id,
            target_id=created.target_id,
        )
        (outcome,) = await backend.sink().apply([cmd])
        assert outcome.status == "applied"
        read = await read_all(backend.source(kind), None)
        assert created.target_id not in [c.item_id for c in read.changes if c.op == "upsert"]
        (again,) = await backend.sink().apply([cmd])
        assert again.status in ("applied", "not_found")

    async def test_outcomes_come_back_in_command_order(self, backend: ContractBackend) -> None:
        kind = backend.kinds[0]
        cmds = [
            self.command(
                backend,
                kind,
                "create",
                correlation_id=f"contract-{uuid.uuid4().hex}",
                fields=backend.sample(kind, 20 + i),
            )
            for i in range(3)
        ]
        outcomes = await backend.sink().apply(cmds)
        assert [o.command_id for o in outcomes] == [c.command_id for c in cmds]
        assert len({o.target_id for o in outcomes}) == 3
