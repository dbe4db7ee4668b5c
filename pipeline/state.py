"""Link state: what the engine knows about one synced item pair, and its orjson codec.

A link ties one Outlook item to one CRM row of one mailbox. For each side it keeps the item id,
the versions recently seen (dedupe), the projection last seen there (overlaid with our own
applied writes), and the projection and version of our last write there (echo suppression).
``base`` is the projection both sides last agreed on: the common ancestor of the 3-way merge.
``conflicts`` remembers the conflicts already recorded, so each is recorded once.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Final

import orjson

from schemas.models import CommandAction
from schemas.types import CrmTable, Kind, Projection, Side

#: Namespace of every id the engine derives (correlation ids, command ids, event ids).
DYNASYNC_NS: Final = uuid.UUID("5b0c7f5e-3d0a-4f0e-9a57-8c1d2e3f4a5b")
#: How many recent versions per side are remembered for dedupe of repeated notifications.
RECENT_VERSIONS: Final = 16


_NS_BYTES: Final = DYNASYNC_NS.bytes


def uuid5_text(name: str) -> str:
    """``str(uuid.uuid5(DYNASYNC_NS, name))``, without building UUID objects (the engine
    derives several ids per change)."""
    raw = bytearray(hashlib.sha1(_NS_BYTES + name.encode(), usedforsecurity=False).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def correlation_id_for(mailbox_id: str, origin: Side, item_id: str) -> str:
    """The deterministic correlation id of an item first seen on ``origin``."""
    return uuid5_text(f"corr|{mailbox_id}|{origin}|{item_id}")


def derived_id(*parts: str) -> str:
    """A deterministic uuid5 over ``parts`` (command ids, event ids)."""
    return uuid5_text("|".join(parts))


@dataclass(frozen=True, slots=True)
class PendingWrite:
    """A command issued to one side whose outcome has not come back yet."""

    command_id: str
    target: Side
    action: CommandAction
    fields: Projection
    if_match: str | None = None


@dataclass(frozen=True, slots=True)
class SideState:
    """What the engine knows of the item on one side."""

    item_id: str | None = None
    version: str | None = None
    recent: tuple[str, ...] = ()
    seen: Projection = field(default_factory=dict)
    seen_at: str | None = None
    written: Projection | None = None
    written_version: str | None = None
    deleted: bool = False

    def saw(self, version: str, projection: Projection | None, at: str) -> SideState:
        """This side observed at ``version`` (with ``projection`` if it is an upsert)."""
        recent = self.recent if version in self.recent else (*self.recent, version)
        return replace(
            self,
            version=version,
            recent=recent[-RECENT_VERSIONS:],
            seen=dict(projection) if projection is not None else self.seen,
            seen_at=at,
        )


@dataclass(frozen=True, slots=True)
class LinkState:
    """One synced item pair of one mailbox."""

    correlation_id: str
    mailbox_id: str
    org_id: str
    kind: Kind
    crm_table: CrmTable | None
    outlook: SideState
    crm: SideState
    base: Projection
    origin: Side
    pending: tuple[PendingWrite, ...] = ()
    unlinked: bool = False
    tombstone: bool = False
    updated_at: str = ""
    #: Conflicts already recorded and still open: field -> conflict key (recorded once).
    conflicts: dict[str, str] = field(default_factory=dict)

    @property
    def outlook_id(self) -> str | None:
        """The Outlook item id, once known."""
        return self.outlook.item_id

    @property
    def crm_id(self) -> str | None:
        """The CRM row id, once known."""
        return self.crm.item_id

    @property
    def pending_ids(self) -> tuple[str, ...]:
        """Ids of the commands in flight."""
        return tuple(p.command_id for p in self.pending)

    def side(self, side: Side) -> SideState:
        """The state of ``side``."""
        return self.outlook if side == "outlook" else self.crm

    def with_side(self, side: Side, state: SideState) -> LinkState:
        """A copy with ``side`` replaced."""
        return replace(self, outlook=state) if side == "outlook" else replace(self, crm=state)

    def pending_to(self, side: Side) -> tuple[PendingWrite, ...]:
        """Commands in flight towards ``side``."""
        return tuple(p for p in self.pending if p.target == side)

    def expected(self, side: Side) -> Projection:
        """Our best knowledge of ``side``: last seen, overlaid with writes still in flight."""
        out = dict(self.side(side).seen)
        for p in self.pending_to(side):
            out.update(p.fields)
        return out


def encode_link(link: LinkState) -> bytes:
    """orjson bytes of ``link``."""
    return orjson.dumps(link)


def _side(data: dict[str, Any]) -> SideState:
    return SideState(
        item_id=data.get("item_id"),
        version=data.get("version"),
        recent=tuple(data.get("recent") or ()),
        seen=dict(data.get("seen") or {}),
        seen_at=data.get("seen_at"),
        written=data.get("written"),
        written_version=data.get("written_version"),
        deleted=bool(data.get("deleted", False)),
    )


def _str_map(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise TypeError("conflicts must map field names to keys")
    return dict(raw)


def decode_link(raw: bytes | bytearray | memoryview | str) -> LinkState:
    """Rebuild a LinkState from :func:`encode_link` bytes; ValueError if they are not one."""
    try:
        data = orjson.loads(raw)
        return LinkState(
            correlation_id=data["correlation_id"],
            mailbox_id=data["mailbox_id"],
            org_id=data["org_id"],
            kind=data["kind"],
            crm_table=data.get("crm_table"),
            outlook=_side(data["outlook"]),
            crm=_side(data["crm"]),
            base=dict(data.get("base") or {}),
            origin=data["origin"],
            pending=tuple(
                PendingWrite(
                    command_id=p["command_id"],
                    target=p["target"],
                    action=p["action"],
                    fields=dict(p.get("fields") or {}),
                    if_match=p.get("if_match"),
                )
                for p in data.get("pending") or ()
            ),
            unlinked=bool(data.get("unlinked", False)),
            tombstone=bool(data.get("tombstone", False)),
            updated_at=data.get("updated_at", ""),
            conflicts=_str_map(data.get("conflicts")),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a link state: {exc}") from None


def index_key(mailbox_id: str, side: Side, item_id: str) -> str:
    """Key of the (mailbox, side, item id) → correlation id index; starts with the mailbox."""
    return f"{mailbox_id}|{side}|{item_id}"


def link_key(mailbox_id: str, correlation_id: str) -> str:
    """Key of a link in the link table; starts with the mailbox."""
    return f"{mailbox_id}|{correlation_id}"
