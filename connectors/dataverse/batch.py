"""``$batch`` bodies: build multipart/mixed requests with changesets, parse the responses.

Pure functions; a response that is not a well-formed multipart reply is an
InvalidResponseError, never a crash.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from connectors.dataverse.client import parse_object
from connectors.errors import InvalidResponseError

#: Most operations Dataverse accepts in one ``$batch``.
MAX_BATCH_OPERATIONS: Final = 1000

_BOUNDARY = re.compile(r'boundary="?([^";\s]+)"?', re.IGNORECASE)
_STATUS_LINE = re.compile(r"^HTTP/1\.[01] (\d{3})(?: .*)?$")


@dataclass(frozen=True, slots=True)
class BatchOperation:
    """One write inside a changeset; ``url`` is absolute or relative to the API root."""

    method: str
    url: str
    content_id: str
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BatchResponse:
    """One HTTP response inside a ``$batch`` reply (header names lower-cased)."""

    status: int
    content_id: str | None
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        """The body as a JSON object, or InvalidResponseError."""
        return parse_object(self.body, f"batch part {self.content_id or '?'} body")


def build_batch(
    changesets: Sequence[Sequence[BatchOperation]], *, boundary: str | None = None
) -> tuple[bytes, str]:
    """A ``$batch`` body of ``changesets`` (each applied atomically) and its Content-Type."""
    total = sum(len(cs) for cs in changesets)
    if total == 0:
        raise ValueError("a $batch needs at least one operation")
    if total > MAX_BATCH_OPERATIONS:
        raise ValueError(f"a $batch holds at most {MAX_BATCH_OPERATIONS} operations, got {total}")
    outer = boundary or f"batch_{uuid.uuid4()}"
    lines: list[str] = []
    seen: set[str] = set()
    for changeset in changesets:
        inner = f"changeset_{uuid.uuid4()}"
        lines += [f"--{outer}", f"Content-Type: multipart/mixed; boundary={inner}", ""]
        for op in changeset:
            if op.content_id in seen or not op.content_id.isalnum():
                raise ValueError(f"content ids must be unique and alphanumeric: {op.content_id!r}")
            seen.add(op.content_id)
            lines += [
                f"--{inner}",
                "Content-Type: application/http",
                "Content-Transfer-Encoding: binary",
                f"Content-ID: {op.content_id}",
                "",
                f"{op.method.upper()} {op.url} HTTP/1.1",
            ]
            if op.body is not None:
                lines.append("Content-Type: application/json; type=entry")
            lines += [f"{k}: {v}" for k, v in op.headers.items()]
            lines += ["", orjson.dumps(op.body).decode() if op.body is not None else ""]
        lines.append(f"--{inner}--")
    lines.append(f"--{outer}--")
    return "\r\n".join(lines).encode(), f"multipart/mixed; boundary={outer}"


def boundary_of(content_type: str) -> str:
    """The boundary of a multipart/mixed Content-Type, or InvalidResponseError."""
    if not content_type.lower().startswith("multipart/mixed"):
        raise InvalidResponseError(f"$batch reply is {content_type[:80]!r}, not multipart/mixed")
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise InvalidResponseError("$batch reply has no multipart boundary")
    return match.group(1)


def _split(body: bytes, boundary: str) -> list[bytes]:
    text = body.replace(b"\r\n", b"\n")
    delimiter = b"--" + boundary.encode()
    if delimiter + b"--" not in text:
        raise InvalidResponseError(f"$batch reply does not end with --{boundary}--")
    chunks = text.split(delimiter + b"--", 1)[0].split(delimiter)
    return [c.strip(b"\n") + b"\n" for c in chunks[1:]]


def _head(chunk: bytes) -> tuple[dict[str, str], bytes]:
    head, sep, rest = chunk.partition(b"\n\n")
    if not sep:
        head, rest = chunk, b""
    headers: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").split("\n"):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise InvalidResponseError(f"$batch reply has a malformed header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers, rest


def _response(chunk: bytes) -> BatchResponse:
    part_headers, payload = _head(chunk)
    if not part_headers.get("content-type", "").lower().startswith("application/http"):
        raise InvalidResponseError("$batch reply part is not application/http")
    status_line, _, rest = payload.partition(b"\n")
    match = _STATUS_LINE.match(status_line.decode("utf-8", "replace").strip())
    if match is None:
        raise InvalidResponseError(f"$batch reply part has a bad status line {status_line[:80]!r}")
    headers, body = ({}, rest[1:]) if rest.startswith(b"\n") else _head(rest)
    return BatchResponse(
        int(match.group(1)), part_headers.get("content-id"), headers, body.strip(b"\n")
    )


def parse_batch_response(body: bytes, content_type: str) -> list[BatchResponse]:
    """Flatten a ``$batch`` reply into its HTTP responses, in order (changesets expanded)."""
    out: list[BatchResponse] = []
    for chunk in _split(body, boundary_of(content_type)):
        headers, inner = _head(chunk)
        kind = headers.get("content-type", "")
        if kind.lower().startswith("multipart/mixed"):
            out.extend(_response(sub) for sub in _split(inner, boundary_of(kind)))
        else:
            out.append(_response(chunk))
    if not out:
        raise InvalidResponseError("$batch reply holds no responses")
    return out
