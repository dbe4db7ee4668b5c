"""Frozen runtime settings, read from ``DYNASYNC_*`` environment variables or a ``.env`` file.

Nested groups use ``__``: ``DYNASYNC_KAFKA__BOOTSTRAP=127.0.0.1:9092``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.kafka_clients import KafkaConnection

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(KafkaConnection):
    """Where the broker is, how to authenticate to it (:class:`KafkaConnection`: TLS, SASL)
    and how topics are laid out."""

    model_config = _FROZEN
    partitions: int = Field(6, ge=1, le=1000)
    replication_factor: int = Field(1, ge=1, le=5)
    topic_prefix: str = Field("", pattern=r"^[A-Za-z0-9._-]{0,64}$")
    session_timeout_s: float = Field(
        30.0,
        ge=6.0,
        le=300.0,
        description="How long a worker that vanished (kill -9, lost host) keeps its partitions",
    )


CredentialKind = Literal[
    "static", "client_secret", "certificate", "managed_identity", "workload_identity"
]


class CredentialSettings(BaseModel):
    """How to authenticate to a service (the same fields for Graph and Dataverse). Secrets come
    from the environment or from files, never from a command line."""

    model_config = _FROZEN
    credential: CredentialKind | None = Field(
        None,
        description="client_secret, certificate, managed_identity, workload_identity or static"
        " (emulator); unset: inferred from which of the fields below is set",
    )
    tenant_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,99}$")
    client_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,99}$")
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = Field(None, description="A file holding the client secret")
    certificate_path: Path | None = Field(None, description="PEM or PKCS12 with the private key")
    certificate_password: SecretStr | None = None
    federated_token_file: Path | None = Field(
        None,
        description="Workload identity: the projected service account token (unset: "
        "AZURE_FEDERATED_TOKEN_FILE)",
    )
    authority: str | None = Field(
        None,
        pattern=r"^(https://)?[A-Za-z0-9.\-]+(:\d{1,5})?(/[\w.\-]*)*$",
        description="Microsoft Entra authority host or https URL (unset: AZURE_AUTHORITY_HOST "
        "or login.microsoftonline.com)",
    )
    static_token: SecretStr | None = Field(None, description="Emulator only")


class GraphSettings(CredentialSettings):
    """Microsoft Graph (or the emulator) and how to authenticate to it."""

    base_url: str = Field("https://graph.microsoft.com/v1.0", pattern=r"^https?://")
    managed_identity: bool = Field(False, description="The same as credential=managed_identity")
    notification_url: str | None = Field(None, pattern=r"^https?://")
    client_state_key: SecretStr | None = Field(
        None,
        min_length=32,
        description="HMAC key of stored webhook clientStates, the same on every worker; unset:"
        " derived from client_secret (or static_token)",
    )


class DataverseSettings(CredentialSettings):
    """Dataverse Web API (or the emulator) and how to authenticate to it (one app registration
    for every organisation; each organisation's token has its own URL's scope)."""

    base_url: str = Field("https://org.crm.dynamics.com/api/data/v9.2", pattern=r"^https?://")


class ReceiverSettings(BaseModel):
    """The Graph webhook receiver."""

    model_config = _FROZEN
    enabled: bool = Field(
        True,
        description="Run the receiver inside `dynasync run` (off: a `dynasync receiver` "
        "process serves graph.notification_url)",
    )
    host: str = "127.0.0.1"
    port: int = Field(8090, ge=1, le=65535)
    max_body_bytes: int = Field(1_000_000, ge=1024, le=50_000_000)
    rate_per_s: float = Field(200.0, ge=0.1, le=1_000_000, description="Per remote address")
    rate_burst: int = Field(1000, ge=1, le=10_000_000)


class WebSettings(BaseModel):
    """The worker's web server: Prometheus ``/metrics``, ``/healthz``, ``/readyz`` and the
    status page, on one port (``DYNASYNC_WEB__PORT``)."""

    model_config = _FROZEN
    enabled: bool = True
    host: str = Field("127.0.0.1", min_length=1, max_length=253)
    port: int = Field(6066, ge=0, le=65535, description="0: any free port (tests)")


class PrivacySettings(BaseModel):
    """Personal data on the public change feed."""

    model_config = _FROZEN
    event_bodies: bool = Field(
        True,
        description="Put item bodies (the description field) in events.v1; off: left out",
    )


class HealthSettings(BaseModel):
    """What the runtime does with a mailbox Graph refuses (user gone, access denied, licence
    removed): it is marked failing with an alert, tried ``failing_tries`` times
    ``failing_retry_s`` apart, then disabled."""

    model_config = _FROZEN
    failing_tries: int = Field(10, ge=1, le=1000)
    failing_retry_s: float = Field(300.0, gt=0, le=86_400)


class Settings(BaseSettings):
    """Everything a Dynasync process needs to run."""

    model_config = SettingsConfigDict(
        env_prefix="DYNASYNC_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        frozen=True,
        extra="forbid",
    )

    app_id: str = Field("dynasync", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    store: Literal["memory"] = Field(
        "memory",
        description="Link state is held in memory and restored from its changelog topics when "
        "a worker gets its partitions; the rocksdb store was removed",
    )
    data_dir: Path = Path(".run/data")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field(
        "text", description="json: one JSON object per line (ts, level, logger, msg)"
    )
    web: WebSettings = WebSettings()
    kafka: KafkaSettings = KafkaSettings()
    graph: GraphSettings = GraphSettings()
    dataverse: DataverseSettings = DataverseSettings()
    receiver: ReceiverSettings = ReceiverSettings()
    health: HealthSettings = HealthSettings()
    privacy: PrivacySettings = PrivacySettings()

    @field_validator("store", mode="before")
    @classmethod
    def _memory_only(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() == "rocksdb":
            raise ValueError(
                "store=rocksdb was removed: link state is held in memory and restored from the"
                " changelog topics at start (README, State); unset DYNASYNC_STORE"
            )
        return value

    @field_validator("data_dir")
    @classmethod
    def _relative_ok(cls, value: Path) -> Path:
        if str(value).strip() == "":
            raise ValueError("data_dir must not be empty")
        return value
