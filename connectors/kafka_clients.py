"""The one place aiokafka clients are built: bootstrap servers plus TLS and SASL.

:class:`KafkaConnection` says how to reach the cluster (``security_protocol`` PLAINTEXT, SSL,
SASL_PLAINTEXT or SASL_SSL; SASL PLAIN, SCRAM-SHA-256/512 or OAUTHBEARER; CA file, client
certificate and key, hostname checking). :class:`KafkaClients` builds every consumer, producer
and admin client from it, and :meth:`KafkaClients.check` connects once and turns a refusal
(wrong password, untrusted CA, nothing listening) into a :class:`KafkaAccessError` whose text
is one line. Secrets are ``SecretStr`` from the environment or from a file only its owner may
read; they are never logged. It lives in ``connectors`` so every layer may import it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Self, TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError, UnsupportedSaslMechanismError
from aiokafka.protocol.metadata import MetadataRequest
from azure.core.credentials_async import AsyncTokenCredential
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

SecurityProtocol: TypeAlias = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism: TypeAlias = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
AccessProblem: TypeAlias = Literal["config", "tls", "auth", "unreachable"]

#: A token is fetched again this long before it expires.
TOKEN_REFRESH_MARGIN_S = 300.0

_BOOTSTRAP = r"^[\w.\-]+:\d{1,5}(,[\w.\-]+:\d{1,5})*$"
#: What the factory sets; a caller passing one of these would bypass the security settings.
_OWNED = frozenset(
    {
        "bootstrap_servers",
        "security_protocol",
        "ssl_context",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
        "sasl_oauth_token_provider",
        "sasl_kerberos_service_name",
        "sasl_kerberos_domain_name",
    }
)


class KafkaAccessError(Exception):
    """The cluster could not be used as configured. ``str()`` is one line a CLI can print;
    ``problem`` says which kind: config, tls, auth or unreachable."""

    def __init__(self, problem: AccessProblem, message: str) -> None:
        super().__init__(" ".join(message.split()))
        self.problem: AccessProblem = problem


class KafkaConnection(BaseModel):
    """Where the cluster is and how to authenticate to it (``DYNASYNC_KAFKA__*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap: str = Field("127.0.0.1:9092", pattern=_BOOTSTRAP)
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = Field(None, min_length=1, max_length=256)
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = Field(None, description="Mode 0600 or stricter")
    ssl_ca_file: Path | None = Field(None, description="PEM; unset: the system's CAs")
    ssl_cert_file: Path | None = Field(None, description="PEM client certificate (mutual TLS)")
    ssl_key_file: Path | None = Field(None, description="PEM key of ssl_cert_file")
    ssl_key_password: SecretStr | None = None
    ssl_key_password_file: Path | None = Field(None, description="Mode 0600 or stricter")
    ssl_check_hostname: bool = Field(
        True, description="Off: the chain is still verified, the name in it is not"
    )
    oauth_scope: str | None = Field(
        None,
        pattern=r"^https://[A-Za-z0-9.\-]+(:\d{1,5})?(/\S*)?$",
        description="OAUTHBEARER, e.g. https://<namespace>.servicebus.windows.net/.default",
    )
    oauth_credential: Literal["default", "managed_identity"] = Field(
        "default",
        description="azure-identity DefaultAzureCredential or ManagedIdentityCredential",
    )
    oauth_client_id: str | None = Field(
        None, pattern=r"^[0-9A-Fa-f-]{36}$", description="A user-assigned managed identity"
    )

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        sasl = self.security_protocol.startswith("SASL_")
        tls = self.security_protocol in ("SSL", "SASL_SSL")
        password = (self.sasl_password, self.sasl_password_file)
        sasl_set = [self.sasl_mechanism, self.sasl_username, *password, self.oauth_scope]
        if not sasl and any(v is not None for v in sasl_set):
            raise ValueError("sasl_* and oauth_* settings need security_protocol SASL_*")
        if sasl and self.sasl_mechanism is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism")
        if self.sasl_mechanism == "OAUTHBEARER":
            if self.oauth_scope is None:
                raise ValueError("sasl_mechanism OAUTHBEARER needs oauth_scope")
            if self.sasl_username is not None or any(p is not None for p in password):
                raise ValueError("OAUTHBEARER takes no sasl_username or sasl_password")
        elif self.sasl_mechanism is not None:
            if self.sasl_username is None:
                raise ValueError(f"sasl_mechanism {self.sasl_mechanism} needs sasl_username")
            if (self.sasl_password is None) == (self.sasl_password_file is None):
                raise ValueError("give exactly one of sasl_password or sasl_password_file")
            if self.oauth_scope is not None:
                raise ValueError(f"oauth_scope is for OAUTHBEARER, not {self.sasl_mechanism}")
        if self.oauth_client_id is not None and self.oauth_credential != "managed_identity":
            raise ValueError("oauth_client_id needs oauth_credential managed_identity")
        key_password = (self.ssl_key_password, self.ssl_key_password_file)
        ssl_set = [self.ssl_ca_file, self.ssl_cert_file, self.ssl_key_file, *key_password]
        if not tls and (any(v is not None for v in ssl_set) or not self.ssl_check_hostname):
            raise ValueError("ssl_* settings need security_protocol SSL or SASL_SSL")
        if self.ssl_key_file is not None and self.ssl_cert_file is None:
            raise ValueError("ssl_key_file needs ssl_cert_file")
        if all(p is not None for p in key_password):
            raise ValueError("give at most one of ssl_key_password or ssl_key_password_file")
        if any(p is not None for p in key_password) and self.ssl_cert_file is None:
            raise ValueError("ssl_key_password needs ssl_cert_file")
        return self


def read_secret_file(path: Path, setting: str) -> str:
    """The secret in ``path`` (one line, trailing newline dropped); the file must be readable
    by its owner only, like every secret file Dynasync reads."""
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise KafkaAccessError(
                "config",
                f"{setting} {path} is mode {mode & 0o777:04o}, readable by others; it must be"
                f" 0600 or stricter (chmod 600 {path})",
            )
        value = path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise KafkaAccessError("config", f"{setting} {path}: {_reason(exc)}") from None
    if not value or "\n" in value:
        raise KafkaAccessError("config", f"{setting} {path} must hold one non-empty line")
    return value


def ssl_context(connection: KafkaConnection) -> ssl.SSLContext:
    """The TLS context for ``connection`` (its CA file or the system's CAs, its client
    certificate if any); a file that cannot be loaded is a ``config`` KafkaAccessError."""
    ca = connection.ssl_ca_file
    try:
        context = ssl.create_default_context(cafile=None if ca is None else str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise KafkaAccessError("config", f"ssl_ca_file {ca}: {_reason(exc)}") from None
    context.check_hostname = connection.ssl_check_hostname
    cert = connection.ssl_cert_file
    if cert is not None:
        password = _secret(
            connection.ssl_key_password, connection.ssl_key_password_file, "ssl_key_password_file"
        )
        key = connection.ssl_key_file
        try:
            context.load_cert_chain(
                str(cert), None if key is None else str(key), password=password or ""
            )
        except ssl.SSLError as exc:
            hint = " (wrong ssl_key_password, or the key does not match?)"
            raise KafkaAccessError(
                "config", f"ssl_cert_file {cert}: cannot load it with its key{hint}: {exc.reason}"
            ) from None
        except OSError as exc:
            raise KafkaAccessError("config", f"ssl_cert_file {cert}: {_reason(exc)}") from None
    return context


CredentialFactory: TypeAlias = Callable[[], AsyncTokenCredential]


class AzureTokenProvider:
    """An aiokafka OAUTHBEARER token provider over an azure-identity async credential (Event
    Hubs: scope ``https://<namespace>.servicebus.windows.net/.default``). The token is kept until
    :data:`TOKEN_REFRESH_MARGIN_S` before it expires; each fetch opens a credential from
    ``credentials`` and closes it, so the provider holds nothing that needs closing."""

    def __init__(
        self,
        scope: str,
        credentials: CredentialFactory,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not scope.startswith("https://"):
            raise ValueError(f"an OAUTHBEARER scope is an https URL, got {scope!r}")
        self.scope = scope
        self._credentials = credentials
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: tuple[str, float] | None = None

    async def token(self) -> str:
        """A valid access token (fetched only when the kept one is about to expire)."""
        async with self._lock:
            now = self._clock()
            if self._token is not None and self._token[1] - TOKEN_REFRESH_MARGIN_S > now:
                return self._token[0]
            credential = self._credentials()
            try:
                result = await credential.get_token(self.scope)
            except Exception as exc:
                raise KafkaAccessError(
                    "auth", f"OAUTHBEARER: no token for {self.scope}: {_reason(exc)}"
                ) from None
            finally:
                await credential.close()
            token, expires = getattr(result, "token", None), getattr(result, "expires_on", None)
            if not isinstance(token, str) or not token or not isinstance(expires, int | float):
                raise KafkaAccessError("auth", f"OAUTHBEARER: no token for {self.scope}")
            self._token = (token, float(expires))
            return token


# aiokafka checks isinstance(provider, AbstractTokenProvider); the ABC accepts a registered class
AbstractTokenProvider.register(AzureTokenProvider)


def azure_credentials(connection: KafkaConnection) -> CredentialFactory:
    """Makes the azure-identity credential ``connection.oauth_credential`` names."""
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    client_id = connection.oauth_client_id
    if connection.oauth_credential == "managed_identity":
        if client_id is not None:
            return lambda: ManagedIdentityCredential(client_id=client_id)
        return ManagedIdentityCredential
    return DefaultAzureCredential


class KafkaClients:
    """Builds every aiokafka client for one :class:`KafkaConnection` (a plain bootstrap string
    means PLAINTEXT). Secrets are read and the TLS context is built once, here: a setting that
    cannot be used raises a ``config`` :class:`KafkaAccessError`."""

    def __init__(
        self,
        connection: KafkaConnection | str,
        *,
        credentials: CredentialFactory | None = None,
    ) -> None:
        if isinstance(connection, str):
            connection = KafkaConnection(bootstrap=connection)
        self.connection = connection
        self._security = _security_options(connection, credentials)

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers, ``host:port[,host:port...]``."""
        return self.connection.bootstrap

    def options(self, **options: Any) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client: ``options`` plus the bootstrap servers and
        the security settings (which ``options`` may not set)."""
        clash = _OWNED & options.keys()
        if clash:
            raise TypeError(f"{sorted(clash)} come from the KafkaConnection, not the caller")
        return {"bootstrap_servers": self.connection.bootstrap, **self._security, **options}

    def consumer(self, *topics: str, **options: Any) -> AIOKafkaConsumer:
        """An (unstarted) consumer of ``topics``."""
        return AIOKafkaConsumer(*topics, **self.options(**options))

    def producer(self, **options: Any) -> AIOKafkaProducer:
        """An (unstarted) producer."""
        return AIOKafkaProducer(**self.options(**options))

    def admin(self, **options: Any) -> AIOKafkaAdminClient:
        """An (unstarted) admin client."""
        return AIOKafkaAdminClient(**self.options(**options))

    async def check(self, timeout_s: float = 10.0) -> None:
        """Connect to the bootstrap servers in turn (TLS handshake, SASL authentication, one
        request) until one accepts; if none does, raise :class:`KafkaAccessError` saying why
        in one line (an auth or TLS refusal is preferred over a server that did not answer)."""
        problems: list[KafkaAccessError] = []
        for server in self.connection.bootstrap.split(","):
            host, _, port = server.rpartition(":")
            try:
                conn = await create_conn(
                    host,
                    int(port),
                    client_id="dynasync-check",
                    request_timeout_ms=int(timeout_s * 1000),
                    **self._security,
                )
            except KafkaAccessError as exc:
                problems.append(exc)
                continue
            except (OSError, KafkaError) as exc:  # TimeoutError is an OSError
                problems.append(self._explain(server, exc, timeout_s))
                continue
            try:  # a listener answers ApiVersions before authentication: ask for more
                await conn.send(MetadataRequest([]))
            except (OSError, KafkaError) as exc:
                problems.append(self._explain(server, exc, timeout_s))
                continue
            finally:
                conn.close()
            return
        raise min(problems, key=lambda p: _RANK[p.problem])

    def _explain(self, server: str, exc: BaseException, timeout_s: float) -> KafkaAccessError:
        connection = self.connection
        if isinstance(exc, ssl.SSLCertVerificationError):
            trusted = connection.ssl_ca_file or "the system's CAs"
            what = exc.verify_message or _reason(exc)
            if "hostname" in what.lower() or "ip address mismatch" in what.lower():
                return KafkaAccessError(
                    "tls", f"TLS: the certificate of {server} is not for that name ({what})"
                )
            return KafkaAccessError(
                "tls",
                f"TLS: the certificate of {server} is not trusted by {trusted} ({what})",
            )
        if isinstance(exc, ssl.SSLError):
            return KafkaAccessError("tls", f"TLS handshake with {server} failed: {exc.reason}")
        mechanism = connection.sasl_mechanism
        if isinstance(exc, UnsupportedSaslMechanismError):
            return KafkaAccessError(
                "auth", f"SASL: {server} does not accept sasl_mechanism {mechanism}"
            )
        name = type(exc).__name__
        if "Sasl" in name or "Authentication" in name:
            who = f" as {connection.sasl_username!r}" if connection.sasl_username else ""
            return KafkaAccessError(
                "auth",
                f"SASL {mechanism} authentication{who} at {server} failed"
                f" (wrong user name or password?): {_reason(exc)}",
            )
        protocol = f"is security_protocol {connection.security_protocol} what that listener speaks"
        if connection.security_protocol in ("SSL", "SASL_SSL") and not connection.ssl_cert_file:
            protocol += ", or does it want a client certificate (ssl_cert_file)"
        if isinstance(exc, TimeoutError):
            return KafkaAccessError(
                "unreachable", f"no answer from {server} within {timeout_s:g} s ({protocol}?)"
            )
        if isinstance(exc, KafkaError | ConnectionResetError | ConnectionAbortedError):
            return KafkaAccessError(
                "unreachable", f"{server} closed the connection ({protocol}?): {_reason(exc)}"
            )
        return KafkaAccessError("unreachable", f"cannot reach {server}: {_reason(exc)}")


_RANK: Mapping[AccessProblem, int] = {"config": 0, "auth": 1, "tls": 2, "unreachable": 3}


def _security_options(
    connection: KafkaConnection, credentials: CredentialFactory | None
) -> dict[str, Any]:
    options: dict[str, Any] = {"security_protocol": connection.security_protocol}
    if connection.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(connection)
    mechanism = connection.sasl_mechanism
    if mechanism is None:
        return options
    options["sasl_mechanism"] = mechanism
    if mechanism == "OAUTHBEARER":
        assert connection.oauth_scope is not None  # the model requires it
        options["sasl_oauth_token_provider"] = AzureTokenProvider(
            connection.oauth_scope, credentials or azure_credentials(connection)
        )
    else:
        options["sasl_plain_username"] = connection.sasl_username
        options["sasl_plain_password"] = _secret(
            connection.sasl_password, connection.sasl_password_file, "sasl_password_file"
        )
    return options


def _secret(value: SecretStr | None, path: Path | None, setting: str) -> str | None:
    if value is not None:
        return value.get_secret_value()
    return None if path is None else read_secret_file(path, setting)


def _reason(exc: BaseException) -> str:
    """``exc`` as a short single line."""
    if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError) and exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split())[:300] or type(exc).__name__


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop ``consumer`` for good, even when aiokafka's fetcher re-raises the cancellation of
    a fetch it was retrying: aiokafka 0.14's ``Fetcher.close`` awaits the fetch tasks it has
    just cancelled, so ``stop()`` raised ``CancelledError`` into a caller nobody cancelled
    (a config reload during a broker stall took a whole worker down) and skipped closing
    the client's connections. A cancellation of the calling task itself still propagates."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        logging.getLogger(__name__).debug(
            "a cancelled fetch escaped the consumer's stop; closing its connections"
        )
        # the step stop() skipped; aiokafka has no public handle on it
        await consumer._client.close()
