"""Dataverse error responses → the connector error classes (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import orjson

from connectors.errors import (
    AuthError,
    BadRequestError,
    ConnectorError,
    CursorExpiredError,
    ForbiddenError,
    InvalidResponseError,
    NotFoundError,
    PreconditionFailedError,
    ThrottledError,
    TransientError,
)
from connectors.http import parse_retry_after

#: The change token is older than the organisation's change-tracking window.
EXPIRED_VERSION_STAMP: Final = "0x80044352"
#: Seconds to wait after a 429 that carries no usable Retry-After.
DEFAULT_RETRY_AFTER: Final = 2.0


def error_fields(body: bytes) -> tuple[str | None, str]:
    """The ``error.code`` and ``error.message`` of a Dataverse error body (None, "" if garbage)."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None, ""
    if not isinstance(data, dict) or not isinstance(data.get("error"), dict):
        return None, ""
    err = data["error"]
    code = err.get("code") if isinstance(err.get("code"), str) else None
    message = err.get("message") if isinstance(err.get("message"), str) else ""
    return code, str(message)[:1000]


def error_for(
    status: int, headers: Mapping[str, str], body: bytes, what: str, *, safe: bool = True
) -> ConnectorError:
    """The connector error a failed Dataverse response stands for.

    503/504 with a Retry-After become ThrottledError only for ``safe`` requests (a throttled
    error is retried even when unsafe, and a 503/504 may come after the request was applied).
    """
    code, message = error_fields(body)
    text = f"{what}: HTTP {status}" + (f" {code}" if code else "")
    text += f": {message}" if message else " (no readable error body)"
    retry_after = parse_retry_after(_header(headers, "Retry-After"))
    if status == 429:
        wait = retry_after if retry_after is not None else DEFAULT_RETRY_AFTER
        return ThrottledError(text, retry_after=wait, status=429, code=code)
    if status in (503, 504) and retry_after is not None and safe:
        return ThrottledError(text, retry_after=retry_after, status=status, code=code)
    if status >= 500:
        return TransientError(text, status=status, code=code)
    if code == EXPIRED_VERSION_STAMP:
        return CursorExpiredError(text, status=status, code=code)
    kinds: dict[int, type[ConnectorError]] = {
        400: BadRequestError,
        401: AuthError,
        403: ForbiddenError,
        404: NotFoundError,
        412: PreconditionFailedError,
    }
    kind = kinds.get(status)
    if kind is not None:
        return kind(text, status=status, code=code)
    if status == 408:
        return TransientError(text, status=status, code=code)
    return InvalidResponseError(text, status=status, code=code)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, val in headers.items():
        if key.lower() == lowered:
            return val
    return None
