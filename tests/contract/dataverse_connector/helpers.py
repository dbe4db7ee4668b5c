"""Commands and reads shared by the connector's contract tests."""

from __future__ import annotations

import uuid
from typing import Any

from connectors.base import ChangeSource
from schemas.models import CommandAction, ItemChange, WriteCommand
from schemas.types import CrmTable, Kind

ORG = "org-test"


def command(
    kind: Kind,
    action: CommandAction,
    *,
    table: CrmTable | None = None,
    fields: dict[str, Any] | None = None,
    target_id: str | None = None,
    if_match: str | None = None,
    run_as: str | None = None,
    correlation_id: str | None = None,
    mailbox_id: str = "mbx-1",
) -> WriteCommand:
    return WriteCommand(
        command_id=uuid.uuid4().hex,
        mailbox_id=mailbox_id,
        org_id=ORG,
        target="crm",
        kind=kind,
        action=action,
        correlation_id=correlation_id or f"corr-{uuid.uuid4().hex}",
        caused_by="test",
        issued_at="2026-01-01T00:00:00Z",
        table=table,
        target_id=target_id,
        if_match=if_match,
        fields=fields or {},
        run_as=run_as,
    )


async def read_round(source: ChangeSource, cursor: str | None) -> tuple[list[ItemChange], str]:
    changes: list[ItemChange] = []
    final: str | None = None
    async for batch in source.read(cursor):
        changes.extend(batch.changes)
        if batch.cursor is not None:
            final = batch.cursor
    assert final is not None
    return changes, final
