"""Transport-free requests and responses, and the path router shared by HTTP and ``$batch``."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from .config import EmulatorConfig
from .errors import GraphError
from .store import Store

if TYPE_CHECKING:
    from .subscriptions import SubscriptionManager


_IMMUTABLE = re.compile(r'IdType\s*=\s*"?ImmutableId"?', re.IGNORECASE)


@dataclass
class Request:
    """One Graph request, whether from HTTP or from inside a ``$batch``."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    base: str
    app_id: str = ""

    def json(self) -> Any:
        """The body as JSON; Graph's 400 when it is missing or malformed."""
        if not self.body.strip():
            raise GraphError(400, "BadRequest", "Empty Payload, JSON content expected")
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise GraphError(
                400,
                "BadRequest",
                "Unable to read JSON request payload. Please ensure Content-Type "
                "header is set and payload is of valid JSON format.",
            ) from None

    def header(self, name: str) -> str | None:
        """A header value, case-insensitively."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None

    def immutable_ids(self) -> bool:
        """``Prefer: IdType="ImmutableId"``: answer with immutable ids (this request only)."""
        return bool(_IMMUTABLE.search(self.header("Prefer") or ""))

    def link(self, path: str, params: Mapping[str, str]) -> str:
        """An absolute link to ``path`` under the API root with ``params``."""
        query = "&".join(f"{quote(k, safe='$')}={quote(v, safe='')}" for k, v in params.items())
        return f"{self.base}{path}" + (f"?{query}" if query else "")


@dataclass
class Response:
    """Status, headers and a JSON-able body (``None`` for no content, ``bytes`` for raw)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Context:
    """What handlers work with."""

    config: EmulatorConfig
    store: Store
    subscriptions: SubscriptionManager


Handler = Callable[[Context, Request, dict[str, str]], Awaitable[Response]]

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_PAREN_KEY = re.compile(r"([A-Za-z]+)\('([^']*)'\)")


def normalize_path(path: str) -> str:
    """``/users('a')/mailFolders('Inbox')/`` → ``/users/a/mailFolders/Inbox``."""
    path = _PAREN_KEY.sub(lambda m: f"{m.group(1)}/{m.group(2)}", path)
    return "/" + "/".join(seg for seg in path.split("/") if seg)


class Router:
    """Method + path template → handler; templates use ``{name}`` for one segment."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, template: str, handler: Handler) -> None:
        """Register ``handler``; ``/delta`` in a template also matches ``/delta()``."""
        pattern = _PLACEHOLDER.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)", template)
        pattern = pattern.replace("/delta", r"/delta(?:\(\))?")
        self._routes.append((method, re.compile(f"^{pattern}$", re.IGNORECASE), handler))

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler for a request, or Graph's 400/405 when nothing matches."""
        allowed = False
        for route_method, pattern, handler in self._routes:
            found = pattern.match(path)
            if found:
                if route_method == method:
                    return handler, found.groupdict()
                allowed = True
        if allowed:
            raise GraphError(405, "Request_BadRequest", f"Method {method} is not allowed here.")
        raise GraphError(
            400,
            "BadRequest",
            f"Resource not found for the segment '{path.rsplit('/', 1)[-1]}'.",
        )
