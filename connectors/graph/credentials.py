"""The Graph credentials (azure-identity), from plain settings; no SDK needed."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


class StaticTokenCredential(AsyncTokenCredential):
    """An async credential that always returns one fixed bearer token (for the emulator)."""

    def __init__(self, token: str, lifetime_seconds: int = 3600) -> None:
        if not token or any(c.isspace() for c in token):
            raise ValueError("token must be a non-empty string without whitespace")
        if lifetime_seconds < 60:
            raise ValueError("lifetime_seconds must be at least 60")
        self._token = token
        self._lifetime = lifetime_seconds

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """The fixed token, valid for ``lifetime_seconds`` from now."""
        return AccessToken(self._token, int(time.time()) + self._lifetime)

    async def close(self) -> None:
        """Nothing to release."""

    async def __aenter__(self) -> StaticTokenCredential:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.close()


def credential_from_settings(
    *,
    tenant_id: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    certificate_path: str | None = None,
    certificate_password: str | None = None,
    managed_identity: bool = False,
    static_token: str | None = None,
) -> AsyncTokenCredential:
    """Pick the credential from plain settings.

    ``static_token`` → ``StaticTokenCredential`` (emulator); ``managed_identity`` →
    ``ManagedIdentityCredential`` (``client_id`` selects a user-assigned identity);
    otherwise ``tenant_id`` + ``client_id`` with exactly one of ``client_secret`` or
    ``certificate_path``.
    """
    from azure.identity.aio import (
        CertificateCredential,
        ClientSecretCredential,
        ManagedIdentityCredential,
    )

    if static_token is not None:
        return StaticTokenCredential(static_token)
    if managed_identity:
        if client_secret or certificate_path:
            raise ValueError("managed identity takes no secret or certificate")
        return (
            ManagedIdentityCredential(client_id=client_id)
            if client_id
            else (ManagedIdentityCredential())
        )
    if not tenant_id or not client_id:
        raise ValueError("tenant_id and client_id are required for an app credential")
    if bool(client_secret) == bool(certificate_path):
        raise ValueError("give exactly one of client_secret or certificate_path")
    if client_secret:
        return ClientSecretCredential(tenant_id, client_id, client_secret)
    return CertificateCredential(
        tenant_id, client_id, certificate_path=certificate_path, password=certificate_password
    )
