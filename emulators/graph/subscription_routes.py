"""``/subscriptions`` routes."""

from __future__ import annotations

from .routing import Context, Request, Response, Router


def _one(req: Request, body: dict[str, object]) -> dict[str, object]:
    return {"@odata.context": f"{req.base}/$metadata#subscriptions/$entity", **body}


async def create(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    sub = await ctx.subscriptions.create(req.json(), req.app_id, req.immutable_ids())
    return Response(201, _one(req, sub.as_json()))


async def list_all(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    value = [s.as_json() for s in ctx.subscriptions.items.values()]
    return Response(200, {"@odata.context": f"{req.base}/$metadata#subscriptions", "value": value})


async def get_one(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    return Response(200, _one(req, ctx.subscriptions.get(p["s"]).as_json()))


async def renew(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    return Response(200, _one(req, ctx.subscriptions.renew(p["s"], req.json()).as_json()))


async def delete(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    ctx.subscriptions.delete(p["s"])
    return Response(204)


def register(router: Router) -> None:
    """Add the subscription routes."""
    router.add("POST", "/subscriptions", create)
    router.add("GET", "/subscriptions", list_all)
    router.add("GET", "/subscriptions/{s}", get_one)
    router.add("PATCH", "/subscriptions/{s}", renew)
    router.add("DELETE", "/subscriptions/{s}", delete)
