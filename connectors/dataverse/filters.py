"""Import of Outlook synchronization filters from Dataverse into FilterRecords.

Each user's own filters are ``userqueries`` with ``querytype`` 256 (OutlookFilters), read as that
user (personal views are visible only to their owner and those they share with); the system
templates are ``savedqueries`` with ``querytype`` 131072 (OutlookTemplate). Every row is checked
(well-formed FetchXML, one ``<entity>`` of a synced table, the record schema); a broken row
becomes a FilterImportError entry instead of stopping the import.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from connectors.dataverse.client import DataverseClient
from connectors.errors import InvalidResponseError
from schemas.codec import dumps, loads
from schemas.errors import SchemaError
from schemas.models import FilterRecord
from schemas.types import CRM_TABLES, CrmTable

#: SavedQueryQueryType.OutlookFilters: a user's Outlook synchronization filter.
OUTLOOK_FILTERS: Final = 256
#: SavedQueryQueryType.OutlookTemplate: an organisation-wide template users get a copy of.
OUTLOOK_TEMPLATE: Final = 131072
MAX_FETCHXML: Final = 100_000
_SELECT: Final = "name,fetchxml,returnedtypecode,querytype,statecode"

QuerySource = Literal["userquery", "savedquery"]


@dataclass(frozen=True, slots=True)
class FilterImportError:
    """A filter row that could not be imported, and why."""

    source: QuerySource
    row_id: str
    name: str | None
    reason: str


@dataclass(slots=True)
class FilterImport:
    """The filters read, and the rows that were refused."""

    filters: list[FilterRecord] = field(default_factory=list)
    errors: list[FilterImportError] = field(default_factory=list)


def fetchxml_table(text: str) -> CrmTable:
    """The synced table a FetchXML query selects from; ValueError saying what is wrong."""
    if len(text) > MAX_FETCHXML:
        raise ValueError(f"FetchXML longer than {MAX_FETCHXML} characters")
    if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        raise ValueError("FetchXML may not declare a DOCTYPE or entities")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"FetchXML is not well-formed XML: {exc}") from None
    if root.tag != "fetch":
        raise ValueError(f"FetchXML root is <{root.tag}>, not <fetch>")
    entities = root.findall("entity")
    if len(entities) != 1:
        raise ValueError(f"FetchXML must have exactly one <entity>, has {len(entities)}")
    name = entities[0].get("name")
    for table in CRM_TABLES:
        if table == name:
            return table
    raise ValueError(f"FetchXML entity {name!r} is not a synced table")


def filter_from_row(
    row: Mapping[str, Any], *, org_id: str, source: QuerySource, mailbox_id: str | None
) -> FilterRecord:
    """The FilterRecord of one userquery/savedquery row; ValueError if it is not usable."""
    pk = f"{source}id"
    row_id = row.get(pk)
    if not isinstance(row_id, str) or not row_id:
        raise ValueError(f"row has no {pk}")
    fetchxml = row.get("fetchxml")
    if not isinstance(fetchxml, str) or not fetchxml.strip():
        raise ValueError("row has no fetchxml")
    table = fetchxml_table(fetchxml)
    returned = row.get("returnedtypecode")
    if isinstance(returned, str) and returned and returned != table:
        raise ValueError(f"returnedtypecode {returned!r} does not match the entity {table!r}")
    name = row.get("name")
    record = FilterRecord(
        filter_id=f"{source}:{row_id.lower()}",
        org_id=org_id,
        table=table,
        name=name if isinstance(name, str) and name.strip() else f"{source} {row_id}",
        fetchxml=fetchxml,
        source="userquery" if source == "userquery" else "template",
        mailbox_id=mailbox_id,
        enabled=row.get("statecode") in (0, None),
    )
    try:
        return loads(FilterRecord, dumps(record))
    except SchemaError as exc:
        raise ValueError(str(exc)) from None


async def _rows(
    client: DataverseClient, path: str, run_as: str | None, what: str
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    url: str | None = path
    while url is not None:
        page = await client.get_json(url, prefer="odata.maxpagesize=500", run_as=run_as, what=what)
        values = page.get("value")
        if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
            raise InvalidResponseError(f"{what}: page has no value array of objects")
        out.extend(values)
        link = page.get("@odata.nextLink")
        if link is not None and not isinstance(link, str):
            raise InvalidResponseError(f"{what}: @odata.nextLink is not a string")
        url = link
    return out


def _collect(
    result: FilterImport,
    rows: list[dict[str, Any]],
    *,
    org_id: str,
    source: QuerySource,
    mailbox_id: str | None,
) -> None:
    for row in rows:
        try:
            result.filters.append(
                filter_from_row(row, org_id=org_id, source=source, mailbox_id=mailbox_id)
            )
        except ValueError as exc:
            row_id = row.get(f"{source}id")
            name = row.get("name")
            result.errors.append(
                FilterImportError(
                    source,
                    row_id if isinstance(row_id, str) else "?",
                    name if isinstance(name, str) else None,
                    str(exc),
                )
            )


async def import_filters(
    client: DataverseClient,
    *,
    org_id: str,
    mailboxes: Mapping[str, str],
    templates: bool = True,
) -> FilterImport:
    """Read the Outlook filters of every user in ``mailboxes`` (systemuserid → mailbox id),
    impersonating each, and the organisation's templates."""
    result = FilterImport()
    for user_id, mailbox_id in mailboxes.items():
        query = (
            f"userqueries?$select=userqueryid,{_SELECT}"
            f"&$filter=querytype eq {OUTLOOK_FILTERS} and _ownerid_value eq {user_id}"
        )
        rows = await _rows(client, query, user_id, f"userqueries of {user_id}")
        _collect(result, rows, org_id=org_id, source="userquery", mailbox_id=mailbox_id)
    if templates:
        query = (
            f"savedqueries?$select=savedqueryid,{_SELECT}&$filter=querytype eq {OUTLOOK_TEMPLATE}"
        )
        rows = await _rows(client, query, None, "savedqueries")
        _collect(result, rows, org_id=org_id, source="savedquery", mailbox_id=None)
    return result
