"""The contracts of resolving a conflict held by the ``manual`` policy.

``dynasync conflicts resolve`` sends a :class:`ConflictResolution` to the engine as a control
record on ``changes.crm`` (keyed by the mailbox, header ``x-dynasync-control: resolve``), so it
is applied in order with the mailbox's changes. The engine answers on ``conflicts`` with a
:class:`ConflictClosed` record (``record_type`` ``conflict_closed``): the conflict it names is
no longer open, whether the resolution was applied or found the conflict already gone.
:func:`decode_resolution` validates a resolution at the engine's edge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from schemas.errors import SchemaError
from schemas.types import Side

#: The control header value of a resolution record.
RESOLVE_CONTROL: Final = b"resolve"
#: ``record_type`` of a closing record on ``conflicts``.
CLOSED_TYPE: Final = "conflict_closed"

_ID = re.compile(r"^[^\x00-\x1f]{1,512}$")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_FIELDS = (
    "resolution_id",
    "mailbox_id",
    "conflict_id",
    "correlation_id",
    "field",
    "conflict_key",
    "take",
    "requested_at",
)


@dataclass(frozen=True, slots=True)
class ConflictResolution:
    """An operator's decision on one open conflict: ``take`` that side's value of ``field``.

    ``conflict_key`` is :func:`pipeline.plan.conflict_key` of the recorded conflict (the pair,
    the field and both values): the engine applies the resolution only while that conflict is
    the one its link holds open, so a newer edit is never overwritten by an old decision."""

    resolution_id: str
    mailbox_id: str
    conflict_id: str
    correlation_id: str
    field: str
    conflict_key: str
    take: Side
    requested_at: str


def encode_resolution(resolution: ConflictResolution) -> bytes:
    """The record value of ``resolution``."""
    return orjson.dumps(resolution)


def decode_resolution(raw: bytes | bytearray | memoryview) -> ConflictResolution:
    """A :class:`ConflictResolution` from record bytes; :class:`SchemaError` naming what is
    wrong."""
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SchemaError("ConflictResolution", "", f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SchemaError("ConflictResolution", "", "expected a JSON object")
    extra = set(data) - set(_FIELDS)
    if extra:
        raise SchemaError("ConflictResolution", "", f"unexpected properties {sorted(extra)}")
    for name in _FIELDS:
        value = data.get(name)
        if not isinstance(value, str) or not _ID.match(value):
            raise SchemaError("ConflictResolution", name, "expected a string of 1-512 characters")
    take = data["take"]
    if take not in ("outlook", "crm"):
        raise SchemaError("ConflictResolution", "take", f"expected outlook or crm, got {take!r}")
    if not _TIME.match(data["requested_at"]):
        raise SchemaError("ConflictResolution", "requested_at", "expected an RFC 3339 time")
    return ConflictResolution(
        resolution_id=data["resolution_id"],
        mailbox_id=data["mailbox_id"],
        conflict_id=data["conflict_id"],
        correlation_id=data["correlation_id"],
        field=data["field"],
        conflict_key=data["conflict_key"],
        take="outlook" if take == "outlook" else "crm",
        requested_at=data["requested_at"],
    )


@dataclass(frozen=True, slots=True)
class ConflictClosed:
    """The engine's answer to a resolution, on ``conflicts``: ``applied`` False when the
    conflict was no longer open (``reason`` says why)."""

    conflict_id: str
    mailbox_id: str
    correlation_id: str
    field: str
    take: Side
    resolution_id: str
    applied: bool
    reason: str
    closed_at: str
    record_type: Literal["conflict_closed"] = "conflict_closed"

    def to_json(self) -> bytes:
        """The record as published on ``conflicts``."""
        return orjson.dumps(self)
