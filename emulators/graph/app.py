"""``create_app(config)``: the aiohttp application serving ``/v1.0`` and ``/_emulator``."""

from __future__ import annotations

import orjson
from aiohttp import web

from .config import EmulatorConfig
from .control import routes as control_routes
from .errors import error_body
from .ids import new_guid
from .routing import Request, Response
from .state import Emulator

EMULATOR_KEY: web.AppKey[Emulator] = web.AppKey("graph_emulator", Emulator)


def _send(response: Response) -> web.Response:
    if response.body is None:
        return web.Response(status=response.status, headers=response.headers)
    if isinstance(response.body, bytes):
        return web.Response(status=response.status, body=response.body, headers=response.headers)
    headers = dict(response.headers)
    headers["Content-Type"] = "application/json; odata.metadata=minimal; charset=utf-8"
    return web.Response(status=response.status, body=orjson.dumps(response.body), headers=headers)


def _unauthorized(request: web.Request, message: str) -> web.Response:
    request_id = new_guid()
    body = error_body(
        "InvalidAuthenticationToken", message, request_id, request.headers.get("client-request-id")
    )
    return _send(
        Response(
            401,
            body,
            {
                "WWW-Authenticate": 'Bearer realm="", error="invalid_token"',
                "request-id": request_id,
            },
        )
    )


def create_app(config: EmulatorConfig) -> web.Application:
    """A fresh emulator; its state is reachable as ``app[EMULATOR_KEY]``."""
    emulator = Emulator(config)
    app = web.Application(client_max_size=config.max_body_bytes)
    app[EMULATOR_KEY] = emulator

    async def graph(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if not auth:
            return _unauthorized(request, "Access token is empty.")
        if scheme.lower() != "bearer" or not token.strip():
            return _unauthorized(request, "Access token validation failure. Invalid audience.")
        if config.accepted_tokens and token.strip() not in config.accepted_tokens:
            return _unauthorized(request, "Access token validation failure.")
        origin = config.base_url or f"{request.scheme}://{request.host}"
        req = Request(
            method=request.method,
            path=request.match_info["tail"],
            query={k: v for k, v in request.query.items()},
            headers=dict(request.headers),
            body=await request.read(),
            base=f"{origin}/v1.0",
            app_id=token.strip(),
        )
        return _send(await emulator.dispatch(req))

    async def on_startup(_: web.Application) -> None:
        await emulator.subscriptions.start()

    async def on_cleanup(_: web.Application) -> None:
        await emulator.subscriptions.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.add_routes(control_routes(emulator))
    app.router.add_route("*", "/v1.0/{tail:.*}", graph)
    return app
