"""Building msgraph-sdk's ``GraphServiceClient`` over our own httpx client (tests only).

The runtime talks to Graph through :mod:`connectors.graph.transport` and takes its credentials
from :mod:`connectors.graph.credentials`; msgraph-sdk (about 390 MB installed, 0.5 s to import)
is a test dependency: the contract tests drive the emulator with the real SDK.

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

from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx
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

from connectors.graph.credentials import GRAPH_SCOPE, StaticTokenCredential

__all__ = ["GRAPH_SCOPE", "StaticTokenCredential", "build_graph_client", "default_middleware"]


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
