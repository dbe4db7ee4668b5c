"""Rows as Dataverse JSON: etag, selected properties, lookup annotations, expansions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .metadata import Table
from .query import Expand
from .store import Row, Store

LOOKUP_LOGICAL = "@Microsoft.Dynamics.CRM.lookuplogicalname"
ASSOCIATED_NAV = "@Microsoft.Dynamics.CRM.associatednavigationproperty"
FORMATTED = "@OData.Community.Display.V1.FormattedValue"


def etag(row: Row) -> str:
    """The weak etag of a row."""
    return f'W/"{row.version}"'


def context_url(root: str, table: Table, select: list[str] | None, suffix: str = "") -> str:
    """``@odata.context`` for a table (optionally projected) plus a suffix like ``/$entity``."""
    projection = f"({','.join(select)})" if select else ""
    return f"{root}$metadata#{table.entity_set}{projection}{suffix}"


def entity_url(root: str, table: Table, row_id: str) -> str:
    """The absolute URL of a row."""
    return f"{root}{table.entity_set}({row_id})"


def _nav_for(table: Table, row: Row, attribute: str) -> str | None:
    target = row.targets.get(attribute)
    lookup = table.lookups[attribute]
    for nav, logical in lookup.targets.items():
        if logical == target:
            return nav
    return None


def render(
    store: Store,
    table: Table,
    row: Row,
    select: list[str] | None,
    expand: list[Expand],
    annotations: bool,
) -> dict[str, Any]:
    """One row as JSON."""
    out: dict[str, Any] = {"@odata.etag": etag(row)}
    names = select if select is not None else table.readable_properties()
    if table.primary_key not in names:
        names = [*names, table.primary_key]
    for name in names:
        value = row.values.get(name)
        lookup = table.lookup_by_value.get(name)
        if annotations and value is not None:
            if lookup is not None:
                target = row.targets.get(lookup.attribute, "")
                out[name + LOOKUP_LOGICAL] = target
                nav = _nav_for(table, row, lookup.attribute)
                if nav is not None:
                    out[name + ASSOCIATED_NAV] = nav
                target_row = store.get(target, value) if target in store.rows else None
                if target_row is not None:
                    primary = store.catalog.table(target).primary_name
                    out[name + FORMATTED] = target_row.values.get(primary)
            elif isinstance(value, int) and not isinstance(value, bool):
                out[name + FORMATTED] = f"{value:,}" if name == "versionnumber" else str(value)
        out[name] = value
    for item in expand:
        out[item.navigation] = _expanded(store, table, row, item, annotations)
    return out


def _expanded(
    store: Store, table: Table, row: Row, item: Expand, annotations: bool
) -> dict[str, Any] | list[dict[str, Any]] | None:
    if item.collection:
        parties = store.parties_of(row.id)
        if item.filter is not None:
            predicate = item.filter
            parties = [p for p in parties if predicate(p.values)]
        parties = sort_rows(parties, item.orderby)
        if item.top is not None:
            parties = parties[: item.top]
        return [render(store, item.target, p, item.select, [], annotations) for p in parties]
    lookup, target_logical = table.navigations[item.navigation]
    if row.targets.get(lookup.attribute) != target_logical:
        return None
    target_id = row.values.get(lookup.value_name)
    target_row = store.get(target_logical, target_id) if isinstance(target_id, str) else None
    if target_row is None:
        return None
    return render(store, item.target, target_row, item.select, [], annotations)


def sort_rows(rows: list[Row], orderby: list[tuple[str, bool]]) -> list[Row]:
    """Sort rows by ``$orderby`` (nulls first ascending, strings case-insensitively)."""
    result = list(rows)
    for name, descending in reversed(orderby):
        result.sort(key=_key_for(name), reverse=descending)
    return result


def _key_for(name: str) -> Callable[[Row], tuple[int, Any]]:
    return lambda row: _sort_key(row.values.get(name))


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, str):
        return (1, value.casefold())
    if isinstance(value, bool):
        return (1, int(value))
    return (1, value)
