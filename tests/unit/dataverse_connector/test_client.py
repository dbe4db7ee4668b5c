"""The Dataverse client against a scripted local HTTP server: retries only of safe requests,
Retry-After, impersonation and OData headers, validation of bodies at the edge."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from connectors.dataverse.auth import StaticToken, org_scope
from connectors.dataverse.client import DataverseClient
from connectors.errors import (
    CursorExpiredError,
    InvalidResponseError,
    ThrottledError,
    TransientError,
)
from connectors.http import RetryPolicy

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.02, max_retry_after=0.2)


@dataclass
class Script:
    """Answers queued per request; records what came in."""

    answers: list[web.Response] = field(default_factory=list)
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, dict(request.headers)))
        self.times.append(time.monotonic())
        if self.answers:
            return self.answers.pop(0)
        return web.json_response({"value": []})


@pytest.fixture
async def served() -> AsyncIterator[tuple[Script, DataverseClient]]:
    script = Script()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", script.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = DataverseClient(
        f"http://127.0.0.1:{server.port}/api/data/v9.2", StaticToken("tok"), policy=FAST
    )
    async with client:
        yield script, client
    await server.close()


def unavailable() -> web.Response:
    return web.json_response({"error": {"code": "x", "message": "busy"}}, status=503)


async def test_get_is_retried_and_headers_are_odata(
    served: tuple[Script, DataverseClient],
) -> None:
    script, client = served
    script.answers = [unavailable(), unavailable()]
    body = await client.get_json("contacts", prefer="odata.maxpagesize=5")
    assert body == {"value": []}
    assert len(script.seen) == 3
    headers = script.seen[-1][1]
    assert headers["Authorization"] == "Bearer tok"
    assert headers["OData-Version"] == "4.0" and headers["OData-MaxVersion"] == "4.0"
    assert headers["Prefer"] == "odata.maxpagesize=5"
    assert "MSCRMCallerID" not in headers


async def test_post_is_not_retried_on_503(served: tuple[Script, DataverseClient]) -> None:
    script, client = served
    script.answers = [unavailable()]
    with pytest.raises(TransientError):
        await client.request("POST", "contacts", json={"lastname": "x"})
    assert len(script.seen) == 1


@pytest.mark.parametrize(
    ("method", "headers", "upsert", "tries"),
    [
        ("PATCH", {}, False, 1),
        ("PATCH", {}, True, 2),
        ("PATCH", {"If-Match": 'W/"3"'}, False, 2),
        ("DELETE", {}, False, 2),
    ],
)
async def test_patch_retried_only_when_idempotent(
    served: tuple[Script, DataverseClient],
    method: str,
    headers: dict[str, str],
    upsert: bool,
    tries: int,
) -> None:
    script, client = served
    script.answers = [web.Response(status=504), web.Response(status=204)]
    try:
        await client.request(
            method, "contacts(1)", json={"a": 1}, headers=headers, upsert=upsert, run_as="u1"
        )
    except TransientError:
        assert tries == 1
    assert len(script.seen) == tries
    assert script.seen[0][1]["MSCRMCallerID"] == "u1"


async def test_429_is_retried_after_retry_after_even_for_post(
    served: tuple[Script, DataverseClient],
) -> None:
    script, client = served
    script.answers = [
        web.json_response(
            {"error": {"code": "0x80072322", "message": "limit"}},
            status=429,
            headers={"Retry-After": "1"},
        ),
        web.Response(status=204),
    ]
    await client.request("POST", "contacts", json={"lastname": "x"})
    assert len(script.seen) == 2
    assert script.times[1] - script.times[0] >= 0.15  # capped at max_retry_after=0.2


async def test_429_storm_gives_up_with_throttled_error(
    served: tuple[Script, DataverseClient],
) -> None:
    script, client = served
    script.answers = [web.Response(status=429, headers={"Retry-After": "0"}) for _ in range(9)]
    with pytest.raises(ThrottledError):
        await client.get_json("contacts")
    assert len(script.seen) == FAST.attempts


async def test_expired_token_maps_to_cursor_expired(
    served: tuple[Script, DataverseClient],
) -> None:
    script, client = served
    script.answers = [
        web.json_response({"error": {"code": "0x80044352", "message": "expired"}}, status=400)
    ]
    with pytest.raises(CursorExpiredError):
        await client.get_json("contacts?$deltatoken=1")
    assert len(script.seen) == 1


@pytest.mark.parametrize(
    "answer",
    [
        web.Response(status=200, body=b"[1]", content_type="application/json"),
        web.Response(status=200, body=b"{not json", content_type="application/json"),
        web.Response(status=200, body=b"<html>", content_type="text/html"),
        web.Response(status=302, headers={"Location": "http://elsewhere/"}),
    ],
)
async def test_garbage_success_is_an_invalid_response(
    served: tuple[Script, DataverseClient], answer: web.Response
) -> None:
    script, client = served
    script.answers = [answer]
    with pytest.raises(InvalidResponseError):
        await client.get_json("contacts")


async def test_links_may_not_leave_the_origin(served: tuple[Script, DataverseClient]) -> None:
    _, client = served
    with pytest.raises(InvalidResponseError, match="leaves"):
        await client.get_json("http://evil.test/api/data/v9.2/contacts")


def test_bad_configuration_is_rejected() -> None:
    with pytest.raises(ValueError):
        DataverseClient("not a url", StaticToken("t"))
    with pytest.raises(ValueError):
        StaticToken("has space")
    with pytest.raises(ValueError):
        org_scope("ftp://x")
    assert org_scope("https://contoso.crm4.dynamics.com/api/data/v9.2") == (
        "https://contoso.crm4.dynamics.com/.default"
    )


@pytest.mark.parametrize(
    "page",
    [
        {"values": []},
        {"value": {"systemuserid": "x"}},
        {"value": [{"fullname": "no id"}]},
        {"value": [{"systemuserid": ""}]},
        {"value": ["not an object"]},
        {"value": [], "@odata.nextLink": 7},
    ],
)
async def test_enabled_users_refuses_garbage_pages(
    served: tuple[Script, DataverseClient], page: dict[str, object]
) -> None:
    from connectors.dataverse.users import enabled_users
    from connectors.errors import InvalidResponseError

    script, client = served
    script.answers = [web.json_response(page)]
    with pytest.raises(InvalidResponseError, match="enabled CRM users"):
        await enabled_users(client)
