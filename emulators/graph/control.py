"""The ``/_emulator/`` control API (no auth): reset, faults, delta tokens, lifecycle, stats,
the request log."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from .state import Emulator
from .throttle import Fault


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _problem(message: str, status: int = 400) -> web.Response:
    return _json(status, {"error": {"code": "BadRequest", "message": message}})


async def _body(request: web.Request, allow_empty: bool) -> Any:
    raw = await request.read()
    if not raw.strip():
        if allow_empty:
            return {}
        raise ValueError("a JSON body is required")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError("the body is not valid JSON") from None


def routes(emulator: Emulator) -> list[web.RouteDef]:
    """The control routes bound to ``emulator``."""

    async def reset(request: web.Request) -> web.Response:
        emulator.reset()
        return _json(200, {"reset": True})

    async def set_faults(request: web.Request) -> web.Response:
        try:
            emulator.faults.rule = Fault.parse(await _body(request, False))
        except ValueError as exc:
            return _problem(str(exc))
        rule = emulator.faults.rule
        return _json(200, {"fault": None if rule is None else rule.__dict__})

    async def clear_faults(request: web.Request) -> web.Response:
        emulator.faults.rule = None
        return _json(200, {"fault": None})

    async def invalidate(request: web.Request) -> web.Response:
        try:
            body = await _body(request, True)
        except ValueError as exc:
            return _problem(str(exc))
        if not isinstance(body, dict) or set(body) - {"mailbox"}:
            return _problem('body must be {} or {"mailbox": "<id or upn>"}')
        key = body.get("mailbox")
        if key is not None and not isinstance(key, str):
            return _problem("mailbox must be a string")
        if key is None:
            targets = list(emulator.store.mailboxes.values())
        else:
            found = emulator.store.mailboxes.get(key) or emulator.store.user_by_address(key)
            if found is None:
                return _problem(f"unknown mailbox {key!r}", 404)
            targets = [found]
        for mailbox in targets:
            mailbox.delta_epoch += 1
        return _json(200, {"invalidated": [m.id for m in targets]})

    async def lifecycle(request: web.Request) -> web.Response:
        try:
            body = await _body(request, False)
        except ValueError as exc:
            return _problem(str(exc))
        if not isinstance(body, dict) or set(body) != {"subscriptionId", "lifecycleEvent"}:
            return _problem('body must be {"subscriptionId": ..., "lifecycleEvent": ...}')
        sub_id, event = body["subscriptionId"], body["lifecycleEvent"]
        if not isinstance(sub_id, str) or not isinstance(event, str):
            return _problem("subscriptionId and lifecycleEvent must be strings")
        try:
            emulator.subscriptions.lifecycle(sub_id, event)
        except LookupError as exc:
            return _problem(str(exc), 404)
        except ValueError as exc:
            return _problem(str(exc))
        return _json(202, {"queued": True})

    async def stats(request: web.Request) -> web.Response:
        body = emulator.stats.as_json()
        body["subscriptions"] = len(emulator.subscriptions.items)
        body["notifications_delivered"] = len(emulator.subscriptions.delivered)
        body["notification_failures"] = emulator.subscriptions.failed_deliveries
        return _json(200, body)

    async def requests(request: web.Request) -> web.Response:
        mailbox = request.query.get("mailbox")
        return _json(200, emulator.requests.as_json(mailbox))

    return [
        web.post("/_emulator/reset", reset),
        web.get("/_emulator/requests", requests),
        web.post("/_emulator/faults", set_faults),
        web.delete("/_emulator/faults", clear_faults),
        web.post("/_emulator/invalidate-delta", invalidate),
        web.post("/_emulator/lifecycle", lifecycle),
        web.get("/_emulator/stats", stats),
    ]
