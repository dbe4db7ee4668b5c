"""Raw Graph requests over one httpx client: auth header, per-mailbox limiter, retries of safe
requests, Retry-After, error mapping and validation of the response at the edge."""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from connectors.errors import (
    AuthError,
    ConnectorError,
    CursorExpiredError,
    InvalidResponseError,
    ThrottledError,
    TransientError,
    client_error,
    odata_error,
)
from connectors.graph.credentials import GRAPH_SCOPE
from connectors.http import (
    RETRIABLE_STATUS,
    KeyedLimiter,
    RequestMeter,
    RetryPolicy,
    parse_retry_after,
    safe_to_repeat,
    with_retries,
)

TokenProvider = Callable[[], Awaitable[str]]
"""Returns a bearer access token (cached and refreshed by the provider)."""

GRAPH_CONCURRENCY = 4
GRAPH_BUDGET = 10_000
GRAPH_WINDOW_S = 600.0


def graph_limiter(scale: float = 1.0) -> KeyedLimiter:
    """A limiter at Graph's per-mailbox figures: 4 concurrent, 10,000 requests / 10 minutes."""
    return KeyedLimiter(
        concurrency=GRAPH_CONCURRENCY,
        budget=max(1, int(GRAPH_BUDGET * scale)),
        window_s=GRAPH_WINDOW_S,
    )


@dataclass(frozen=True, slots=True)
class GraphResponse:
    """A successful Graph response: status, headers and the decoded JSON body (None if empty)."""

    status: int
    headers: Mapping[str, str]
    body: dict[str, Any] | None


def _error_code(body: bytes) -> tuple[str | None, str]:
    found = odata_error(body, limit=500)
    return found if found is not None else (None, body[:200].decode("utf-8", errors="replace"))


def error_for(status: int, headers: Mapping[str, str], body: bytes, what: str) -> ConnectorError:
    """The connector error a failed Graph response stands for."""
    code, message = _error_code(body)
    text = (
        f"{what}: HTTP {status}"
        + (f" {code}" if code else "")
        + (f": {message}" if message else "")
    )
    retry_after = parse_retry_after(headers.get("retry-after"))
    if status == 429 or (status == 503 and retry_after is not None):
        return ThrottledError(text, retry_after=retry_after or 1.0, status=status, code=code)
    if status == 410 or code in ("syncStateNotFound", "SyncStateNotFound", "syncStateInvalid"):
        return CursorExpiredError(text, status=status, code=code)
    if status in RETRIABLE_STATUS:
        return TransientError(text, status=status, code=code)
    return client_error(status, text, code) or ConnectorError(text, status=status, code=code)


def decode_body(content: bytes, what: str) -> dict[str, Any] | None:
    """Decode a JSON object body; empty -> None; anything else -> InvalidResponseError."""
    if not content.strip():
        return None
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise InvalidResponseError(f"{what}: response is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidResponseError(f"{what}: response is not a JSON object")
    return data


class GraphTransport:
    """Every Graph call of the connector goes through ``request``."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        token: TokenProvider,
        *,
        limiter: KeyedLimiter | None = None,
        policy: RetryPolicy | None = None,
        timeout_s: float = 30.0,
        user_agent: str | None = None,
        meter: RequestMeter | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")) or "?" in base_url:
            raise ValueError(f"Graph base URL must be http(s) without a query: {base_url[:80]!r}")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self._http = http
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._limiter = limiter or graph_limiter()
        self._policy = policy or RetryPolicy()
        self._timeout = timeout_s
        self._meter = meter
        #: names this process in the service's logs (Microsoft asks callers to identify)
        self.user_agent = user_agent or f"Dynasync/1 (pid {os.getpid()})"

    def url(self, path_or_url: str) -> str:
        """An absolute URL for a path relative to the base (absolute links pass unchanged)."""
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    async def request(
        self,
        mailbox: str,
        method: str,
        path_or_url: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        safe: bool | None = None,
    ) -> GraphResponse:
        """Send one request on behalf of ``mailbox``; retry when it is safe to repeat."""
        hdrs = dict(headers or {})
        repeatable = safe_to_repeat(method, hdrs) if safe is None else safe
        url = self.url(path_or_url)
        what = f"{method} {url.split('?')[0]}"

        async def once() -> GraphResponse:
            return await self._once(mailbox, method, url, json, hdrs, params, what)

        return await with_retries(once, policy=self._policy, safe=repeatable)

    async def _once(
        self,
        mailbox: str,
        method: str,
        url: str,
        json: Any,
        headers: dict[str, str],
        params: Mapping[str, str] | None,
        what: str,
    ) -> GraphResponse:
        token = await self._token()
        send = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "User-Agent": self.user_agent,
            **headers,
        }
        content = None
        if json is not None:
            content = orjson.dumps(json)
            send["Content-Type"] = "application/json"
        async with self._limiter.slot(mailbox):
            try:
                resp = await self._http.request(
                    method, url, content=content, headers=send, params=params, timeout=self._timeout
                )
            except httpx.TimeoutException as exc:
                self._count(None)
                raise TransientError(f"{what}: timed out ({type(exc).__name__})") from None
            except httpx.TransportError as exc:
                self._count(None)
                raise TransientError(f"{what}: {type(exc).__name__}") from None
        self._count(resp.status_code)
        if resp.status_code >= 400:
            err = error_for(resp.status_code, resp.headers, resp.content, what)
            if isinstance(err, ThrottledError):
                self._limiter.backoff(mailbox, err.retry_after)
            raise err
        if resp.status_code >= 300:
            raise InvalidResponseError(f"{what}: unexpected HTTP {resp.status_code}")
        return GraphResponse(resp.status_code, resp.headers, decode_body(resp.content, what))

    def _count(self, status: int | None) -> None:
        if self._meter is not None:
            self._meter.request_done("graph", status)


def token_provider(credential: object, scope: str = GRAPH_SCOPE) -> TokenProvider:
    """A TokenProvider over an azure-identity credential (sync or async ``get_token``), caching
    the token until five minutes before it expires."""
    get_token = getattr(credential, "get_token", None)
    if get_token is None:
        raise TypeError("credential has no get_token method")
    cache: dict[str, tuple[str, float]] = {}

    async def provide() -> str:
        now = time.time()
        hit = cache.get(scope)
        if hit is not None and hit[1] - 300 > now:
            return hit[0]
        result = get_token(scope)
        if inspect.isawaitable(result):
            result = await result
        token, expires = getattr(result, "token", None), getattr(result, "expires_on", None)
        if not isinstance(token, str) or not isinstance(expires, int | float):
            raise AuthError("credential returned no access token")
        cache[scope] = (token, float(expires))
        return token

    return provide
