"""Frozen runtime settings, read from ``DYNASYNC_*`` environment variables or a ``.env`` file.

Nested groups use ``__``: ``DYNASYNC_KAFKA__BOOTSTRAP=127.0.0.1:9092``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(BaseModel):
    """Where the broker is and how topics are laid out."""

    model_config = _FROZEN
    bootstrap: str = Field("127.0.0.1:9092", pattern=r"^[\w.\-]+:\d{1,5}(,[\w.\-]+:\d{1,5})*$")
    partitions: int = Field(6, ge=1, le=1000)
    replication_factor: int = Field(1, ge=1, le=5)
    topic_prefix: str = Field("", pattern=r"^[A-Za-z0-9._-]{0,64}$")
    session_timeout_s: float = Field(
        30.0,
        ge=6.0,
        le=300.0,
        description="How long a worker that vanished (kill -9, lost host) keeps its partitions",
    )


class GraphSettings(BaseModel):
    """Microsoft Graph (or the emulator) and how to authenticate to it."""

    model_config = _FROZEN
    base_url: str = Field("https://graph.microsoft.com/v1.0", pattern=r"^https?://")
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    certificate_path: Path | None = None
    managed_identity: bool = False
    static_token: SecretStr | None = Field(None, description="Emulator only")
    notification_url: str | None = Field(None, pattern=r"^https?://")
    client_state_key: SecretStr | None = Field(
        None,
        min_length=32,
        description="HMAC key of stored webhook clientStates, the same on every worker; unset:"
        " derived from client_secret (or static_token)",
    )


class DataverseSettings(BaseModel):
    """Dataverse Web API (or the emulator) and how to authenticate to it."""

    model_config = _FROZEN
    base_url: str = Field("https://org.crm.dynamics.com/api/data/v9.2", pattern=r"^https?://")
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    static_token: SecretStr | None = Field(None, description="Emulator only")


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
    store: Literal["memory", "rocksdb"] = "memory"
    data_dir: Path = Path(".run/data")
    web_port: int = Field(6066, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    kafka: KafkaSettings = KafkaSettings()
    graph: GraphSettings = GraphSettings()
    dataverse: DataverseSettings = DataverseSettings()
    receiver: ReceiverSettings = ReceiverSettings()
    health: HealthSettings = HealthSettings()
    privacy: PrivacySettings = PrivacySettings()

    @field_validator("data_dir")
    @classmethod
    def _relative_ok(cls, value: Path) -> Path:
        if str(value).strip() == "":
            raise ValueError("data_dir must not be empty")
        return value
