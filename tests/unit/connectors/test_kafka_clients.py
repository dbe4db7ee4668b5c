"""The Kafka client factory: the security settings are checked at the edge, secrets come from
the environment or an owner-only file and never show, the TLS context and the OAUTHBEARER token
provider are built from the settings. The broker end is tests/integration/test_kafka_security."""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka.abc import AbstractTokenProvider
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from pydantic import ValidationError

from connectors.kafka_clients import (
    TOKEN_REFRESH_MARGIN_S,
    AzureTokenProvider,
    KafkaAccessError,
    KafkaClients,
    KafkaConnection,
)
from pipeline.settings import KafkaSettings, Settings
from tests.secure_kafka import make_certificates
from tests.token_endpoint import token_endpoint

PASSWORD = "pw-3c9e81f0a2"
SCOPE = "https://dynasync-test.servicebus.windows.net/.default"


def _scram(**extra: Any) -> KafkaConnection:
    return KafkaConnection.model_validate(
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "alice",
            "sasl_password": PASSWORD,
            **extra,
        }
    )


@pytest.mark.parametrize(
    "raw",
    [
        {"bootstrap": "not a host list"},
        {"bootstrap": "a:1,,b:2"},
        {"security_protocol": "TLS"},
        {"security_protocol": 7},
        {"security_protocol": "SASL_SSL"},
        {"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"},
        {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_password": "x"},
        {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "a"},
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "a",
            "sasl_password": "x",
            "sasl_password_file": "/tmp/x",
        },
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_username": "",
            "sasl_password": "x",
        },
        {"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"},
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "OAUTHBEARER",
            "oauth_scope": "http://ns.servicebus.windows.net/.default",
        },
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "OAUTHBEARER",
            "oauth_scope": SCOPE,
            "sasl_username": "a",
        },
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "OAUTHBEARER",
            "oauth_scope": SCOPE,
            "oauth_client_id": "00000000-0000-0000-0000-000000000001",
        },
        {"sasl_mechanism": "PLAIN", "sasl_username": "a", "sasl_password": "x"},
        {"security_protocol": "SSL", "sasl_username": "a"},
        {"ssl_ca_file": "/etc/ssl/ca.pem"},
        {"ssl_check_hostname": False},
        {"security_protocol": "SASL_PLAINTEXT", "ssl_ca_file": "/etc/ssl/ca.pem"},
        {"security_protocol": "SSL", "ssl_key_file": "/k.pem"},
        {"security_protocol": "SSL", "ssl_key_password": "x"},
        {
            "security_protocol": "SSL",
            "ssl_cert_file": "/c.pem",
            "ssl_key_password": "x",
            "ssl_key_password_file": "/p",
        },
        {"security_protocol": "SSL", "ssl_check_hostname": "sometimes"},
        {"security_protocol": "SSL", "sasl_password": ["x"]},
        {"security_protocol": "SSL", "surprise": 1},
    ],
)
def test_garbage_security_settings_are_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        KafkaConnection.model_validate(raw)
    with pytest.raises(ValidationError):
        KafkaSettings.model_validate(raw)


def test_settings_come_from_the_environment_case_insensitively(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DYNASYNC_KAFKA__SECURITY_PROTOCOL", "sasl_ssl")
    monkeypatch.setenv("DYNASYNC_KAFKA__SASL_MECHANISM", "scram-sha-256")
    monkeypatch.setenv("DYNASYNC_KAFKA__SASL_USERNAME", "alice")
    monkeypatch.setenv("DYNASYNC_KAFKA__SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("DYNASYNC_KAFKA__SSL_CHECK_HOSTNAME", "false")
    kafka = Settings().kafka
    assert kafka.security_protocol == "SASL_SSL"
    assert kafka.sasl_mechanism == "SCRAM-SHA-256"
    assert kafka.ssl_check_hostname is False
    assert PASSWORD not in repr(kafka) and PASSWORD not in str(kafka.model_dump())
    monkeypatch.setenv("DYNASYNC_KAFKA__SECURITY_PROTOCOL", "SASL_TLS")
    with pytest.raises(ValidationError):
        Settings()


def test_plaintext_clients_get_only_the_bootstrap_servers() -> None:
    clients = KafkaClients("127.0.0.1:9092")
    assert clients.options(acks="all") == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
        "acks": "all",
    }


def test_a_caller_cannot_override_the_security_settings() -> None:
    clients = KafkaClients(_scram())
    for name in ("bootstrap_servers", "security_protocol", "ssl_context", "sasl_plain_password"):
        with pytest.raises(TypeError, match=name):
            clients.options(**{name: None})


def test_the_clients_carry_tls_and_sasl() -> None:
    clients = KafkaClients(_scram(ssl_check_hostname=False))
    options = clients.options()
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "alice"
    assert options["sasl_plain_password"] == PASSWORD
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname is False
    assert context.verify_mode == ssl.CERT_REQUIRED  # the chain is still checked


def test_a_password_file_must_be_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "kafka.password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o644)
    connection = _scram(sasl_password=None, sasl_password_file=path)
    with pytest.raises(KafkaAccessError) as caught:
        KafkaClients(connection)
    assert caught.value.problem == "config"
    assert str(caught.value) == (
        f"sasl_password_file {path} is mode 0644, readable by others; it must be 0600 or"
        f" stricter (chmod 600 {path})"
    )
    path.chmod(0o600)
    assert KafkaClients(connection).options()["sasl_plain_password"] == PASSWORD


@pytest.mark.parametrize("content", ["", "\n", "two\nlines\n", b"\xff\xfe"])
def test_an_unusable_password_file_is_one_config_line(tmp_path: Path, content: str | bytes) -> None:
    path = tmp_path / "kafka.password"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(KafkaAccessError) as caught:
        KafkaClients(_scram(sasl_password=None, sasl_password_file=path))
    assert caught.value.problem == "config"
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_a_missing_password_file_is_one_config_line(tmp_path: Path) -> None:
    path = tmp_path / "absent"
    with pytest.raises(KafkaAccessError, match=r"sasl_password_file .*absent: No such file"):
        KafkaClients(_scram(sasl_password=None, sasl_password_file=path))


def test_a_ca_file_that_is_not_a_certificate_is_one_config_line(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    with pytest.raises(KafkaAccessError) as caught:
        KafkaClients(_scram(ssl_ca_file=bad))
    assert caught.value.problem == "config"
    assert str(caught.value).startswith(f"ssl_ca_file {bad}: ")
    with pytest.raises(KafkaAccessError, match=r"ssl_ca_file .*missing\.pem"):
        KafkaClients(_scram(ssl_ca_file=tmp_path / "missing.pem"))


def test_a_client_certificate_with_an_encrypted_key(tmp_path: Path) -> None:
    make_certificates(tmp_path, "store-pw", "key-pw")
    cert, key = tmp_path / "client.pem", tmp_path / "client.enc.key"
    base = {"security_protocol": "SSL", "ssl_ca_file": tmp_path / "ca.pem"}
    good = KafkaConnection.model_validate(
        {**base, "ssl_cert_file": cert, "ssl_key_file": key, "ssl_key_password": "key-pw"}
    )
    assert isinstance(KafkaClients(good).options()["ssl_context"], ssl.SSLContext)
    password_file = tmp_path / "key.password"
    password_file.write_text("key-pw\n")
    password_file.chmod(0o600)
    from_file = KafkaConnection.model_validate(
        {**base, "ssl_cert_file": cert, "ssl_key_file": key, "ssl_key_password_file": password_file}
    )
    KafkaClients(from_file)
    wrong = KafkaConnection.model_validate(
        {**base, "ssl_cert_file": cert, "ssl_key_file": key, "ssl_key_password": "nope"}
    )
    with pytest.raises(KafkaAccessError) as caught:
        KafkaClients(wrong)
    assert caught.value.problem == "config"
    assert str(caught.value).startswith(f"ssl_cert_file {cert}: cannot load it with its key")
    assert "nope" not in str(caught.value)


class CountingCredential:
    """An async credential of our own: hands out numbered tokens valid for ``lifetime_s``."""

    def __init__(self, log: list[str], lifetime_s: float, fail: bool = False) -> None:
        self._log = log
        self._lifetime = lifetime_s
        self._fail = fail

    async def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self._log.append(f"get {' '.join(scopes)}")
        if self._fail:
            raise ClientAuthenticationError("AADSTS700016: application not found\nmore detail")
        return AccessToken(f"token-{len(self._log)}", int(time.time() + self._lifetime))

    async def close(self) -> None:
        self._log.append("close")

    async def __aenter__(self) -> CountingCredential:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


async def test_the_token_provider_keeps_a_token_until_shortly_before_it_expires() -> None:
    log: list[str] = []
    now = [time.time()]
    provider = AzureTokenProvider(
        SCOPE, lambda: CountingCredential(log, lifetime_s=3600), clock=lambda: now[0]
    )
    assert isinstance(provider, AbstractTokenProvider)  # what aiokafka checks
    first = await provider.token()
    assert await provider.token() == first
    assert log == [f"get {SCOPE}", "close"]
    now[0] += 3600 - TOKEN_REFRESH_MARGIN_S + 1
    assert await provider.token() != first
    assert log == [f"get {SCOPE}", "close", f"get {SCOPE}", "close"]


async def test_a_credential_failure_is_one_auth_line() -> None:
    log: list[str] = []
    provider = AzureTokenProvider(SCOPE, lambda: CountingCredential(log, 3600, fail=True))
    with pytest.raises(KafkaAccessError) as caught:
        await provider.token()
    assert caught.value.problem == "auth"
    assert str(caught.value) == (
        f"OAUTHBEARER: no token for {SCOPE}: AADSTS700016: application not found more detail"
    )
    assert log[-1] == "close"


async def test_oauthbearer_with_a_real_managed_identity_credential(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connection = KafkaConnection(
        security_protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        oauth_scope=SCOPE,
        oauth_credential="managed_identity",
    )
    async with token_endpoint("dynasync-worker") as endpoint:
        monkeypatch.setenv("IDENTITY_ENDPOINT", endpoint.url)
        monkeypatch.setenv("IDENTITY_HEADER", endpoint.secret)
        provider = KafkaClients(connection).options()["sasl_oauth_token_provider"]
        token = await provider.token()
        assert await provider.token() == token
    assert endpoint.resources == ["https://dynasync-test.servicebus.windows.net"]
    assert token.count(".") == 2 and endpoint.refused == 0


async def test_check_says_in_one_line_that_nothing_listens() -> None:
    from tests.ports import free_port

    server = f"127.0.0.1:{free_port()}"
    with pytest.raises(KafkaAccessError) as caught:
        await KafkaClients(server).check(timeout_s=2)
    assert caught.value.problem == "unreachable"
    assert str(caught.value).startswith(f"cannot reach {server}: ")
