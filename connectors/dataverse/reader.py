"""The change-tracking reader of one organisation's table (a ChangeSource).

``read(None)`` is a full sync; ``read(deltaLink)`` returns rows changed since, then deleted rows.
The cursor is the ``@odata.deltaLink``; nothing else is kept between calls. Change tracking
forbids ``$expand``, so the activity parties of changed activities are fetched in follow-up
queries. An expired token raises CursorExpiredError (the caller runs a full sync).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

from connectors.base import ChangeBatch
from connectors.dataverse.client import DataverseClient
from connectors.dataverse.ids import change_id, stream_id
from connectors.dataverse.mapping import entity_set, kind_of, primary_key, row_to_projection
from connectors.errors import CursorExpiredError, InvalidResponseError
from schemas.fields import MappingError
from schemas.models import ItemChange
from schemas.types import CrmTable, Kind

#: Tables whose rows carry activity parties the projection needs.
PARTY_TABLES: Final[frozenset[str]] = frozenset(
    {"appointment", "recurringappointmentmaster", "email"}
)
#: Columns never copied into ``attributes`` (large text; the projection has them).
_NOT_ATTRIBUTES: Final = frozenset({"description", "@odata.etag"})
_PARTY_SELECT: Final = (
    "activitypartyid,participationtypemask,addressused,_partyid_value,_activityid_value"
)
_PARTY_CHUNK: Final = 40
_ANNOTATIONS: Final = 'odata.include-annotations="*"'


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def row_attributes(row: Mapping[str, Any], parties: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What filters and rules need of a row: its scalar columns (lookups under their attribute
    name, with ``<name>_table``), and its parties as (mask, table, id, address)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if "@" in key or key in _NOT_ATTRIBUTES or isinstance(value, dict | list):
            continue
        if key.startswith("_") and key.endswith("_value"):
            name = key[1:-6]
            out[name] = value
            table = row.get(f"{key}@Microsoft.Dynamics.CRM.lookuplogicalname")
            if isinstance(table, str):
                out[f"{name}_table"] = table
        else:
            out[key] = value
    if parties:
        out["parties"] = [
            {
                "mask": p.get("participationtypemask"),
                "table": p.get("_partyid_value@Microsoft.Dynamics.CRM.lookuplogicalname"),
                "id": p.get("_partyid_value"),
                "address": p.get("addressused"),
            }
            for p in parties
        ]
    return out


class DataverseChangeSource:
    """Reads one table's changes with ``Prefer: odata.track-changes``."""

    def __init__(
        self,
        client: DataverseClient,
        *,
        org_id: str,
        table: CrmTable,
        page_size: int = 500,
        groups: frozenset[str] = frozenset(),
        clock: Callable[[], str] = _now,
    ) -> None:
        self.kind: Kind = kind_of(table)  # validates the table
        if not 1 <= page_size <= 5000:
            raise ValueError("page_size must be 1..5000")
        self._client = client
        self.org_id = org_id
        self.table: CrmTable = table
        self._page_size = page_size
        self._groups = groups
        self._clock = clock

    @property
    def stream_id(self) -> str:
        return stream_id(self.org_id, self.table)

    def _check_cursor(self, cursor: str) -> str:
        base = self._client.base_url + "/" + entity_set(self.table)
        if not cursor.startswith(base + "?") or "$deltatoken=" not in cursor.replace("%24", "$"):
            raise CursorExpiredError(f"{self.stream_id}: not a delta link of this table")
        return cursor

    async def read(self, cursor: str | None) -> AsyncIterator[ChangeBatch]:
        full = cursor is None
        url = entity_set(self.table) if cursor is None else self._check_cursor(cursor)
        prefer = f"odata.track-changes,odata.maxpagesize={self._page_size},{_ANNOTATIONS}"
        upserted: set[str] = set()
        while True:
            page = await self._client.get_json(url, prefer=prefer, what=f"delta {self.table}")
            rows, deleted, next_link, delta_link = self._page(page)
            parties = await self._parties([r[0] for r in rows]) if rows else {}
            changes: list[ItemChange] = []
            observed = self._clock()
            for row_id, row in rows:
                upserted.add(row_id)
                changes.append(self._upsert(row_id, row, parties.get(row_id, []), full, observed))
            for row_id in deleted:
                if row_id not in upserted:  # a row that exists now was re-created, not deleted
                    changes.append(self._delete(row_id, observed))
            if next_link is not None:
                yield ChangeBatch(tuple(changes), None, full_sync=full)
                url = next_link
                continue
            assert delta_link is not None
            yield ChangeBatch(tuple(changes), delta_link, full_sync=full)
            return

    def _page(
        self, page: Mapping[str, Any]
    ) -> tuple[list[tuple[str, dict[str, Any]]], list[str], str | None, str | None]:
        what = f"{self.stream_id}: change page"
        values = page.get("value")
        if not isinstance(values, list):
            raise InvalidResponseError(f"{what} has no value array")
        next_link = page.get("@odata.nextLink")
        delta_link = page.get("@odata.deltaLink")
        for name, link in (("nextLink", next_link), ("deltaLink", delta_link)):
            if link is not None and not isinstance(link, str):
                raise InvalidResponseError(f"{what}: @odata.{name} is not a string")
        if (next_link is None) == (delta_link is None):
            raise InvalidResponseError(f"{what} must carry exactly one of nextLink and deltaLink")
        if next_link is not None:
            self._client.url(next_link)  # same origin, else InvalidResponseError
        pk = primary_key(self.table)
        rows: list[tuple[str, dict[str, Any]]] = []
        deleted: list[str] = []
        for item in values:
            if not isinstance(item, dict):
                raise InvalidResponseError(f"{what}: an entry is not an object")
            context = item.get("@odata.context")
            if isinstance(context, str) and context.endswith("/$deletedEntity"):
                row_id = item.get("id")
                if not isinstance(row_id, str) or not row_id:
                    raise InvalidResponseError(f"{what}: a $deletedEntity has no id")
                deleted.append(row_id.lower())
                continue
            row_id = item.get(pk)
            version = item.get("versionnumber")
            if not isinstance(row_id, str) or not row_id:
                raise InvalidResponseError(f"{what}: a row has no {pk}")
            if isinstance(version, bool) or not isinstance(version, int | str) or version == "":
                raise InvalidResponseError(f"{what}: row {row_id} has no versionnumber")
            rows.append((row_id.lower(), item))
        return rows, deleted, next_link, delta_link

    async def _parties(self, ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        if self.table not in PARTY_TABLES:
            return {}
        out: dict[str, list[dict[str, Any]]] = {}
        for start in range(0, len(ids), _PARTY_CHUNK):
            chunk = ids[start : start + _PARTY_CHUNK]
            cond = " or ".join(f"_activityid_value eq {i}" for i in chunk)
            url: str | None = (
                f"activityparties?$select={_PARTY_SELECT}&$filter={quote(cond, safe=' =')}"
            )
            while url is not None:
                page = await self._client.get_json(
                    url, prefer=_ANNOTATIONS, what=f"parties of {self.table}"
                )
                values = page.get("value")
                if not isinstance(values, list):
                    raise InvalidResponseError("activity party page has no value array")
                for party in values:
                    owner = party.get("_activityid_value") if isinstance(party, dict) else None
                    if not isinstance(owner, str):
                        raise InvalidResponseError("an activity party has no _activityid_value")
                    out.setdefault(owner.lower(), []).append(party)
                link = page.get("@odata.nextLink")
                url = link if isinstance(link, str) else None
        return out

    def _upsert(
        self,
        row_id: str,
        row: dict[str, Any],
        parties: list[dict[str, Any]],
        full: bool,
        observed: str,
    ) -> ItemChange:
        version = str(row["versionnumber"])
        try:
            projection = row_to_projection(self.table, row, parties=parties, groups=self._groups)
        except MappingError as exc:
            raise InvalidResponseError(f"{self.stream_id}: row {row_id}: {exc}") from exc
        attributes = row_attributes(row, parties)
        if self.table == "email":
            attributes["pending_send"] = row.get("statuscode") == 6
        return ItemChange(
            change_id=change_id(self.table, row_id, version),
            side="crm",
            org_id=self.org_id,
            kind=self.kind,
            op="upsert",
            item_id=row_id,
            version=version,
            observed_at=observed,
            table=self.table,
            projection=projection,
            attributes=attributes,
            origin="full_sync" if full else "change_tracking",
        )

    def _delete(self, row_id: str, observed: str) -> ItemChange:
        return ItemChange(
            change_id=change_id(self.table, row_id, None),
            side="crm",
            org_id=self.org_id,
            kind=self.kind,
            op="delete",
            item_id=row_id,
            version="",
            observed_at=observed,
            table=self.table,
            origin="change_tracking",
        )
