"""Credentials of both services (Graph and Dataverse) through azure-identity, and the bearer
tokens they hand out.

:func:`build_credential` turns a :class:`CredentialConfig` (plain values, validated here with a
clear error) into an azure-identity async credential: a client secret, a certificate, a managed
identity or a workload identity (a federated token file), or a fixed token for the emulators.
:class:`TokenSource` hands out one scope's token and asks the credential again from the
token's refresh time on (the service's ``refresh_in`` hint, else 5 minutes before it expires),
so requests never go out with a token about to expire. Neither logs a token or a secret.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, get_args
from urllib.parse import urlsplit

from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.credentials_async import AsyncSupportsTokenInfo, AsyncTokenCredential
from azure.core.exceptions import AzureError

from connectors.errors import AuthError

log = logging.getLogger(__name__)

#: The kinds of credential either service accepts.
CredentialKind = Literal[
    "static", "client_secret", "certificate", "managed_identity", "workload_identity"
]
KINDS: Final[tuple[str, ...]] = get_args(CredentialKind)

#: Ask for a new token this long before the old one expires (azure-identity's own margin).
REFRESH_MARGIN_S: Final = 300.0
#: While the old token is still valid, ask again at most this often (a failing or throttled
#: token endpoint is not hammered; azure-identity itself asks the endpoint at most every 30 s).
RETRY_S: Final = 10.0


class CredentialError(ValueError):
    """The credential settings are incomplete, contradictory or unreadable."""


@dataclass(frozen=True, slots=True)
class CredentialConfig:
    """What one service's credential is made from. Secrets are left out of ``repr``."""

    kind: str
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    certificate_path: Path | None = None
    certificate_password: str | None = field(default=None, repr=False)
    federated_token_file: Path | None = None
    #: the Microsoft Entra authority (a host such as ``login.microsoftonline.us`` or an https
    #: URL); unset: azure-identity's default (``AZURE_AUTHORITY_HOST`` or the public cloud)
    authority: str | None = None
    static_token: str | None = field(default=None, repr=False)


def _need(config: CredentialConfig, *names: str) -> None:
    missing = [n for n in names if not getattr(config, n)]
    if missing:
        raise CredentialError(f"a {config.kind} credential needs {', '.join(missing)}")


def _refuse(config: CredentialConfig, *names: str) -> None:
    given = [n for n in names if getattr(config, n)]
    if given:
        raise CredentialError(f"a {config.kind} credential takes no {', '.join(given)}")


def _authority(value: str) -> str:
    """``value`` as an https authority URL, or a :class:`CredentialError`."""
    text = value.strip().rstrip("/")
    url = text if "://" in text else f"https://{text}"
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise CredentialError(f"authority must be a host or an https URL, got {value[:120]!r}")
    return url


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CredentialError(f"{what} {str(path)!r} cannot be read: {exc.strerror}") from None
    if not data.strip():
        raise CredentialError(f"{what} {str(path)!r} is empty")
    return data


class StaticTokenCredential(AsyncTokenCredential):
    """An async credential that always returns one fixed bearer token (for the emulators)."""

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


def build_credential(
    config: CredentialConfig, *, transport_options: Mapping[str, Any] | None = None
) -> AsyncTokenCredential:
    """The azure-identity async credential ``config`` describes.

    ``transport_options`` go to azure-identity's HTTP pipeline (e.g. ``connection_verify``, a
    CA bundle). A custom ``authority`` is used as given, without instance discovery. Raises
    :class:`CredentialError` for an unknown kind, a missing or extra value, an unreadable
    certificate or token file, or a certificate azure-identity cannot load.
    """
    from azure.identity.aio import (
        CertificateCredential,
        ClientSecretCredential,
        ManagedIdentityCredential,
        WorkloadIdentityCredential,
    )

    if config.kind not in KINDS:
        raise CredentialError(
            f"unknown credential kind {config.kind[:40]!r}; one of {', '.join(KINDS)}"
        )
    options: dict[str, Any] = dict(transport_options or {})
    if config.authority is not None and config.kind != "managed_identity":
        options["authority"] = _authority(config.authority)
        options["disable_instance_discovery"] = True
    secrets = ("client_secret", "certificate_path", "federated_token_file", "static_token")
    if config.kind == "static":
        _need(config, "static_token")
        _refuse(config, *(s for s in secrets if s != "static_token"))
        assert config.static_token is not None
        try:
            return StaticTokenCredential(config.static_token)
        except ValueError as exc:
            raise CredentialError(f"static token: {exc}") from None
    if config.kind == "managed_identity":
        _refuse(config, *secrets, "authority")
        # client_id selects a user-assigned identity; the endpoint comes from the environment
        # (IDENTITY_ENDPOINT + IDENTITY_HEADER, or IMDS)
        return ManagedIdentityCredential(client_id=config.client_id or None, **options)
    own = {"client_secret": "client_secret", "certificate": "certificate_path"}
    _need(config, "tenant_id", "client_id", own.get(config.kind, "federated_token_file"))
    assert config.tenant_id is not None and config.client_id is not None
    if config.kind == "client_secret":
        _refuse(config, "certificate_path", "federated_token_file", "static_token")
        assert config.client_secret is not None
        return ClientSecretCredential(
            config.tenant_id, config.client_id, config.client_secret, **options
        )
    if config.kind == "certificate":
        _refuse(config, "client_secret", "federated_token_file", "static_token")
        assert config.certificate_path is not None
        data = _read(config.certificate_path, "certificate file")
        try:
            return CertificateCredential(
                config.tenant_id,
                config.client_id,
                certificate_data=data,
                password=config.certificate_password,
                **options,
            )
        except (ValueError, TypeError) as exc:
            raise CredentialError(
                f"certificate file {str(config.certificate_path)!r} holds no usable certificate"
                f" and private key (PEM or PKCS12; a wrong password?): {type(exc).__name__}"
            ) from None
    _refuse(config, "client_secret", "certificate_path", "static_token")
    assert config.federated_token_file is not None
    _read(config.federated_token_file, "federated token file")
    return WorkloadIdentityCredential(
        tenant_id=config.tenant_id,
        client_id=config.client_id,
        token_file_path=str(config.federated_token_file),
        **options,
    )


class TokenSource:
    """One scope's bearer token from ``credential``.

    The token is kept until its refresh time (the service's ``refresh_on`` hint, else
    :data:`REFRESH_MARGIN_S` before it expires); from then on the credential is asked again, at
    most every :data:`RETRY_S` while the old token is still valid (meanwhile other callers get
    the old token), and once the token has expired callers wait for one new request. A failure
    while the old token is valid keeps the old token (one warning, no token in it); with no
    valid token it raises :class:`AuthError`.
    """

    def __init__(
        self,
        credential: AsyncTokenCredential | AsyncSupportsTokenInfo,
        scope: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not scope or any(c.isspace() for c in scope):
            raise ValueError(f"scope must be one non-empty word, got {scope[:80]!r}")
        self.scope = scope
        self._credential = credential
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self._refresh_at = 0.0
        self._next_try = 0.0

    def _current(self, now: float) -> str | None:
        """The held token unless it is time to ask the credential again."""
        if self._token is None:
            return None
        if now < self._refresh_at or (now < self._expires and now < self._next_try):
            return self._token
        return None

    async def token(self) -> str:
        """A token valid for now (refreshed ahead of its expiry)."""
        held = self._current(self._clock())
        if held is not None:
            return held
        async with self._lock:
            now = self._clock()
            held = self._current(now)  # another caller may have asked meanwhile
            return held if held is not None else await self._fetch(now)

    async def _fetch(self, now: float) -> str:
        self._next_try = now + RETRY_S
        try:
            info = await self._ask()
        except (AzureError, ValueError, OSError) as exc:
            if self._token is not None and now < self._expires:
                log.warning(
                    "token refresh for %s failed (%s); the current token is valid %d s more",
                    self.scope,
                    type(exc).__name__,
                    int(self._expires - now),
                )
                return self._token
            raise AuthError(
                f"could not get a token for {self.scope}: {type(exc).__name__}"
            ) from exc
        token, expires = info.token, float(info.expires_on)
        if not isinstance(token, str) or not token or expires <= now:
            raise AuthError(f"the credential returned no valid token for {self.scope}")
        hint = getattr(info, "refresh_on", None)
        refresh_at = expires - REFRESH_MARGIN_S
        if isinstance(hint, int | float) and hint > 0:
            refresh_at = min(refresh_at, float(hint))
        self._token, self._expires, self._refresh_at = token, expires, refresh_at
        return token

    async def _ask(self) -> AccessTokenInfo:
        credential = self._credential
        if isinstance(credential, AsyncSupportsTokenInfo):
            return await credential.get_token_info(self.scope)
        got = await credential.get_token(self.scope)
        return AccessTokenInfo(got.token, got.expires_on)

    async def close(self) -> None:
        """Close the credential (its HTTP sessions)."""
        await self._credential.close()
