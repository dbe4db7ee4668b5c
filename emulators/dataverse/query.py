"""OData system query options: parsing and validation against a table."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import bad_request, unknown_property
from .filterexpr import Predicate, compile_filter
from .metadata import Catalog, Table

_KNOWN = {"$select", "$filter", "$orderby", "$top", "$expand", "$count", "$skiptoken"}
_KNOWN |= {"$deltatoken"}
_UNSUPPORTED = {"$skip", "$search", "$apply", "$format", "$compute", "$levels"}


@dataclass(frozen=True)
class Expand:
    """One ``$expand`` item."""

    navigation: str
    target: Table
    collection: bool
    select: list[str] | None = None
    filter: Predicate | None = None
    orderby: list[tuple[str, bool]] = field(default_factory=list)
    top: int | None = None
    raw: str = ""


@dataclass(frozen=True)
class QueryOptions:
    """Parsed query options for one request."""

    select: list[str] | None = None
    filter: Predicate | None = None
    orderby: list[tuple[str, bool]] = field(default_factory=list)
    top: int | None = None
    expand: list[Expand] = field(default_factory=list)
    count: bool = False
    skiptoken: str | None = None
    deltatoken: str | None = None
    raw: dict[str, str] = field(default_factory=dict)


def split_top_level(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses and quotes."""
    parts: list[str] = []
    depth = 0
    quoted = False
    current: list[str] = []
    for ch in text:
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
            if depth < 0:
                raise bad_request(f"Unbalanced parentheses in '{text}'.")
        if ch == sep and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth != 0 or quoted:
        raise bad_request(f"Unbalanced parentheses or quotes in '{text}'.")
    parts.append("".join(current))
    return parts


def parse_select(text: str, table: Table) -> list[str]:
    """``$select`` names, checked against the table."""
    names = [n.strip() for n in text.split(",")]
    if any(not n for n in names):
        raise bad_request(f"The $select value '{text}' has an empty property name.")
    for name in names:
        if table.property_type(name) is None:
            raise unknown_property(table.logical, name)
    return list(dict.fromkeys(names))


def parse_orderby(text: str, table: Table) -> list[tuple[str, bool]]:
    """``$orderby`` as (property, descending) pairs."""
    result: list[tuple[str, bool]] = []
    for item in text.split(","):
        words = item.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise bad_request(f"The $orderby value '{text}' is not valid.")
        if table.property_type(words[0]) is None:
            raise unknown_property(table.logical, words[0])
        result.append((words[0], len(words) == 2 and words[1] == "desc"))
    return result


def parse_top(text: str) -> int:
    """``$top`` as a non-negative integer."""
    if not text.isdigit() or len(text) > 9:
        raise bad_request(f"Invalid value '{text}' for $top query option found.")
    return int(text)


def _parse_expand_item(item: str, table: Table, catalog: Catalog) -> Expand:
    item = item.strip()
    nav, _, rest = item.partition("(")
    nav = nav.strip()
    options: dict[str, str] = {}
    if rest:
        if not rest.endswith(")"):
            raise bad_request(f"The $expand value '{item}' is not valid.")
        for part in split_top_level(rest[:-1], ";"):
            key, eq, value = part.partition("=")
            key = key.strip()
            if not eq or key not in ("$select", "$filter", "$orderby", "$top"):
                raise bad_request(f"The option '{part}' is not supported inside $expand.")
            options[key] = value
    if nav == table.party_navigation:
        target = catalog.table("activityparty")
        collection = True
    elif nav in table.navigations:
        target = catalog.by_logical.get(table.navigations[nav][1]) or table
        if table.navigations[nav][1] not in catalog.by_logical:
            raise bad_request(f"The navigation property '{nav}' cannot be expanded.")
        collection = False
    else:
        raise bad_request(
            f"Could not find a property named '{nav}' on type "
            f"'Microsoft.Dynamics.CRM.{table.logical}'."
        )
    if not collection and set(options) - {"$select"}:
        raise bad_request(f"Only $select is supported when expanding single-valued '{nav}'.")
    return Expand(
        navigation=nav,
        target=target,
        collection=collection,
        select=parse_select(options["$select"], target) if "$select" in options else None,
        filter=compile_filter(options["$filter"], target) if "$filter" in options else None,
        orderby=parse_orderby(options["$orderby"], target) if "$orderby" in options else [],
        top=parse_top(options["$top"]) if "$top" in options else None,
        raw=item,
    )


def parse_options(params: list[tuple[str, str]], table: Table, catalog: Catalog) -> QueryOptions:
    """Validate and parse the query string of a request on ``table``."""
    raw: dict[str, str] = {}
    for key, value in params:
        if key in raw:
            raise bad_request(f"Query option '{key}' was specified more than once.")
        if key in _UNSUPPORTED:
            raise bad_request(f"The query parameter {key} is not supported")
        if key not in _KNOWN:
            raise bad_request(f"The query parameter '{key}' is not supported.")
        raw[key] = value
    count = raw.get("$count", "false")
    if count not in ("true", "false"):
        raise bad_request(f"Invalid value '{count}' for $count query option found.")
    return QueryOptions(
        select=parse_select(raw["$select"], table) if "$select" in raw else None,
        filter=compile_filter(raw["$filter"], table) if "$filter" in raw else None,
        orderby=parse_orderby(raw["$orderby"], table) if "$orderby" in raw else [],
        top=parse_top(raw["$top"]) if "$top" in raw else None,
        expand=[_parse_expand_item(i, table, catalog) for i in split_top_level(raw["$expand"], ",")]
        if "$expand" in raw
        else [],
        count=count == "true",
        skiptoken=raw.get("$skiptoken"),
        deltatoken=raw.get("$deltatoken"),
        raw=raw,
    )
