"""Building msgraph-sdk's ``GraphServiceClient`` over our own httpx client.

The same builder serves a real tenant (azure-identity credentials) and the emulator
(``StaticTokenCredential``); only the base URL and the credential differ.

Middleware: by default the kiota/Graph pipeline *without* its ``RetryHandler``, so 429/503
answers surface to the caller (the project's own choke point honours Retry-After and
budgets); redirects, ``$``-parameter decoding, the ``/me`` URL replacement, user agent,
headers inspection are kept (Graph's telemetry handler is left out: it only adds SDK
version headers, and ``msgraph_core`` has no type information for the strict mypy run).
Pass ``middleware=`` to choose another list (e.g. ``default_middleware(retry=True)``
for the SDK's own retries).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from kiota_abstractions.request_option import RequestOption
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.kiota_client_factory import KiotaClientFactory
from kiota_http.middleware.middleware import BaseMiddleware
from kiota_http.middleware.options import UrlReplaceHandlerOption
from kiota_http.middleware.retry_handler import RetryHandler
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient

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


def default_middleware(*, retry: bool = False) -> list[BaseMiddleware]:
    """Kiota's default pipeline; its RetryHandler only if ``retry``."""
    options: dict[str, RequestOption] = {
        UrlReplaceHandlerOption.get_key(): UrlReplaceHandlerOption(
            enabled=True, replacement_pairs={"/users/me-token-to-replace": "/me"}
        )
    }
    chain: list[BaseMiddleware] = [
        m
        for m in KiotaClientFactory.get_default_middleware(options)
        if retry or not isinstance(m, RetryHandler)
    ]
    return chain


def build_graph_client(
    base_url: str,
    credential: AsyncTokenCredential,
    *,
    http_client: httpx.AsyncClient | None = None,
    middleware: Sequence[BaseMiddleware] | None = None,
    scopes: Sequence[str] = (GRAPH_SCOPE,),
) -> GraphServiceClient:
    """A ``GraphServiceClient`` for ``base_url`` (e.g. ``http://127.0.0.1:8081/v1.0``).

    ``http_client`` is ours (its lifetime too); ``middleware`` defaults to
    ``default_middleware()`` (no SDK retries).
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
    base = base_url.rstrip("/")
    auth = AzureIdentityAuthenticationProvider(
        credential, scopes=list(scopes), allowed_hosts=[parts.hostname]
    )
    client = http_client if http_client is not None else httpx.AsyncClient(timeout=30.0)
    chain = list(middleware) if middleware is not None else default_middleware()
    client = KiotaClientFactory.create_with_custom_middleware(chain, client=client)
    client.base_url = httpx.URL(base + "/")
    adapter = GraphRequestAdapter(auth, client)
    adapter.base_url = base
    return GraphServiceClient(request_adapter=adapter)


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
