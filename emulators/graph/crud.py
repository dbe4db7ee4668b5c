"""Helpers every resource uses: listing with OData options, item reads, writes, If-Match."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from .errors import GraphError
from .ext_body import KIND as EXTENSION_KIND
from .ext_body import render_extension
from .ids import etag_of
from .odata import Query, order, parse_query, project
from .render import SELECT_ONLY, extended, known_properties, render
from .routing import Context, Request, Response
from .schema import nested_paths, validate_body
from .store import Entity, Mailbox, rest_id

Renderer = Callable[[Mailbox, Entity], dict[str, Any]]

T = TypeVar("T")

_MAXPAGE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.IGNORECASE)


def expandable(kind: str) -> frozenset[str]:
    """Navigation properties ``$expand`` accepts for ``kind``."""
    if kind in ("message", "event", "contact"):
        return frozenset({"singleValueExtendedProperties"})
    if kind == "todoTask":
        return frozenset({"linkedResources", "extensions", "checklistItems"})
    return frozenset()


def query_for(ctx: Context, req: Request, kind: str, extra: Collection[str] = ()) -> Query:
    """Parse ``req``'s OData options for ``kind`` (and which ids it wants back)."""
    query = parse_query(
        req.query,
        known_properties(kind),
        expandable=expandable(kind),
        max_top=ctx.config.max_top,
        extra=extra,
        paths=nested_paths(kind),
    )
    query.immutable_ids = req.immutable_ids()
    return query


def page_size(ctx: Context, req: Request) -> int | None:
    """``Prefer: odata.maxpagesize=N`` when sent (validated)."""
    prefer = req.header("Prefer")
    if not prefer:
        return None
    found = _MAXPAGE.search(prefer)
    if not found:
        return None
    size = int(found.group(1))
    if size < 1:
        raise GraphError(400, "BadRequest", "odata.maxpagesize must be a positive integer.")
    return min(size, ctx.config.max_page_size)


def filter_view(mailbox: Mailbox, entity: Entity, renderer: Renderer) -> dict[str, Any]:
    """What ``$filter`` sees: the rendered item plus its extended properties."""
    view = renderer(mailbox, entity)
    view["singleValueExtendedProperties"] = extended(entity)
    if entity.kind == "todoTask":
        view["linkedResources"] = [
            render(mailbox, child) for child in mailbox.children("linkedResource", entity.id)
        ]
    return view


def shape(
    mailbox: Mailbox,
    entity: Entity,
    query: Query,
    renderer: Renderer = render,
) -> dict[str, Any]:
    """Render ``entity`` with ``$select`` and ``$expand`` applied."""
    item = renderer(mailbox, entity)
    if not query.immutable_ids and item.get("id") == entity.id:
        item["id"] = rest_id(entity)
    if query.select is None:
        for name in SELECT_ONLY.get(entity.kind, ()):
            item.pop(name, None)
    item = project(item, query.select)
    if "singleValueExtendedProperties" in query.expand:
        condition = query.expand["singleValueExtendedProperties"]
        props = extended(entity)
        if condition is not None:
            props = [p for p in props if condition(p, {})]
        item["singleValueExtendedProperties"] = props
    if "linkedResources" in query.expand:
        item["linkedResources"] = [
            render(mailbox, c) for c in mailbox.children("linkedResource", entity.id)
        ]
    if "checklistItems" in query.expand:
        item["checklistItems"] = [
            render(mailbox, c) for c in mailbox.children("checklistItem", entity.id)
        ]
    if "extensions" in query.expand:
        wanted = query.expand["extensions"]
        exts = [render_extension(c) for c in mailbox.children(EXTENSION_KIND, entity.id)]
        item["extensions"] = [e for e in exts if wanted is None or wanted(e, {})]
    return item


def list_response(
    ctx: Context,
    req: Request,
    mailbox: Mailbox,
    entities: list[Entity],
    context: str,
    query: Query,
    renderer: Renderer = render,
) -> Response:
    """A paged collection: ``$filter``, ``$orderby``, ``$skip``, ``$top``, ``$select``."""
    selected = entities
    if query.filter is not None or query.orderby:
        views = [(e, filter_view(mailbox, e, renderer)) for e in entities]
        if query.filter is not None:
            condition = query.filter
            views = [(e, view) for e, view in views if condition(view, {})]
        selected = [e for e, _ in order(views, query.orderby, lambda pair: pair[1])]
    window, next_link = paginate(ctx, req, selected, query)
    body: dict[str, Any] = {"@odata.context": f"{req.base}/$metadata#{context}"}
    if query.count:
        body["@odata.count"] = len(selected)
    body["value"] = [shape(mailbox, e, query, renderer) for e in window]
    if next_link is not None:
        body["@odata.nextLink"] = next_link
    return Response(200, body)


def paginate(
    ctx: Context, req: Request, items: list[T], query: Query
) -> tuple[list[T], str | None]:
    """One page of ``items`` and the ``@odata.nextLink`` to the next one, if any.

    Like Outlook's collections in Graph: ``$top`` is the page size (else
    ``Prefer: odata.maxpagesize``, else the default); the next link repeats the request's
    options (``$top`` included) with ``$skip`` moved past this page.
    """
    size = query.top or page_size(ctx, req) or ctx.config.default_page_size
    window = items[query.skip : query.skip + size]
    if query.skip + size >= len(items):
        return window, None
    params = {k: v for k, v in req.query.items() if k != "$skip"}
    params["$skip"] = str(query.skip + size)
    return window, req.link(req.path, params)


def item_response(
    req: Request,
    mailbox: Mailbox,
    entity: Entity,
    context: str,
    query: Query,
    status: int = 200,
    renderer: Renderer = render,
) -> Response:
    """One entity with ``@odata.context``."""
    body = {"@odata.context": f"{req.base}/$metadata#{context}/$entity"}
    body.update(shape(mailbox, entity, query, renderer))
    return Response(status, body, {"ETag": etag_of(entity.change_key)})


def check_if_match(req: Request, entity: Entity) -> None:
    """412 ``ErrorIrresolvableConflict`` when ``If-Match`` names a stale change key."""
    wanted = req.header("If-Match")
    if wanted is None or wanted.strip() == "*":
        return
    tags = {t.strip() for t in wanted.split(",")}
    current = {etag_of(entity.change_key), entity.change_key, f'"{entity.change_key}"'}
    if not tags & current:
        raise GraphError(
            412,
            "ErrorIrresolvableConflict",
            "The send or update operation could not be performed because the change key passed "
            "in the request does not match the current change key for the item.",
        )


def read_write_body(req: Request, kind: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Validated writable properties and extended properties from a JSON body."""
    props = validate_body(kind, req.json())
    ext: dict[str, str] = {}
    for entry in props.pop("singleValueExtendedProperties", None) or []:
        if not entry.get("id") or entry.get("value") is None:
            raise GraphError(
                400,
                "ErrorInvalidProperty",
                "A singleValueExtendedProperty needs both 'id' and 'value'.",
            )
        ext[entry["id"]] = entry["value"]
    return props, ext


def merge_ext(entity: Entity, ext: dict[str, str]) -> dict[str, str]:
    """``ext`` with ids matched case-insensitively to ``entity``'s existing ones."""
    existing = {k.lower(): k for k in entity.ext}
    merged: dict[str, str] = {}
    for key, value in ext.items():
        old = existing.get(key.lower())
        if old is not None and old != key:
            entity.ext.pop(old)
        merged[key] = value
    return merged


def no_content() -> Response:
    """204."""
    return Response(204)
