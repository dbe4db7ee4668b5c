"""The contract of a pair ``dynasync resync`` matched: a ``link`` control record.

``resync --full`` lists both sides of a mailbox, matches items by their natural keys and sends
each matched pair to the engine as one record on ``changes.crm`` (keyed by the mailbox, header
``x-dynasync-control: link``), so the link lands in the engine's own link table, in order with
the mailbox's changes. The value is :func:`encode_proposal` JSON; :func:`decode_proposal`
validates it at the engine's edge (each side against the ``item_change`` schema).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson

from schemas.codec import build, validate
from schemas.errors import SchemaError
from schemas.models import ItemChange

#: The control header value of a link record.
LINK_CONTROL: Final = b"link"


@dataclass(frozen=True, slots=True)
class LinkProposal:
    """Two items, one per side, that a resync found to be the same (``key``: what matched)."""

    mailbox_id: str
    resync_id: str
    key: str
    outlook: ItemChange
    crm: ItemChange


def encode_proposal(proposal: LinkProposal) -> bytes:
    """The record value of ``proposal``."""
    return orjson.dumps(proposal)


def decode_proposal(raw: bytes | bytearray | memoryview) -> LinkProposal:
    """A :class:`LinkProposal` from record bytes; :class:`SchemaError` naming what is wrong."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SchemaError("LinkProposal", "", f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SchemaError("LinkProposal", "", "expected a JSON object")
    extra = set(data) - {"mailbox_id", "resync_id", "key", "outlook", "crm"}
    if extra:
        raise SchemaError("LinkProposal", "", f"unexpected properties {sorted(extra)}")
    for name in ("mailbox_id", "resync_id", "key"):
        value = data.get(name)
        if not isinstance(value, str) or not value or len(value) > 2048:
            raise SchemaError("LinkProposal", name, "expected a non-empty string")
    for side in ("outlook", "crm"):
        if side not in data:
            raise SchemaError("LinkProposal", side, "missing")
        validate(ItemChange, data[side])
    outlook = build(ItemChange, data["outlook"])
    crm = build(ItemChange, data["crm"])
    mailbox_id = data["mailbox_id"]
    if outlook.side != "outlook" or crm.side != "crm":
        raise SchemaError("LinkProposal", "outlook/crm", "an item is on the wrong side")
    if outlook.mailbox_id != mailbox_id or crm.mailbox_id != mailbox_id:
        raise SchemaError("LinkProposal", "mailbox_id", "an item belongs to another mailbox")
    if outlook.kind != crm.kind or outlook.op != "upsert" or crm.op != "upsert":
        raise SchemaError("LinkProposal", "kind", "the items are not two upserts of one kind")
    return LinkProposal(mailbox_id, data["resync_id"], data["key"], outlook, crm)
