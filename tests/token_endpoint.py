"""A tiny local managed-identity token endpoint (the App Service protocol azure-identity's
``ManagedIdentityCredential`` speaks when ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` are set),
serving unsigned JWTs that Kafka's default (unsecured) OAUTHBEARER validator accepts."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer


def unsigned_jwt(subject: str, lifetime_s: int = 3600) -> str:
    """A JWT with ``alg: none`` for ``subject``, valid for ``lifetime_s``."""

    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")

    now = int(time.time())
    return f"{part({'alg': 'none'})}.{part({'sub': subject, 'iat': now, 'exp': now + lifetime_s})}."


@dataclass
class TokenEndpoint:
    """What the endpoint served; ``url`` and ``secret`` go to IDENTITY_ENDPOINT/_HEADER."""

    url: str
    secret: str
    subject: str
    resources: list[str] = field(default_factory=list)
    refused: int = 0


@asynccontextmanager
async def token_endpoint(
    subject: str, secret: str = "local-identity-header"
) -> AsyncIterator[TokenEndpoint]:
    """Serve tokens for ``subject`` on a free port while the block runs."""
    seen = TokenEndpoint(url="", secret=secret, subject=subject)

    async def issue(request: web.Request) -> web.Response:
        if request.headers.get("X-IDENTITY-HEADER") != secret:
            seen.refused += 1
            return web.json_response({"error": "invalid_request"}, status=400)
        resource = request.query.get("resource", "")
        seen.resources.append(resource)
        body = {
            "access_token": unsigned_jwt(subject),
            "expires_on": str(int(time.time()) + 3600),
            "resource": resource,
            "token_type": "Bearer",
        }
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/msi/token", issue)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    seen.url = str(server.make_url("/msi/token"))
    try:
        yield seen
    finally:
        await server.close()
