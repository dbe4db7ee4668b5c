"""Transport-neutral request/response types shared by the app and ``$batch``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import orjson

from .errors import bad_request

ODATA_HEADERS = {"OData-Version": "4.0", "OData-MaxVersion": "4.0"}
JSON_TYPE = "application/json; odata.metadata=minimal"


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only header map (last value wins)."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        for key, value in items:
            self._items[key.lower()] = (key, value)

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def merged(self, extra: Iterable[tuple[str, str]]) -> Headers:
        """A copy with ``extra`` headers added or replaced."""
        return Headers([*self._items.values(), *extra])


@dataclass(frozen=True)
class ApiRequest:
    """One Web API request; ``path`` is relative to ``/api/data/v9.2/``."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: Headers
    body: bytes = b""


@dataclass
class ApiResponse:
    """One Web API response."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @staticmethod
    def json(status: int, payload: object, headers: Mapping[str, str] | None = None) -> ApiResponse:
        """A JSON response with the OData headers."""
        merged = {**ODATA_HEADERS, "Content-Type": JSON_TYPE, **(headers or {})}
        return ApiResponse(status, merged, orjson.dumps(payload))

    @staticmethod
    def empty(status: int, headers: Mapping[str, str] | None = None) -> ApiResponse:
        """A bodiless response with the OData headers."""
        return ApiResponse(status, {**ODATA_HEADERS, **(headers or {})})


@dataclass(frozen=True)
class Prefer:
    """Parsed ``Prefer`` header."""

    return_representation: bool = False
    maxpagesize: int | None = None
    track_changes: bool = False
    annotations: bool = False
    continue_on_error: bool = False


def parse_prefer(headers: Headers) -> Prefer:
    """Parse every ``Prefer`` preference the emulator understands (others are ignored)."""
    representation = track = annotations = continue_on_error = False
    maxpagesize: int | None = None
    for item in (p.strip() for p in headers.get("Prefer", "").split(",")):
        name, _, value = item.partition("=")
        name = name.strip().lower()
        value = value.strip().strip('"')
        if name == "return" and value == "representation":
            representation = True
        elif name == "odata.maxpagesize":
            if not value.isdigit() or not 1 <= int(value) <= 5000:
                raise bad_request(
                    f"The odata.maxpagesize preference '{value[:20]}' must be an integer 1-5000."
                )
            maxpagesize = int(value)
        elif name == "odata.track-changes":
            track = True
        elif name == "odata.include-annotations":
            annotations = bool(value)
        elif name == "odata.continue-on-error":
            continue_on_error = True
    return Prefer(representation, maxpagesize, track, annotations, continue_on_error)


def parse_query(text: str) -> list[tuple[str, str]]:
    """Decode a raw query string (form rules: ``+`` is a space, ``%2B`` a plus)."""
    return parse_qsl(text, keep_blank_values=True)
