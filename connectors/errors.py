"""The one error root of the connectors package. ``retriable`` says whether to try again."""

from __future__ import annotations

import orjson


class ConnectorError(Exception):
    """Root of every error a connector raises."""

    retriable: bool = False

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class TransientError(ConnectorError):
    """A failure that may pass: 5xx, timeouts, connection resets."""

    retriable = True


class ThrottledError(TransientError):
    """The service asked us to slow down (429, or 503 with Retry-After)."""

    def __init__(
        self, message: str, *, retry_after: float, status: int = 429, code: str | None = None
    ):
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class AuthError(ConnectorError):
    """Authentication failed (401) or a token could not be obtained."""


class ForbiddenError(ConnectorError):
    """The caller may not do this (403), e.g. an impersonated user without the privilege."""


class NotFoundError(ConnectorError):
    """The item does not exist (404)."""


class PreconditionFailedError(ConnectorError):
    """If-Match / If-None-Match did not hold (412): someone else changed the item."""


class CursorExpiredError(ConnectorError):
    """The resume cursor is no longer valid (Graph 410, Dataverse 0x80044352): full resync."""


class InvalidResponseError(ConnectorError):
    """The service answered something that is not what its API promises."""


class BadRequestError(ConnectorError):
    """The service rejected our request as malformed (400): a bug or bad data, never retried."""


_BY_STATUS: dict[int, type[ConnectorError]] = {
    400: BadRequestError,
    401: AuthError,
    403: ForbiddenError,
    404: NotFoundError,
    412: PreconditionFailedError,
}


def client_error(status: int, text: str, code: str | None) -> ConnectorError | None:
    """The error a 4xx status means on both services (400, 401, 403, 404, 412), else None."""
    kind = _BY_STATUS.get(status)
    return None if kind is None else kind(text, status=status, code=code)


def odata_error(body: bytes, *, limit: int = 1000) -> tuple[str | None, str] | None:
    """``error.code`` and ``error.message`` of an OData JSON error body (Graph and Dataverse
    share the shape); None when the body is not JSON at all."""

    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("error"), dict):
        return None, ""
    err = data["error"]
    code = err.get("code") if isinstance(err.get("code"), str) else None
    message = err.get("message") if isinstance(err.get("message"), str) else ""
    return code, str(message)[:limit]
