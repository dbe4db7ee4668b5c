"""Bearer tokens for the Dataverse Web API: an azure-identity credential
(:mod:`connectors.credentials`, any kind) for the organisation's scope, or a static token for
the emulator."""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit


class TokenProvider(Protocol):
    """Hands out a bearer token; cached and refreshed by the provider."""

    async def token(self) -> str:
        """A currently valid access token."""
        ...

    async def close(self) -> None:
        """Release what the provider holds."""
        ...


class StaticToken:
    """A fixed token (the emulator accepts any bearer token unless configured otherwise)."""

    def __init__(self, token: str) -> None:
        if not token or any(c.isspace() for c in token):
            raise ValueError("a static token must be a non-empty string without whitespace")
        self._token = token

    async def token(self) -> str:
        return self._token

    async def close(self) -> None:
        return None


def org_scope(base_url: str) -> str:
    """The token scope of an organisation: its URL's scheme, host and port, then
    ``/.default`` (``https://contoso.crm.dynamics.com/api/data/v9.2`` →
    ``https://contoso.crm.dynamics.com/.default``; an emulator's ``http://127.0.0.1:8082``
    keeps its scheme and port)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an organisation URL: {base_url[:120]!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"not an organisation URL: {base_url[:120]!r}") from None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}{f':{port}' if port is not None else ''}/.default"
