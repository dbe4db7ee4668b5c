"""Graph's error body and the exception handlers raise to produce it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


class GraphError(Exception):
    """An error answered with Graph's ``{"error": {...}}`` body."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def bad_request(message: str, code: str = "BadRequest") -> GraphError:
    """A 400 with the given code."""
    return GraphError(400, code, message)


def not_found(what: str) -> GraphError:
    """Graph's 404 for a missing item."""
    return GraphError(
        404, "ErrorItemNotFound", f"The specified object was not found in the store. ({what})"
    )


def error_body(
    code: str, message: str, request_id: str, client_request_id: str | None
) -> dict[str, Any]:
    """The JSON body Graph sends with every error."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": now,
                "request-id": request_id,
                "client-request-id": client_request_id or request_id,
            },
        }
    }
