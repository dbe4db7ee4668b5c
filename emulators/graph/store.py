"""In-memory state: mailboxes and their items, change sequence, tombstones, change events."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import GraphError, not_found
from .ids import iso_z, new_change_key, new_guid, new_item_id, utc_now

WELL_KNOWN_MAIL = {
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "drafts": "Drafts",
    "deleteditems": "Deleted Items",
    "archive": "Archive",
    "junkemail": "Junk Email",
    "outbox": "Outbox",
}


@dataclass
class Entity:
    """One stored Graph item: its writable properties plus server-kept metadata."""

    kind: str
    id: str
    parent: str | None
    props: dict[str, Any]
    change_key: str
    created: str
    modified: str
    seq: int
    ext: dict[str, str] = field(default_factory=dict)
    internal: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Tombstone:
    """A deleted (or moved-out) item, kept for delta queries."""

    kind: str
    id: str
    parent: str | None
    seq: int
    snapshot: Entity


@dataclass(frozen=True)
class ChangeEvent:
    """What subscriptions hear about: one created/updated/deleted item."""

    mailbox_id: str
    kind: str
    item_id: str
    parent: str | None
    change_type: str
    etag: str
    rest_id: str = ""

    @property
    def default_id(self) -> str:
        """The id Graph names the item by without ``Prefer: IdType="ImmutableId"``."""
        return self.rest_id or self.item_id


@dataclass
class Mailbox:
    """A user with a mailbox, calendar, contacts and To Do."""

    id: str
    upn: str
    mail: str
    display_name: str
    created: str
    entities: dict[str, Entity] = field(default_factory=dict)
    tombstones: list[Tombstone] = field(default_factory=list)
    rest_ids: dict[str, str] = field(default_factory=dict)
    seq: int = 0
    delta_epoch: int = 0
    well_known: dict[str, str] = field(default_factory=dict)
    contacts_root: str = ""
    calendar_id: str = ""
    default_list: str = ""

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def user_json(self) -> dict[str, Any]:
        """The user resource."""
        return {
            "id": self.id,
            "userPrincipalName": self.upn,
            "mail": self.mail,
            "displayName": self.display_name,
            "accountEnabled": True,
            "createdDateTime": self.created,
        }

    def get(self, item_id: str, *kinds: str) -> Entity:
        """The live entity ``item_id`` (its immutable id, or its current REST id) of one of
        ``kinds``, else Graph's 404."""
        entity = self.entities.get(item_id)
        if entity is None and item_id in self.rest_ids:
            entity = self.entities.get(self.rest_ids[item_id])
        if entity is None or (kinds and entity.kind not in kinds):
            raise not_found(f"id {item_id!r}")
        return entity

    def children(self, kind: str, parent: str | None) -> list[Entity]:
        """Live entities of ``kind`` under ``parent`` (``None`` = any parent), oldest first."""
        return [
            e
            for e in self.entities.values()
            if e.kind == kind and (parent is None or e.parent == parent)
        ]

    def mail_folder(self, key: str) -> Entity:
        """A mail folder by id or well-known name (case-insensitive)."""
        folder_id = self.well_known.get(key.lower(), key)
        return self.get(folder_id, "mailFolder")


def rest_id(entity: Entity) -> str:
    """``entity``'s REST id: its immutable id until a move gave it another."""
    value = entity.internal.get("restId")
    return value if isinstance(value, str) else entity.id


Listener = Callable[[ChangeEvent], None]


class Store:
    """All mailboxes; every write goes through here so delta and notifications see it."""

    def __init__(self) -> None:
        self.mailboxes: dict[str, Mailbox] = {}
        self._by_name: dict[str, str] = {}
        self.occurrences: dict[str, tuple[str, str]] = {}
        self.listeners: list[Listener] = []

    def reset(self) -> None:
        """Forget every mailbox."""
        self.mailboxes.clear()
        self._by_name.clear()
        self.occurrences.clear()

    def add_user(self, upn: str, mail: str, display_name: str, user_id: str | None) -> Mailbox:
        """Provision a mailbox with its well-known folders, contacts, calendar and task list."""
        for name in {upn.lower(), mail.lower()}:
            if name in self._by_name:
                raise GraphError(
                    400,
                    "Request_BadRequest",
                    "Another object with the same value for property userPrincipalName "
                    "already exists.",
                )
        uid = user_id or new_guid()
        if uid in self.mailboxes:
            raise GraphError(400, "Request_BadRequest", "A user with this id already exists.")
        mailbox = Mailbox(uid, upn, mail, display_name, iso_z(utc_now()))
        self.mailboxes[uid] = mailbox
        self._by_name[upn.lower()] = uid
        self._by_name[mail.lower()] = uid
        for key, name in WELL_KNOWN_MAIL.items():
            folder = self.create(mailbox, "mailFolder", None, {"displayName": name}, notify=False)
            folder.internal["wellKnownName"] = key
            mailbox.well_known[key] = folder.id
        mailbox.contacts_root = self.create(
            mailbox, "contactFolder", None, {"displayName": "Contacts"}, notify=False
        ).id
        mailbox.calendar_id = new_item_id()
        todo = self.create(mailbox, "todoTaskList", None, {"displayName": "Tasks"}, notify=False)
        todo.internal["wellknownListName"] = "defaultList"
        mailbox.default_list = todo.id
        return mailbox

    def delete_user(self, key: str) -> Mailbox:
        """Remove a user and its mailbox (its UPN and mail are free again); Graph's 404 if
        there is none."""
        mailbox = self.user(key)
        del self.mailboxes[mailbox.id]
        for name in {mailbox.upn.lower(), mailbox.mail.lower()}:
            if self._by_name.get(name) == mailbox.id:
                del self._by_name[name]
        return mailbox

    def user(self, key: str) -> Mailbox:
        """A mailbox by id, userPrincipalName or mail (case-insensitive)."""
        uid = key if key in self.mailboxes else self._by_name.get(key.lower())
        if uid is None or uid not in self.mailboxes:
            raise GraphError(
                404,
                "Request_ResourceNotFound",
                f"Resource '{key}' does not exist or one of its queried reference-property "
                "objects are not present.",
            )
        return self.mailboxes[uid]

    def user_by_address(self, address: str) -> Mailbox | None:
        """The emulated mailbox receiving mail for ``address``, if any."""
        uid = self._by_name.get(address.lower())
        return self.mailboxes.get(uid) if uid else None

    def create(
        self,
        mailbox: Mailbox,
        kind: str,
        parent: str | None,
        props: dict[str, Any],
        *,
        ext: dict[str, str] | None = None,
        item_id: str | None = None,
        notify: bool = True,
        moved: bool = False,
    ) -> Entity:
        """Store a new entity and announce it; ``moved``: it keeps the immutable id ``item_id``
        of an item that was elsewhere, under a new REST id."""
        now = iso_z(utc_now())
        entity = Entity(
            kind=kind,
            id=item_id or new_item_id(),
            parent=parent,
            props=copy.deepcopy(props),
            change_key=new_change_key(),
            created=now,
            modified=now,
            seq=mailbox.next_seq(),
            ext=dict(ext or {}),
        )
        mailbox.entities[entity.id] = entity
        if moved:
            self.new_rest_id(mailbox, entity)
        if notify:
            self._emit(mailbox, entity, "created")
        return entity

    def update(
        self,
        mailbox: Mailbox,
        entity: Entity,
        props: dict[str, Any],
        ext: dict[str, str] | None = None,
    ) -> Entity:
        """Apply a partial update, bump the change key and announce it."""
        entity.props.update(copy.deepcopy(props))
        if ext:
            entity.ext.update(ext)
        self.touch(mailbox, entity)
        return entity

    def touch(self, mailbox: Mailbox, entity: Entity) -> None:
        """Mark ``entity`` changed (new change key, sequence and timestamp)."""
        entity.change_key = new_change_key()
        entity.modified = iso_z(utc_now())
        entity.seq = mailbox.next_seq()
        self._emit(mailbox, entity, "updated")

    def move(self, mailbox: Mailbox, entity: Entity, new_parent: str) -> Entity:
        """Move to another folder; the old parent's delta sees a removal.

        Like Exchange: the immutable id (``entity.id``) stays, the REST id (what Graph answers
        without ``Prefer: IdType="ImmutableId"``) is a new one and the old one is gone.
        """
        if entity.parent == new_parent:
            return entity
        snapshot = copy.deepcopy(entity)
        mailbox.tombstones.append(
            Tombstone(entity.kind, entity.id, entity.parent, mailbox.next_seq(), snapshot)
        )
        entity.parent = new_parent
        self.new_rest_id(mailbox, entity)
        self.touch(mailbox, entity)
        return entity

    def new_rest_id(self, mailbox: Mailbox, entity: Entity) -> str:
        """Give ``entity`` a fresh REST id (the one before it no longer finds it)."""
        old = entity.internal.get("restId")
        if isinstance(old, str):
            mailbox.rest_ids.pop(old, None)
        rest_id = new_item_id()
        entity.internal["restId"] = rest_id
        mailbox.rest_ids[rest_id] = entity.id
        return rest_id

    def delete(self, mailbox: Mailbox, entity: Entity) -> None:
        """Delete ``entity`` and everything under it."""
        for child in [e for e in mailbox.entities.values() if e.parent == entity.id]:
            self.delete(mailbox, child)
        mailbox.entities.pop(entity.id, None)
        rest_id = entity.internal.get("restId")
        if isinstance(rest_id, str):
            mailbox.rest_ids.pop(rest_id, None)
        mailbox.tombstones.append(
            Tombstone(entity.kind, entity.id, entity.parent, mailbox.next_seq(), entity)
        )
        self._emit(mailbox, entity, "deleted")

    def tombstones_since(self, mailbox: Mailbox, kind: str, seq: int) -> Iterator[Tombstone]:
        """Tombstones of ``kind`` newer than ``seq``."""
        return (t for t in mailbox.tombstones if t.kind == kind and t.seq > seq)

    def _emit(self, mailbox: Mailbox, entity: Entity, change_type: str) -> None:
        event = ChangeEvent(
            mailbox.id,
            entity.kind,
            entity.id,
            entity.parent,
            change_type,
            f'W/"{entity.change_key}"',
            rest_id(entity),
        )
        for listener in list(self.listeners):
            listener(event)
