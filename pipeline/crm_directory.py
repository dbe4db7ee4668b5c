"""What the CRM knows about addresses and emails, asked of Dataverse when a change needs it.

The planner is pure: before an Outlook email is planned, the engine gathers the CRM facts that
email tracking may ask about that one message (the CRM emails it replies to or carries the token
of, the rows owning its addresses) into an :class:`InMemoryTrackingLookup`. Attendee resolution
for CRM writes asks the same address questions. Answers are cached: rows found for ``ttl_s``,
addresses nobody owns for ``miss_ttl_s``; an email not in the CRM is never cached, so an email
tracked a moment ago by another mailbox is found.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import quote

from connectors.errors import InvalidResponseError
from pipeline.rules.tracking import EmailFacts
from pipeline.rules.tracking_lookup import (
    RESOLUTION_ORDER,
    CrmEmail,
    InMemoryTrackingLookup,
    RecordRef,
    StoredEmail,
    normalize_message_id,
)

#: Where each table keeps the address we resolve by.
ADDRESS_COLUMNS: Final[Mapping[str, tuple[str, str, str]]] = {
    "systemuser": ("systemusers", "systemuserid", "internalemailaddress"),
    "contact": ("contacts", "contactid", "emailaddress1"),
    "account": ("accounts", "accountid", "emailaddress1"),
    "lead": ("leads", "leadid", "emailaddress1"),
}
_LOGICAL: Final = "@Microsoft.Dynamics.CRM.lookuplogicalname"
_ANNOTATIONS: Final = 'odata.include-annotations="*"'
#: Addresses per OData query (keeps the URL well under the 32 KB Dataverse limit).
CHUNK: Final = 15


class JsonGetter(Protocol):
    """The one call the directory makes (a :class:`DataverseClient` has it)."""

    async def get_json(
        self,
        path: str,
        *,
        prefer: str | None = None,
        run_as: str | None = None,
        what: str | None = None,
    ) -> dict[str, Any]: ...


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _rows(body: Mapping[str, Any], what: str) -> list[Mapping[str, Any]]:
    rows = body.get("value")
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise InvalidResponseError(f"{what}: 'value' is not a list of rows")
    return rows


def _guid(row: Mapping[str, Any], column: str, what: str) -> str:
    value = row.get(column)
    if not isinstance(value, str):
        raise InvalidResponseError(f"{what}: row without {column}")
    return value.lower()


@dataclass
class _Entry:
    value: Any
    expires: float


class _Cache:
    """A small LRU with per-entry expiry."""

    def __init__(self, max_entries: int, clock: Callable[[], float]) -> None:
        self._data: OrderedDict[str, _Entry] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    def get(self, key: str) -> tuple[bool, Any]:
        entry = self._data.get(key)
        if entry is None:
            return False, None
        if entry.expires <= self._clock():
            del self._data[key]
            return False, None
        self._data.move_to_end(key)
        return True, entry.value

    def put(self, key: str, value: Any, ttl_s: float) -> None:
        self._data[key] = _Entry(value, self._clock() + ttl_s)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class CrmDirectory:
    """Addresses → rows (systemuser, contact, account, lead in that order) and CRM emails by
    message id or tracking token, for one organisation."""

    def __init__(
        self,
        client: JsonGetter,
        *,
        ttl_s: float = 300.0,
        miss_ttl_s: float = 60.0,
        max_entries: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (ttl_s > 0 and miss_ttl_s >= 0 and max_entries > 0):
            raise ValueError("ttl_s and max_entries must be positive, miss_ttl_s not negative")
        self._client = client
        self._ttl = ttl_s
        self._miss_ttl = miss_ttl_s
        self._cache = _Cache(max_entries, clock)
        self.queries = 0

    async def _get(self, path: str, what: str) -> list[Mapping[str, Any]]:
        self.queries += 1
        return _rows(await self._client.get_json(path, prefer=_ANNOTATIONS, what=what), what)

    async def resolve(self, addresses: Iterable[str]) -> dict[str, RecordRef]:
        """The row owning each address that has one (keys lower-cased)."""
        wanted = sorted({a.strip().lower() for a in addresses if a and "@" in a})
        found: dict[str, RecordRef] = {}
        todo: list[str] = []
        for address in wanted:
            hit, value = self._cache.get(f"addr:{address}")
            if not hit:
                todo.append(address)
            elif value is not None:
                found[address] = value
        for table in RESOLUTION_ORDER:
            if not todo:
                break
            entity_set, key, column = ADDRESS_COLUMNS[table]
            for start in range(0, len(todo), CHUNK):
                chunk = todo[start : start + CHUNK]
                condition = " or ".join(f"{column} eq {_literal(a)}" for a in chunk)
                path = f"{entity_set}?$select={key},{column}&$filter={quote(condition)}"
                for row in await self._get(path, f"resolve addresses in {entity_set}"):
                    owned = row.get(column)
                    if isinstance(owned, str) and owned.strip().lower() in chunk:
                        ref = RecordRef(table, _guid(row, key, entity_set))
                        found.setdefault(owned.strip().lower(), ref)
            todo = [a for a in todo if a not in found]
        for address in wanted:
            if address in found:
                self._cache.put(f"addr:{address}", found[address], self._ttl)
            elif self._miss_ttl > 0:
                self._cache.put(f"addr:{address}", None, self._miss_ttl)
        return found

    async def _emails(self, column: str, values: Iterable[str]) -> dict[str, CrmEmail]:
        out: dict[str, CrmEmail] = {}
        todo: list[str] = []
        for value in sorted(set(values)):
            hit, cached = self._cache.get(f"{column}:{value}")
            if hit:
                out[value] = cached
            else:
                todo.append(value)
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start : start + CHUNK]
            forms = {f: v for v in chunk for f in _forms(column, v)}
            condition = " or ".join(f"{column} eq {_literal(f)}" for f in forms)
            path = (
                f"emails?$select=activityid,{column},_regardingobjectid_value"
                f"&$filter={quote(condition)}"
            )
            for row in await self._get(path, f"emails by {column}"):
                raw = row.get(column)
                asked = forms.get(raw) if isinstance(raw, str) else None
                if asked is None or asked in out:
                    continue
                email = CrmEmail(_guid(row, "activityid", "emails"), _regarding(row))
                out[asked] = email
                self._cache.put(f"{column}:{asked}", email, self._ttl)
        return out

    async def emails_by_message_id(self, message_ids: Iterable[str]) -> dict[str, CrmEmail]:
        """CRM emails by internetMessageId (keys without angle brackets)."""
        wanted = {normalize_message_id(m) for m in message_ids}
        return await self._emails("messageid", {m for m in wanted if m})

    async def email_by_token(self, token: str) -> CrmEmail | None:
        """The CRM email carrying tracking ``token``."""
        return (await self._emails("trackingtoken", [token])).get(token)

    async def lookup_for(self, facts: EmailFacts) -> InMemoryTrackingLookup:
        """Everything tracking may ask about ``facts``, as an in-memory lookup for the planner.

        Conversations are not looked up: the CRM keeps no Graph conversationId.
        """
        references = [
            facts.internet_message_id,
            *(facts.in_reply_to or "").replace(",", " ").split(),
        ]
        by_id = await self.emails_by_message_id(r for r in references if r)
        token = facts.token
        by_token = await self.email_by_token(token) if token else None
        parties = [p.email for p in (facts.sender, *facts.recipients) if p is not None]
        owners = await self.resolve(parties)
        lookup = InMemoryTrackingLookup()
        for message_id, email in by_id.items():
            lookup.add_email(
                StoredEmail(email.activity_id, message_id=message_id, regarding=email.regarding)
            )
        if token and by_token is not None:
            lookup.add_email(
                StoredEmail(by_token.activity_id, token=token, regarding=by_token.regarding)
            )
        for address, ref in owners.items():
            lookup.add_address(ref.table, address, ref.id)
        return lookup


def _forms(column: str, value: str) -> tuple[str, ...]:
    """How a value may be stored: message ids with or without their angle brackets."""
    return (value, f"<{value}>") if column == "messageid" else (value,)


def _regarding(row: Mapping[str, Any]) -> RecordRef | None:
    row_id = row.get("_regardingobjectid_value")
    table = row.get(f"_regardingobjectid_value{_LOGICAL}")
    if isinstance(row_id, str) and isinstance(table, str):
        try:
            return RecordRef(table, row_id.lower())
        except ValueError:
            return None
    return None
