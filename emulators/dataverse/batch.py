"""``$batch``: multipart/mixed parsing, atomic changesets with Content-ID references."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import urlsplit

from .errors import INVALID_ARGUMENT, ApiError, bad_request
from .messages import ApiRequest, ApiResponse, Headers, parse_prefer, parse_query

API_PREFIX = "/api/data/v9.2/"
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_REQUEST_LINE = re.compile(r"^(GET|POST|PATCH|PUT|DELETE) (\S+) HTTP/1\.[01]$")
_ENTITY_ID = re.compile(r"/([A-Za-z_][A-Za-z0-9_]*)\(([0-9a-fA-F-]{36})\)$")


@dataclass
class Operation:
    """One request inside a batch."""

    request: ApiRequest
    content_id: str | None


@dataclass
class ChangeSet:
    """Operations applied atomically."""

    operations: list[Operation] = field(default_factory=list)


Part = Operation | ChangeSet


def boundary_of(content_type: str) -> str:
    """The multipart boundary of a ``multipart/mixed`` content type, or 400."""
    if not content_type.lower().startswith("multipart/mixed"):
        raise bad_request("The $batch request must have Content-Type multipart/mixed; boundary=…")
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise bad_request("The multipart/mixed Content-Type has no boundary.")
    return match.group(1)


def _split(body: bytes, boundary: str) -> list[bytes]:
    text = body.replace(b"\r\n", b"\n")
    delimiter = b"--" + boundary.encode()
    if delimiter + b"--" not in text:
        raise bad_request(f"The multipart body does not end with the '--{boundary}--' delimiter.")
    text = text.split(delimiter + b"--", 1)[0]
    chunks = text.split(delimiter)
    return [c.strip(b"\n") + b"\n" for c in chunks[1:]]


def _headers_and_body(chunk: bytes) -> tuple[Headers, bytes]:
    head, sep, body = chunk.partition(b"\n\n")
    if not sep:
        head, body = chunk, b""
    items: list[tuple[str, str]] = []
    for line in head.decode("utf-8", "replace").split("\n"):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise bad_request(f"Malformed header line in a batch part: '{line[:80]}'.")
        items.append((name.strip(), value.strip()))
    return Headers(items), body


def _operation(chunk: bytes, outer: Headers, count: list[int], limit: int) -> Operation:
    part_headers, payload = _headers_and_body(chunk)
    if not part_headers.get("Content-Type", "").lower().startswith("application/http"):
        raise bad_request("Each batch part must have Content-Type application/http.")
    count[0] += 1
    if count[0] > limit:
        raise bad_request(
            f"The number of requests in the batch exceeds the limit of {limit}.", INVALID_ARGUMENT
        )
    request_line, _, rest = payload.partition(b"\n")
    match = _REQUEST_LINE.match(request_line.decode("utf-8", "replace").strip())
    if match is None:
        shown = request_line[:80].decode("utf-8", "replace")
        raise bad_request(f"Malformed request line in a batch part: '{shown}'.")
    inner_headers, body = _headers_and_body(rest)
    method, target = match.group(1), match.group(2)
    path, query = _relative(target)
    inherited = [
        (k, v) for k, v in outer.items() if k.lower() in ("callerobjectid", "mscrmcallerid")
    ]
    headers = Headers(inherited).merged(inner_headers.items())
    request = ApiRequest(method, path, parse_query(query), headers, body.rstrip(b"\n"))
    return Operation(request, part_headers.get("Content-ID"))


def _relative(target: str) -> tuple[str, str]:
    if target.startswith("$"):
        path, _, query = target.partition("?")
        return path, query
    parts = urlsplit(target)
    path = parts.path
    if path.startswith(API_PREFIX):
        path = path[len(API_PREFIX) :]
    elif path.startswith("/"):
        raise bad_request(f"The batch request URL '{target[:120]}' is outside {API_PREFIX}.")
    return path, parts.query


def parse_batch(body: bytes, content_type: str, outer: Headers, limit: int) -> list[Part]:
    """Parse a ``$batch`` body into operations and changesets (400 if malformed or too big)."""
    boundary = boundary_of(content_type)
    count = [0]
    parts: list[Part] = []
    for chunk in _split(body, boundary):
        headers, inner = _headers_and_body(chunk)
        kind = headers.get("Content-Type", "")
        if kind.lower().startswith("multipart/mixed"):
            changeset = ChangeSet()
            for sub in _split(inner, boundary_of(kind)):
                op = _operation(sub, outer, count, limit)
                if op.request.method == "GET":
                    raise bad_request("A changeset cannot contain GET requests.")
                changeset.operations.append(op)
            parts.append(changeset)
        else:
            op = _operation(chunk, outer, count, limit)
            if op.request.method != "GET":
                raise bad_request("Write operations in a $batch must be inside a changeset.")
            parts.append(op)
    if count[0] == 0:
        raise bad_request("The $batch request contains no operations.")
    return parts


Executor = Callable[[ApiRequest, dict[str, tuple[str, str]]], ApiResponse]


def _http_part(response: ApiResponse, content_id: str | None) -> bytes:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        lines.append(f"Content-ID: {content_id}")
    reason = HTTPStatus(response.status).phrase
    lines += ["", f"HTTP/1.1 {response.status} {reason}"]
    lines += [f"{k}: {v}" for k, v in response.headers.items()]
    lines += ["", ""]
    return "\r\n".join(lines).encode() + response.body + b"\r\n"


def _error_response(exc: ApiError) -> ApiResponse:
    response = ApiResponse.json(exc.status, {"error": {"code": exc.code, "message": exc.message}})
    response.headers.update(exc.headers)
    return response


def execute_batch(
    parts: list[Part],
    outer: Headers,
    run: Executor,
    atomic: Callable[[], AbstractContextManager[object]],
) -> tuple[bytes, str]:
    """Run the parts in order; returns the multipart body and its content type."""
    continue_on_error = parse_prefer(outer).continue_on_error
    boundary = f"batchresponse_{uuid.uuid4()}"
    out: list[bytes] = []
    for part in parts:
        if isinstance(part, Operation):
            try:
                response = run(part.request, {})
            except ApiError as exc:
                response = _error_response(exc)
            out.append(_http_part(response, part.content_id))
            if response.status >= 400 and not continue_on_error:
                break
            continue
        ids: dict[str, tuple[str, str]] = {}
        done: list[tuple[ApiResponse, str | None]] = []
        failure: tuple[ApiResponse, str | None] | None = None
        try:
            with atomic():
                for op in part.operations:
                    try:
                        response = run(op.request, ids)
                    except ApiError as exc:
                        failure = (_error_response(exc), op.content_id)
                        raise
                    done.append((response, op.content_id))
                    _remember(op, response, ids)
        except ApiError:
            pass
        if failure is not None:
            out.append(_http_part(*failure))
            if not continue_on_error:
                break
            continue
        cs_boundary = f"changesetresponse_{uuid.uuid4()}"
        inner = b"".join(
            f"--{cs_boundary}\r\n".encode() + _http_part(resp, cid) for resp, cid in done
        )
        inner += f"--{cs_boundary}--\r\n".encode()
        out.append(
            f"Content-Type: multipart/mixed; boundary={cs_boundary}\r\n\r\n".encode() + inner
        )
    body = b"".join(f"--{boundary}\r\n".encode() + chunk for chunk in out)
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/mixed; boundary={boundary}"


def _remember(op: Operation, response: ApiResponse, ids: dict[str, tuple[str, str]]) -> None:
    if op.content_id is None:
        return
    entity_id = response.headers.get("OData-EntityId")
    if entity_id is None:
        return
    match = _ENTITY_ID.search(entity_id)
    if match is not None:
        ids[f"${op.content_id}"] = (match.group(1), match.group(2))
