"""The one request choke point for the Dataverse Web API: bearer token, OData headers,
impersonation, per-user limiter, retries of safe requests honouring Retry-After, error mapping
and validation of every response at the edge."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import aiohttp
import orjson

from connectors.dataverse.auth import TokenProvider
from connectors.dataverse.errors import error_for
from connectors.errors import (
    ConnectorError,
    InvalidResponseError,
    ThrottledError,
    TransientError,
)
from connectors.http import KeyedLimiter, RequestMeter, RetryPolicy, safe_to_repeat, with_retries

#: Dataverse service protection, per user: 52 concurrent, 6,000 requests per 5 minutes.
DATAVERSE_CONCURRENCY: Final = 52
DATAVERSE_BUDGET: Final = 6000
DATAVERSE_WINDOW_S: Final = 300.0
#: Limiter key of requests that run as the application user itself.
APP_USER: Final = "app"

CallerHeader = Literal["MSCRMCallerID", "CallerObjectId"]


def dataverse_limiter(scale: float = 1.0) -> KeyedLimiter:
    """A per-user limiter at Dataverse's figures (``scale`` multiplies both counts)."""
    return KeyedLimiter(
        concurrency=max(1, int(DATAVERSE_CONCURRENCY * scale)),
        budget=max(1, int(DATAVERSE_BUDGET * scale)),
        window_s=DATAVERSE_WINDOW_S,
    )


@dataclass(frozen=True, slots=True)
class DataverseResponse:
    """A successful response: status, headers (lower-cased names) and raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        """The body as a JSON object, or InvalidResponseError."""
        return parse_object(self.body, f"HTTP {self.status} body")


def parse_object(body: bytes, what: str) -> dict[str, Any]:
    """Decode ``body`` as a JSON object; anything else is an InvalidResponseError."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidResponseError(f"{what} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidResponseError(f"{what} is not a JSON object")
    return data


class DataverseClient:
    """Sends Web API requests to one organisation.

    ``base_url`` is the API root (``https://org.crm.dynamics.com/api/data/v9.2``). Requests that
    carry ``run_as`` impersonate that systemuser (``caller_header`` picks ``MSCRMCallerID`` for a
    systemuserid or ``CallerObjectId`` for an Entra object id) and count against its limiter key.
    """

    def __init__(
        self,
        base_url: str,
        token: TokenProvider,
        *,
        policy: RetryPolicy | None = None,
        limiter: KeyedLimiter | None = None,
        caller_header: CallerHeader = "MSCRMCallerID",
        timeout_s: float = 120.0,
        meter: RequestMeter | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._token = token
        self.policy = policy or RetryPolicy()
        self.limiter = limiter or dataverse_limiter()
        self.caller_header: CallerHeader = caller_header
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self.meter = meter
        """Told of every request sent (each attempt)."""

    async def start(self) -> None:
        """Open the HTTP session."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def stop(self) -> None:
        """Close the session and the token provider."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._token.close()

    async def __aenter__(self) -> DataverseClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` (relative to the API root, or absolute on its origin)."""
        if path.startswith(("http://", "https://")):
            parts = urlsplit(path)
            if f"{parts.scheme}://{parts.netloc}" != self._origin:
                raise InvalidResponseError(f"link {path[:120]!r} leaves {self._origin}")
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def caller_headers(self, run_as: str | None) -> dict[str, str]:
        """The impersonation header for ``run_as`` (empty for the application user)."""
        return {self.caller_header: run_as} if run_as else {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        run_as: str | None = None,
        upsert: bool = False,
        safe: bool | None = None,
        what: str | None = None,
    ) -> DataverseResponse:
        """Send one request (retried if safe to repeat); raise a ConnectorError on failure.

        ``safe`` overrides the method/header rule (a ``$batch`` of idempotent operations is safe).
        """
        hdrs = {
            "Accept": "application/json",
            "OData-Version": "4.0",
            "OData-MaxVersion": "4.0",
            **self.caller_headers(run_as),
            **(headers or {}),
        }
        data = body
        if json is not None:
            data = orjson.dumps(json)
            hdrs.setdefault("Content-Type", "application/json; charset=utf-8")
        url = self.url(path)
        label = what or f"{method} {urlsplit(url).path.rsplit('/', 1)[-1][:60]}"
        repeat = safe if safe is not None else safe_to_repeat(method, hdrs, upsert=upsert)
        key = run_as or APP_USER

        async def once() -> DataverseResponse:
            return await self._send(method, url, hdrs, data, key, label, repeat)

        return await with_retries(once, policy=self.policy, safe=repeat)

    async def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        data: bytes | None,
        key: str,
        what: str,
        safe: bool,
    ) -> DataverseResponse:
        if self._session is None:
            raise RuntimeError("DataverseClient is not started")
        headers = {**headers, "Authorization": f"Bearer {await self._token.token()}"}
        async with self.limiter.slot(key):
            try:
                async with self._session.request(
                    method, url, data=data, headers=headers, allow_redirects=False
                ) as resp:
                    raw = await resp.read()
                    status = resp.status
                    got = {k.lower(): v for k, v in resp.headers.items()}
                    content_type = resp.content_type
            except (TimeoutError, aiohttp.ClientError) as exc:
                if self.meter is not None:
                    self.meter.request_done("dataverse", None)
                raise TransientError(f"{what}: {type(exc).__name__}: {exc}") from exc
        if self.meter is not None:
            self.meter.request_done("dataverse", status)
        if status >= 400:
            err: ConnectorError = error_for(status, got, raw, what, safe=safe)
            if isinstance(err, ThrottledError):
                self.limiter.backoff(key, min(err.retry_after, self.policy.max_retry_after))
            raise err
        if not 200 <= status < 300:
            raise InvalidResponseError(f"{what}: unexpected HTTP {status}", status=status)
        if raw and content_type not in ("application/json", "multipart/mixed"):
            raise InvalidResponseError(f"{what}: unexpected content type {content_type!r}")
        return DataverseResponse(status, got, raw)

    async def get_json(
        self,
        path: str,
        *,
        prefer: str | None = None,
        run_as: str | None = None,
        what: str | None = None,
    ) -> dict[str, Any]:
        """GET ``path`` and return its JSON object body."""
        headers = {"Prefer": prefer} if prefer else None
        resp = await self.request("GET", path, headers=headers, run_as=run_as, what=what)
        return resp.json()
