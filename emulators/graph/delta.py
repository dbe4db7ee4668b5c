"""Delta queries: opaque state tokens, paging with ``$skiptoken``, removals, 410 on invalidation."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from .crud import page_size, shape
from .errors import GraphError
from .odata import Query
from .routing import Context, Request, Response
from .store import Entity, Mailbox, rest_id

Collected = list[tuple[str, dict[str, Any] | None]]
Collector = Callable[[int, int], Collected]


@dataclass(frozen=True)
class DeltaState:
    """What a skip or delta token carries."""

    mailbox: str
    scope: str
    since: int
    high: int
    after: str
    epoch: int
    window: tuple[str, str] | None


def encode(state: DeltaState) -> str:
    """An opaque URL-safe token for ``state``."""
    raw = orjson.dumps(
        {
            "m": state.mailbox,
            "s": state.scope,
            "q": state.since,
            "h": state.high,
            "a": state.after,
            "e": state.epoch,
            "w": list(state.window) if state.window else None,
        }
    )
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str) -> DeltaState:
    """Parse a token; a malformed one is Graph's 400."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        window = data["w"]
        state = DeltaState(
            mailbox=str(data["m"]),
            scope=str(data["s"]),
            since=int(data["q"]),
            high=int(data["h"]),
            after=str(data["a"]),
            epoch=int(data["e"]),
            window=(str(window[0]), str(window[1])) if window else None,
        )
    except (ValueError, KeyError, TypeError, IndexError, orjson.JSONDecodeError):
        raise GraphError(400, "BadRequest", "The delta or skip token is not valid.") from None
    return state


def removed(kind: str, item_id: str) -> dict[str, Any]:
    """A deletion entry in a delta page."""
    return {
        "@odata.type": f"#microsoft.graph.{kind}",
        "id": item_id,
        "@removed": {"reason": "deleted"},
    }


def entity_collector(
    mailbox: Mailbox,
    kind: str,
    in_scope: Callable[[Entity], bool],
    tombstone_parent: str | None,
    query: Query,
) -> Collector:
    """Changes of ``kind`` entities for which ``in_scope`` holds (and their tombstones)."""

    def collect(since: int, high: int) -> Collected:
        live: dict[str, dict[str, Any] | None] = {}
        for entity in mailbox.entities.values():
            if entity.kind == kind and in_scope(entity) and since < entity.seq <= high:
                live[entity.id] = shape(mailbox, entity, query)
        if since > 0:
            for stone in mailbox.tombstones:
                if (
                    stone.kind == kind
                    and since < stone.seq <= high
                    and (tombstone_parent is None or stone.parent == tombstone_parent)
                    and stone.id not in live
                ):
                    current = mailbox.entities.get(stone.id)
                    if current is not None and in_scope(current) and current.seq <= high:
                        continue
                    gone = stone.id if query.immutable_ids else rest_id(stone.snapshot)
                    live[stone.id] = None if gone == stone.id else removed(kind, gone)
        return sorted(live.items())

    return collect


def delta_response(
    ctx: Context,
    req: Request,
    mailbox: Mailbox,
    scope: str,
    kind: str,
    collect: Collector,
    window: tuple[str, str] | None = None,
    fresh_params: Mapping[str, str] | None = None,
) -> Response:
    """One page of a delta round: the items, then a ``nextLink`` or a ``deltaLink``."""
    token = req.query.get("$deltatoken") or req.query.get("$skiptoken")
    fresh = dict(fresh_params or {})
    if token:
        state = decode(token)
        if state.mailbox != mailbox.id or state.scope != scope:
            raise GraphError(400, "BadRequest", "The delta token belongs to another collection.")
        if state.epoch != mailbox.delta_epoch:
            if state.window:
                fresh.setdefault("startDateTime", state.window[0])
                fresh.setdefault("endDateTime", state.window[1])
            raise GraphError(
                410,
                "syncStateNotFound",
                "The sync state generation is not found; start a new full synchronization.",
                {"Location": req.link(req.path, fresh)},
            )
        if "$deltatoken" in req.query:
            state = DeltaState(
                mailbox.id, scope, state.high, mailbox.seq, "", state.epoch, state.window
            )
    else:
        state = DeltaState(mailbox.id, scope, 0, mailbox.seq, "", mailbox.delta_epoch, window)
    size = page_size(ctx, req) or ctx.config.default_page_size
    changes = [(i, body) for i, body in collect(state.since, state.high) if i > state.after]
    page = changes[:size]
    value = [body if body is not None else removed(kind, i) for i, body in page]
    out: dict[str, Any] = {
        "@odata.context": f"{req.base}/$metadata#Collection({kind})",
        "value": value,
    }
    keep = {k: v for k, v in req.query.items() if k in ("$select", "$expand")}
    if len(changes) > size:
        nxt = DeltaState(
            mailbox.id, scope, state.since, state.high, page[-1][0], state.epoch, state.window
        )
        out["@odata.nextLink"] = req.link(req.path, {**keep, "$skiptoken": encode(nxt)})
    else:
        done = DeltaState(mailbox.id, scope, state.high, state.high, "", state.epoch, state.window)
        out["@odata.deltaLink"] = req.link(req.path, {**keep, "$deltatoken": encode(done)})
    return Response(200, out)
