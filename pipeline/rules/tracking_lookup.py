"""What email tracking asks of the CRM, as a Protocol, and an in-memory implementation."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

#: Sender/recipient resolution order (the first table holding the address wins).
RESOLUTION_ORDER: Final[tuple[str, ...]] = ("systemuser", "contact", "account", "lead")

_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TABLE = re.compile(r"^[a-z][a-z0-9_]{0,127}$")


@dataclass(frozen=True, slots=True)
class RecordRef:
    """A CRM row: table logical name and lowercase GUID (validated)."""

    table: str
    id: str

    def __post_init__(self) -> None:
        if not isinstance(self.table, str) or not _TABLE.match(self.table):
            raise ValueError(f"not a table logical name: {self.table!r}")
        if not isinstance(self.id, str) or not _GUID.match(self.id):
            raise ValueError(f"not a lowercase GUID: {self.id!r}")

    def as_lookup(self) -> dict[str, str]:
        """The projection form ``{"table", "id"}``."""
        return {"table": self.table, "id": self.id}


@dataclass(frozen=True, slots=True)
class CrmEmail:
    """An email activity already in the CRM."""

    activity_id: str
    regarding: RecordRef | None = None


class TrackingLookup(Protocol):
    """CRM facts email tracking needs; implementations answer from Dataverse or memory."""

    def email_by_message_id(self, message_id: str) -> CrmEmail | None:
        """The CRM email with this internetMessageId (angle brackets stripped)."""
        ...

    def email_by_token(self, token: str) -> CrmEmail | None:
        """The CRM email carrying this tracking token."""
        ...

    def email_by_conversation(self, conversation_id: str) -> CrmEmail | None:
        """A CRM email of this conversation."""
        ...

    def resolve_address(self, address: str) -> RecordRef | None:
        """The row owning ``address``, trying systemuser, contact, account, lead in order."""
        ...


def normalize_message_id(value: str) -> str:
    """A message id without surrounding whitespace and angle brackets."""
    return value.strip().strip("<>").strip()


@dataclass(frozen=True, slots=True)
class StoredEmail:
    """One CRM email as the in-memory lookup knows it."""

    activity_id: str
    message_id: str | None = None
    token: str | None = None
    conversation_id: str | None = None
    regarding: RecordRef | None = None


class InMemoryTrackingLookup:
    """A :class:`TrackingLookup` over in-memory rows (tests, single-process runs)."""

    def __init__(
        self,
        emails: Iterable[StoredEmail] = (),
        addresses: Iterable[tuple[str, str, str]] = (),
    ) -> None:
        self._emails: list[StoredEmail] = []
        self._addresses: dict[str, dict[str, str]] = {t: {} for t in RESOLUTION_ORDER}
        for email in emails:
            self.add_email(email)
        for table, address, row_id in addresses:
            self.add_address(table, address, row_id)

    def add_email(self, email: StoredEmail) -> None:
        """Remember a CRM email."""
        self._emails.append(email)

    def add_address(self, table: str, address: str, row_id: str) -> None:
        """Remember that row ``row_id`` of ``table`` has email ``address``."""
        if table not in self._addresses:
            raise ValueError(f"{table!r} is not one of {RESOLUTION_ORDER}")
        RecordRef(table, row_id)
        self._addresses[table][address.strip().lower()] = row_id

    def _first(self, attr: str, value: str) -> CrmEmail | None:
        for email in self._emails:
            if getattr(email, attr) == value:
                return CrmEmail(email.activity_id, email.regarding)
        return None

    def email_by_message_id(self, message_id: str) -> CrmEmail | None:
        wanted = normalize_message_id(message_id)
        for email in self._emails:
            if email.message_id is not None and normalize_message_id(email.message_id) == wanted:
                return CrmEmail(email.activity_id, email.regarding)
        return None

    def email_by_token(self, token: str) -> CrmEmail | None:
        for email in self._emails:
            if email.token is not None and email.token.casefold() == token.casefold():
                return CrmEmail(email.activity_id, email.regarding)
        return None

    def email_by_conversation(self, conversation_id: str) -> CrmEmail | None:
        return self._first("conversation_id", conversation_id)

    def resolve_address(self, address: str) -> RecordRef | None:
        key = address.strip().lower()
        for table in RESOLUTION_ORDER:
            row_id = self._addresses[table].get(key)
            if row_id is not None:
                return RecordRef(table, row_id)
        return None
