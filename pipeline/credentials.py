"""The credential of each service from the settings: which kind, and the secrets read from the
environment or from files (never from a command line)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from connectors.credentials import (
    CredentialConfig,
    CredentialError,
    TokenSource,
    build_credential,
)
from connectors.dataverse.auth import org_scope
from connectors.graph.credentials import GRAPH_SCOPE
from pipeline.settings import CredentialSettings, DataverseSettings, GraphSettings

#: The variables the AKS workload identity webhook injects into a pod.
WORKLOAD_ENV = ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE")


def _kind(settings: CredentialSettings, service: str) -> str:
    if settings.credential is not None:
        return settings.credential
    if settings.static_token is not None:
        return "static"
    if isinstance(settings, GraphSettings) and settings.managed_identity:
        return "managed_identity"
    if settings.certificate_path is not None:
        return "certificate"
    if settings.client_secret is not None or settings.client_secret_file is not None:
        return "client_secret"
    if settings.federated_token_file is not None:
        return "workload_identity"
    prefix = f"DYNASYNC_{service.upper()}__"
    raise CredentialError(
        f"{service.capitalize()} credentials missing: set {prefix}CREDENTIAL (client_secret, "
        f"certificate, managed_identity or workload_identity) and its values, or "
        f"{prefix}STATIC_TOKEN for the emulator"
    )


def credential_config(
    settings: CredentialSettings, service: str, *, environ: Mapping[str, str] | None = None
) -> CredentialConfig:
    """What ``service``'s (``graph`` or ``dataverse``) credential is made of. A client secret
    may come from ``client_secret_file``; a workload identity's tenant, client id and token
    file default to ``AZURE_TENANT_ID``, ``AZURE_CLIENT_ID`` and ``AZURE_FEDERATED_TOKEN_FILE``
    (what the AKS webhook sets). Raises :class:`CredentialError` with the setting to fix."""
    env = os.environ if environ is None else environ
    kind = _kind(settings, service)
    legacy_mi = isinstance(settings, GraphSettings) and settings.managed_identity
    if legacy_mi and kind != "managed_identity":
        raise CredentialError(f"{service}: managed_identity=true contradicts credential={kind}")
    secret = settings.client_secret.get_secret_value() if settings.client_secret else None
    if settings.client_secret_file is not None:
        if secret is not None:
            raise CredentialError(f"{service}: set client_secret or client_secret_file, not both")
        path = settings.client_secret_file
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise CredentialError(
                f"{service}: client secret file {str(path)!r} cannot be read: {reason}"
            ) from None
        if not secret:
            raise CredentialError(f"{service}: client secret file {str(path)!r} is empty")
    tenant, client, token_file = (
        settings.tenant_id,
        settings.client_id,
        settings.federated_token_file,
    )
    if kind == "workload_identity":
        tenant = tenant or env.get("AZURE_TENANT_ID") or None
        client = client or env.get("AZURE_CLIENT_ID") or None
        named = env.get("AZURE_FEDERATED_TOKEN_FILE")
        token_file = token_file or (Path(named) if named else None)
    password = settings.certificate_password
    static = settings.static_token
    return CredentialConfig(
        kind=kind,
        tenant_id=tenant,
        client_id=client,
        client_secret=secret,
        certificate_path=settings.certificate_path,
        certificate_password=password.get_secret_value() if password else None,
        federated_token_file=token_file,
        authority=settings.authority,
        static_token=static.get_secret_value() if static else None,
    )


def graph_tokens(
    settings: GraphSettings, *, transport_options: Mapping[str, Any] | None = None
) -> TokenSource:
    """Graph tokens from the configured credential."""
    config = credential_config(settings, "graph")
    return TokenSource(build_credential(config, transport_options=transport_options), GRAPH_SCOPE)


def dataverse_tokens(
    settings: DataverseSettings,
    api_root: str,
    *,
    transport_options: Mapping[str, Any] | None = None,
) -> TokenSource:
    """Tokens of the organisation at ``api_root`` (its scope: the URL's origin + ``/.default``)
    from the configured credential."""
    config = credential_config(settings, "dataverse")
    scope = org_scope(api_root)
    return TokenSource(build_credential(config, transport_options=transport_options), scope)
