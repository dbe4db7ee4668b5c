"""Dataverse error responses → the connector error classes (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from connectors.errors import (
    ConnectorError,
    CursorExpiredError,
    InvalidResponseError,
    ThrottledError,
    TransientError,
    client_error,
    odata_error,
)
from connectors.http import parse_retry_after

#: The change token is older than the organisation's change-tracking window.
EXPIRED_VERSION_STAMP: Final = "0x80044352"
#: Seconds to wait after a 429 that carries no usable Retry-After.
DEFAULT_RETRY_AFTER: Final = 2.0


def error_fields(body: bytes) -> tuple[str | None, str]:
    """The ``error.code`` and ``error.message`` of a Dataverse error body (None, "" if garbage)."""
    return odata_error(body) or (None, "")


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
    known = client_error(status, text, code)
    if known is not None:
        return known
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
