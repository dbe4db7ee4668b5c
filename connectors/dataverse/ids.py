"""Deterministic Dataverse row ids and change ids."""

from __future__ import annotations

import uuid
from typing import Final

#: Namespace of every Dynasync-chosen Dataverse row id.
CRM_ID_NAMESPACE: Final = uuid.UUID("6f1c1d2e-5b0a-5f4e-9a57-64796e617379")


def crm_row_id(org_id: str, correlation_id: str, table: str) -> str:
    """The id a create of ``correlation_id`` in ``table`` uses: the same on every retry."""
    if not org_id or not correlation_id or not table:
        raise ValueError("org_id, correlation_id and table are required")
    return str(uuid.uuid5(CRM_ID_NAMESPACE, f"{org_id}|{table}|{correlation_id}"))


def change_id(table: str, row_id: str, version: str | None) -> str:
    """The deterministic id of one observed row change (``None`` version: a delete)."""
    return f"crm:{table}:{row_id}:{version if version is not None else 'deleted'}"


def stream_id(org_id: str, table: str) -> str:
    """The stream (and cursors-topic key) of one organisation's table."""
    return f"crm:{org_id}:{table}"
