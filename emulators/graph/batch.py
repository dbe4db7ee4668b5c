"""JSON batching: ``POST /$batch`` with ``dependsOn`` and 424 for failed dependencies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from .errors import GraphError, error_body
from .ids import new_guid
from .routing import Request, Response

Dispatch = Callable[[Request], Awaitable[Response]]
_METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})


def _bad(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


def _validate(body: Any, limit: int) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
        raise _bad("Invalid batch payload format: a 'requests' array is required.")
    requests: list[dict[str, Any]] = body["requests"]
    if not requests:
        raise _bad("Invalid batch payload format: 'requests' is empty.")
    if len(requests) > limit:
        raise _bad(f"Number of requests in a batch cannot exceed {limit}.")
    seen: set[str] = set()
    for item in requests:
        if not isinstance(item, dict):
            raise _bad("Each batch request must be a JSON object.")
        rid, method, url = item.get("id"), item.get("method"), item.get("url")
        if not isinstance(rid, str) or not rid:
            raise _bad("Each batch request needs a string 'id'.")
        if rid in seen:
            raise _bad(f"Request id '{rid}' is duplicated.")
        if not isinstance(method, str) or method.upper() not in _METHODS:
            raise _bad(f"Request id '{rid}': invalid method.")
        if not isinstance(url, str) or not url or "://" in url:
            raise _bad(f"Request id '{rid}': 'url' must be a relative URL.")
        headers = item.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise _bad(f"Request id '{rid}': 'headers' must map strings to strings.")
        if "body" in item and not any(k.lower() == "content-type" for k in headers):
            raise _bad(f"Write request id : {rid} does not contain Content-Type header or body.")
        depends = item.get("dependsOn", [])
        if not isinstance(depends, list) or not all(d in seen for d in depends):
            raise _bad(f"Request id '{rid}': dependsOn must list ids of earlier requests.")
        seen.add(rid)
    return requests


def _to_request(outer: Request, item: dict[str, Any]) -> Request:
    parts = urlsplit(item["url"])
    path = parts.path if parts.path.startswith("/") else "/" + parts.path
    if path.lower().startswith("/v1.0/"):
        path = path[len("/v1.0") :]
    body = item.get("body")
    raw = b"" if body is None else orjson.dumps(body)
    return Request(
        method=item["method"].upper(),
        path=path,
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
        headers=dict(item.get("headers") or {}),
        body=raw,
        base=outer.base,
        app_id=outer.app_id,
    )


async def run_batch(outer: Request, dispatch: Dispatch, limit: int) -> Response:
    """Run each request in order through ``dispatch``; return Graph's batch response body."""
    requests = _validate(outer.json(), limit)
    status: dict[str, int] = {}
    responses: list[dict[str, Any]] = []
    for item in requests:
        failed = [d for d in item.get("dependsOn", []) if status.get(d, 500) >= 400]
        if failed:
            code = 424
            entry: dict[str, Any] = {
                "id": item["id"],
                "status": code,
                "headers": {"Content-Type": "application/json"},
                "body": error_body(
                    "FailedDependency",
                    f"Dependent request(s) {', '.join(failed)} failed.",
                    new_guid(),
                    None,
                ),
            }
        else:
            result = await dispatch(_to_request(outer, item))
            code = result.status
            headers = dict(result.headers)
            entry = {"id": item["id"], "status": code, "headers": headers}
            if result.body is not None:
                headers.setdefault("Content-Type", "application/json")
                entry["body"] = result.body
        status[item["id"]] = code
        responses.append(entry)
    return Response(200, {"responses": responses})
