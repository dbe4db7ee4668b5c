"""Dataverse-style errors: ``{"error": {"code": "0x…", "message": "…"}}``."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

ODATA_BAD_REQUEST = "0x80060888"
RESOURCE_NOT_FOUND = "0x8006088a"
OBJECT_DOES_NOT_EXIST = "0x80040217"
DUPLICATE_RECORD = "0x80040237"
CONCURRENCY_VERSION_MISMATCH = "0x80060882"
PRIVILEGE_DENIED = "0x80040220"
EXPIRED_VERSION_STAMP = "0x80044352"
INVALID_ARGUMENT = "0x80040203"
DIRECT_LOOKUP_UPDATE = "0x80048d19"
UNEXPECTED = "0x80040216"
REQUESTS_LIMIT = "0x80072322"
EXECUTION_TIME_LIMIT = "0x80072321"
CONCURRENCY_LIMIT = "0x80072326"


class ApiError(Exception):
    """An error answered to the client with the service's JSON error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        """The JSON error body."""
        return error_body(self.code, self.message)


def error_body(code: str, message: str) -> bytes:
    """Serialize an error the way Dataverse does."""
    return orjson.dumps({"error": {"code": code, "message": message}})


def bad_request(message: str, code: str = ODATA_BAD_REQUEST) -> ApiError:
    """400 with an OData parsing code by default."""
    return ApiError(400, code, message)


def not_found(logical: str, row_id: str) -> ApiError:
    """404 for a missing row, worded like the service."""
    return ApiError(404, OBJECT_DOES_NOT_EXIST, f"{logical} With Id = {row_id} Does Not Exist")


def unknown_property(logical: str, name: str) -> ApiError:
    """400 for a property the table does not declare."""
    return bad_request(
        f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{logical}'."
    )
