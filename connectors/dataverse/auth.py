"""Bearer tokens for the Dataverse Web API: azure-identity for a real organisation, a static
token for the emulator."""

from __future__ import annotations

import time
from typing import Protocol
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError
from azure.identity.aio import ClientSecretCredential

from connectors.errors import AuthError


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
    """The token scope of an organisation: ``https://{org host}/.default``."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an organisation URL: {base_url!r}")
    return f"https://{parts.hostname}/.default"


class ClientSecretToken:
    """An app registration's client-credentials token for the organisation, cached until five
    minutes before it expires."""

    def __init__(self, base_url: str, *, tenant_id: str, client_id: str, secret: str) -> None:
        self._scope = org_scope(base_url)
        self._credential = ClientSecretCredential(tenant_id, client_id, secret)
        self._token: str | None = None
        self._expires = 0.0

    async def token(self) -> str:
        if self._token is None or time.time() > self._expires - 300:
            try:
                got = await self._credential.get_token(self._scope)
            except AzureError as exc:
                raise AuthError(f"could not get a Dataverse token: {type(exc).__name__}") from exc
            self._token, self._expires = got.token, float(got.expires_on)
        return self._token

    async def close(self) -> None:
        await self._credential.close()
