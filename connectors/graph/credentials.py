"""The Graph credentials (azure-identity), from plain settings; no SDK needed.

The credential kinds, their validation and the token refresh are shared with Dataverse
(:mod:`connectors.credentials`); Graph's scope is fixed.
"""

from __future__ import annotations

from pathlib import Path

from azure.core.credentials_async import AsyncTokenCredential

from connectors.credentials import (
    CredentialConfig,
    StaticTokenCredential,
    build_credential,
)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"

__all__ = ["GRAPH_SCOPE", "StaticTokenCredential", "credential_from_settings"]


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
    """Pick the credential from plain settings, the kind inferred from what is given.

    ``static_token`` → ``StaticTokenCredential`` (emulator); ``managed_identity`` →
    ``ManagedIdentityCredential`` (``client_id`` selects a user-assigned identity);
    otherwise ``tenant_id`` + ``client_id`` with exactly one of ``client_secret`` or
    ``certificate_path``. :func:`connectors.credentials.build_credential` takes every kind.
    """
    if static_token is not None:
        kind = "static"
    elif managed_identity:
        kind = "managed_identity"
    elif client_secret and certificate_path:
        raise ValueError("give exactly one of client_secret or certificate_path")
    else:
        kind = "certificate" if certificate_path else "client_secret"
    return build_credential(
        CredentialConfig(
            kind=kind,
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=client_secret,
            certificate_path=Path(certificate_path) if certificate_path else None,
            certificate_password=certificate_password,
            static_token=static_token,
        )
    )
