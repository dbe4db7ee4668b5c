"""Events CRUD, ``calendarView`` (series expanded into occurrences and exceptions), its delta."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from . import crud
from .delta import Collected, decode, delta_response
from .errors import GraphError
from .ids import derived_id, parse_iso
from .odata import Query, order, parse_query, project
from .recurrence import graph_utc, local_start, occurrence_dates, to_utc, validate
from .render import DEFAULT_MEETING_PROVIDER, render
from .routing import Context, Handler, Request, Response, Router
from .store import Entity, Mailbox, Store


def _ctx(mailbox: Mailbox) -> str:
    return f"users('{mailbox.id}')/events"


def _check_times(props: dict[str, Any], current: dict[str, Any] | None = None) -> None:
    merged = {**(current or {}), **props}
    if "start" in merged or "end" in merged:
        if merged.get("start") is None or merged.get("end") is None:
            raise GraphError(400, "ErrorInvalidRequest", "An event needs both start and end.")
        if to_utc(merged["end"]) < to_utc(merged["start"]):
            raise GraphError(
                400, "ErrorInvalidRequest", "The end time must not be before the start time."
            )
    if props.get("recurrence") is not None:
        validate(props["recurrence"])


async def list_events(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    query = crud.query_for(ctx, req, "event")
    items = [e for e in mailbox.children("event", None) if e.internal.get("type") != "exception"]
    return crud.list_response(ctx, req, mailbox, items, _ctx(mailbox), query)


async def create_event(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    props, ext = crud.read_write_body(req, "event")
    if props.get("start") is None or props.get("end") is None:
        raise GraphError(400, "ErrorInvalidRequest", "An event needs both start and end.")
    _check_times(props)
    event = ctx.store.create(mailbox, "event", mailbox.calendar_id, props, ext=ext, notify=False)
    event.internal["type"] = "seriesMaster" if props.get("recurrence") else "singleInstance"
    event.internal["iCalUId"] = derived_id("ical", event.id)
    ctx.store.touch(mailbox, event)
    query = crud.query_for(ctx, req, "event")
    return crud.item_response(req, mailbox, event, _ctx(mailbox), query, 201)


def _resolve(store: Store, mailbox: Mailbox, item_id: str) -> Entity | tuple[Entity, str]:
    """An event, or (master, occurrence date) for an unmodified occurrence id."""
    entity = mailbox.entities.get(item_id)
    if entity is not None and entity.kind == "event":
        return entity
    if item_id in store.occurrences:
        master_id, day = store.occurrences[item_id]
        master = mailbox.entities.get(master_id)
        if master is not None and day not in master.internal.get("cancelled", []):
            return master, day
    raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def _occurrence_start(master: Entity, day: str) -> dict[str, Any]:
    local, tz = local_start(master.props["start"])
    begin = datetime.fromisoformat(day).replace(
        hour=local.hour, minute=local.minute, second=local.second, tzinfo=tz
    )
    return graph_utc(begin)


async def get_event(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    query = crud.query_for(ctx, req, "event")
    found = _resolve(ctx.store, mailbox, p["e"])
    if isinstance(found, tuple):
        master, day = found
        item = _instance(ctx.store, mailbox, master, day, query)
        body = {"@odata.context": f"{req.base}/$metadata#{_ctx(mailbox)}/$entity", **item}
        return Response(200, body)
    return crud.item_response(req, mailbox, found, _ctx(mailbox), query)


async def update_event(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    found = _resolve(ctx.store, mailbox, p["e"])
    props, ext = crud.read_write_body(req, "event")
    if isinstance(found, tuple):
        master, day = found
        crud.check_if_match(req, master)
        if "recurrence" in props:
            raise GraphError(400, "ErrorInvalidRequest", "An occurrence cannot get a recurrence.")
        base = {k: v for k, v in master.props.items() if k != "recurrence"}
        start = _occurrence_start(master, day)
        duration = to_utc(master.props["end"]) - to_utc(master.props["start"])
        base["start"] = start
        base["end"] = graph_utc(to_utc(start) + duration)
        base.update(props)
        _check_times(base)
        exception = ctx.store.create(
            mailbox,
            "event",
            master.parent,
            base,
            ext=dict(master.ext) | ext,
            item_id=p["e"],
            notify=False,
        )
        exception.internal.update(
            {"type": "exception", "seriesMasterId": master.id, "originalStart": start["dateTime"]}
        )
        exception.internal["day"] = day
        ctx.store.touch(mailbox, exception)
        target = exception
    else:
        crud.check_if_match(req, found)
        _check_times(props, found.props)
        if found.internal.get("type") != "exception" and "recurrence" in props:
            found.internal["type"] = "seriesMaster" if props["recurrence"] else "singleInstance"
        ctx.store.update(mailbox, found, props, crud.merge_ext(found, ext))
        target = found
    query = crud.query_for(ctx, req, "event")
    return crud.item_response(req, mailbox, target, _ctx(mailbox), query)


async def delete_event(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    found = _resolve(ctx.store, mailbox, p["e"])
    if isinstance(found, tuple):
        master, day = found
        crud.check_if_match(req, master)
        master.internal.setdefault("cancelled", []).append(day)
        ctx.store.touch(mailbox, master)
        return crud.no_content()
    crud.check_if_match(req, found)
    if found.internal.get("type") == "exception":
        parent = mailbox.entities.get(found.internal["seriesMasterId"])
        if parent is not None:
            parent.internal.setdefault("cancelled", []).append(found.internal["day"])
            ctx.store.touch(mailbox, parent)
    elif found.internal.get("type") == "seriesMaster":
        for other in list(mailbox.entities.values()):
            if other.internal.get("seriesMasterId") == found.id:
                ctx.store.delete(mailbox, other)
    ctx.store.delete(mailbox, found)
    return crud.no_content()


def _window(req: Request) -> tuple[datetime, datetime, tuple[str, str]]:
    texts = (req.query.get("startDateTime"), req.query.get("endDateTime"))
    if not texts[0] or not texts[1]:
        raise GraphError(
            400,
            "ErrorInvalidParameter",
            "This request requires a time window specified by the query string parameters "
            "StartDateTime and EndDateTime.",
        )
    start, end = parse_iso(texts[0]), parse_iso(texts[1])
    if start is None or end is None or end <= start:
        raise GraphError(
            400,
            "ErrorInvalidParameter",
            "startDateTime and endDateTime must be ISO 8601 and "
            "endDateTime must be after startDateTime.",
        )
    return start, end, (texts[0], texts[1])


def _instance(
    store: Store, mailbox: Mailbox, master: Entity, day: str, query: Query
) -> dict[str, Any]:
    occ_id = derived_id("occurrence", master.id, day)
    store.occurrences[occ_id] = (master.id, day)
    start = _occurrence_start(master, day)
    duration = to_utc(master.props["end"]) - to_utc(master.props["start"])
    item = crud.shape(mailbox, master, query, lambda m, e: _occurrence_view(m, e, occ_id))
    if "start" in item or query.select is None:
        item["start"] = start
    if "end" in item or query.select is None:
        item["end"] = graph_utc(to_utc(start) + duration)
    return item


def _occurrence_view(mailbox: Mailbox, master: Entity, occ_id: str) -> dict[str, Any]:
    view = render(mailbox, master)
    view.update(
        {"id": occ_id, "type": "occurrence", "seriesMasterId": master.id, "recurrence": None}
    )
    return view


def _in_window(event: dict[str, Any], start: datetime, end: datetime) -> bool:
    begins, ends = to_utc(event["start"]), to_utc(event["end"])
    return begins < end and (ends > start or (ends == begins and begins >= start))


def _expand(
    store: Store,
    mailbox: Mailbox,
    event: Entity,
    start: datetime,
    end: datetime,
    query: Query,
) -> list[tuple[str, dict[str, Any] | None]]:
    kind = event.internal.get("type", "singleInstance")
    if kind != "seriesMaster":
        if event.props.get("start") and _in_window(event.props, start, end):
            return [(event.id, crud.shape(mailbox, event, query))]
        return []
    out: list[tuple[str, dict[str, Any] | None]] = []
    cancelled = set(event.internal.get("cancelled", []))
    duration = to_utc(event.props["end"]) - to_utc(event.props["start"])
    for day in occurrence_dates(event.props["recurrence"], end.date()):
        key = day.isoformat()
        occ_id = derived_id("occurrence", event.id, key)
        begins = to_utc(_occurrence_start(event, key))
        if not (begins < end and begins + duration > start):
            continue
        if key in cancelled:
            store.occurrences.pop(occ_id, None)
            out.append((occ_id, None))
            continue
        if occ_id in mailbox.entities:
            continue
        out.append((occ_id, _instance(store, mailbox, event, key, query)))
    return out


def _selected(item: dict[str, Any], query: Query) -> dict[str, Any]:
    """``item`` (rendered whole, expansions included) cut down to ``$select``."""
    if query.select is None:
        return item
    kept = project(item, query.select)
    kept.update({k: item[k] for k in query.expand if k in item})
    return kept


def _windowed(
    ctx: Context, req: Request, mailbox: Mailbox, events: list[Entity], context: str
) -> Response:
    """``events`` (series expanded) within the request's window: ``$filter``, ``$orderby``
    (else by start), paging, then ``$select``."""
    start, end, _ = _window(req)
    query = crud.query_for(ctx, req, "event", extra=("startDateTime", "endDateTime"))
    whole = replace(query, select=None)
    items: list[dict[str, Any]] = []
    for event in events:
        for _, item in _expand(ctx.store, mailbox, event, start, end, whole):
            if item is not None:
                items.append(item)
    if query.filter is not None:
        condition = query.filter
        items = [i for i in items if condition(i, {})]
    items.sort(key=lambda i: to_utc(i["start"]))
    items = order(items, query.orderby, lambda i: i)
    page, next_link = crud.paginate(ctx, req, items, query)
    body: dict[str, Any] = {
        "@odata.context": f"{req.base}/$metadata#{context}",
        "value": [_selected(i, query) for i in page],
    }
    if next_link is not None:
        body["@odata.nextLink"] = next_link
    return Response(200, body)


async def calendar_view(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    events = mailbox.children("event", None)
    return _windowed(ctx, req, mailbox, events, f"users('{mailbox.id}')/calendarView")


async def list_instances(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    """``GET …/events/{id}/instances?startDateTime=…&endDateTime=…``: a series master's
    occurrences and exceptions in the window (another event: itself, if in the window)."""
    mailbox = ctx.store.user(p["u"])
    found = _resolve(ctx.store, mailbox, p["e"])
    context = f"users('{mailbox.id}')/events('{p['e']}')/instances"
    if isinstance(found, tuple):
        master, day = found
        start, end, _ = _window(req)
        query = crud.query_for(ctx, req, "event", extra=("startDateTime", "endDateTime"))
        item = _instance(ctx.store, mailbox, master, day, replace(query, select=None))
        inside = to_utc(item["start"]) < end and to_utc(item["end"]) > start
        value = [_selected(item, query)] if inside else []
        return Response(200, {"@odata.context": f"{req.base}/$metadata#{context}", "value": value})
    events = [found]
    if found.internal.get("type") == "seriesMaster":
        events += [
            e
            for e in mailbox.children("event", None)
            if e.internal.get("type") == "exception"
            and e.internal.get("seriesMasterId") == found.id
        ]
    return _windowed(ctx, req, mailbox, events, context)


_CALENDAR_FIELDS = frozenset(
    {
        "id",
        "name",
        "color",
        "hexColor",
        "isDefaultCalendar",
        "changeKey",
        "canShare",
        "canViewPrivateItems",
        "canEdit",
        "allowedOnlineMeetingProviders",
        "defaultOnlineMeetingProvider",
        "isTallyingResponses",
        "isRemovable",
        "owner",
    }
)


def _calendar_json(mailbox: Mailbox) -> dict[str, Any]:
    """The mailbox's one (default) calendar as Graph shows a calendar."""
    return {
        "id": mailbox.calendar_id,
        "name": "Calendar",
        "color": "auto",
        "hexColor": "",
        "isDefaultCalendar": True,
        "changeKey": derived_id("calendar-change-key", mailbox.calendar_id)[5:33],
        "canShare": True,
        "canViewPrivateItems": True,
        "canEdit": True,
        "allowedOnlineMeetingProviders": [DEFAULT_MEETING_PROVIDER],
        "defaultOnlineMeetingProvider": DEFAULT_MEETING_PROVIDER,
        "isTallyingResponses": True,
        "isRemovable": False,
        "owner": {"name": mailbox.display_name, "address": mailbox.mail},
    }


def _calendar(mailbox: Mailbox, key: str) -> None:
    """404 unless ``key`` names the mailbox's calendar."""
    if key != mailbox.calendar_id:
        raise GraphError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )


async def get_calendar(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    if "c" in p:
        _calendar(mailbox, p["c"])
        context = f"users('{mailbox.id}')/calendars/$entity"
    else:
        context = f"users('{mailbox.id}')/calendar/$entity"
    query = parse_query(req.query, _CALENDAR_FIELDS)
    body = {"@odata.context": f"{req.base}/$metadata#{context}"}
    body.update(project(_calendar_json(mailbox), query.select))
    return Response(200, body)


async def list_calendars(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    query = parse_query(req.query, _CALENDAR_FIELDS, max_top=ctx.config.max_top)
    calendars = [_calendar_json(mailbox)]
    if query.filter is not None:
        condition = query.filter
        calendars = [c for c in calendars if condition(c, {})]
    page, next_link = crud.paginate(ctx, req, calendars, query)
    body: dict[str, Any] = {
        "@odata.context": f"{req.base}/$metadata#users('{mailbox.id}')/calendars",
        "value": [project(c, query.select) for c in page],
    }
    if next_link is not None:
        body["@odata.nextLink"] = next_link
    return Response(200, body)


def _in_calendar(handler: Handler) -> Handler:
    """``handler`` under ``/calendars/{c}``: 404 unless ``c`` is the mailbox's calendar."""

    async def run(ctx: Context, req: Request, p: dict[str, str]) -> Response:
        _calendar(ctx.store.user(p["u"]), p["c"])
        return await handler(ctx, req, p)

    return run


async def calendar_view_delta(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    query = crud.query_for(ctx, req, "event", extra=("startDateTime", "endDateTime"))
    if "$deltatoken" in req.query or "$skiptoken" in req.query:
        state = decode(req.query.get("$deltatoken") or req.query.get("$skiptoken") or "")
        if state.window is None:
            raise GraphError(400, "BadRequest", "The delta token has no time window.")
        texts = state.window
        start, end = parse_iso(texts[0]), parse_iso(texts[1])
        if start is None or end is None:
            raise GraphError(400, "BadRequest", "The delta token is not valid.")
    else:
        start, end, texts = _window(req)

    def collect(since: int, high: int) -> Collected:
        out: dict[str, dict[str, Any] | None] = {}
        for event in mailbox.children("event", None):
            if not since < event.seq <= high:
                continue
            expanded = _expand(ctx.store, mailbox, event, start, end, query)
            for key, item in expanded:
                if item is not None or since > 0:
                    out[key] = item
            if not expanded and since > 0 and event.internal.get("type") != "seriesMaster":
                out[event.id] = None
        if since > 0:
            for stone in mailbox.tombstones:
                if stone.kind == "event" and since < stone.seq <= high:
                    out.setdefault(stone.id, None)
                    snap = stone.snapshot
                    if snap.internal.get("type") == "seriesMaster":
                        for key, _ in _expand(ctx.store, mailbox, snap, start, end, query):
                            out.setdefault(key, None)
        return sorted(out.items())

    return delta_response(
        ctx,
        req,
        mailbox,
        "calendarView",
        "event",
        collect,
        window=texts,
        fresh_params={"startDateTime": texts[0], "endDateTime": texts[1]},
    )


def register(router: Router) -> None:
    """Add the calendar routes."""
    u = "/users/{u}"
    router.add("GET", f"{u}/calendar", get_calendar)
    router.add("GET", f"{u}/calendars", list_calendars)
    router.add("GET", f"{u}/calendars/{{c}}", get_calendar)
    views = (f"{u}/calendarView", f"{u}/calendar/calendarView", f"{u}/calendars/{{c}}/calendarView")
    for view in views:
        wrap = _in_calendar if "{c}" in view else _same
        router.add("GET", f"{view}/delta", wrap(calendar_view_delta))
        router.add("GET", view, wrap(calendar_view))
    for prefix in (f"{u}/events", f"{u}/calendar/events", f"{u}/calendars/{{c}}/events"):
        wrap = _in_calendar if "{c}" in prefix else _same
        router.add("GET", prefix, wrap(list_events))
        router.add("POST", prefix, wrap(create_event))
        router.add("GET", f"{prefix}/{{e}}", wrap(get_event))
        router.add("PATCH", f"{prefix}/{{e}}", wrap(update_event))
        router.add("DELETE", f"{prefix}/{{e}}", wrap(delete_event))
        router.add("GET", f"{prefix}/{{e}}/instances", wrap(list_instances))


def _same(handler: Handler) -> Handler:
    return handler
