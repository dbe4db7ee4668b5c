"""Every ``dynasync`` command that touches Kafka builds its clients from the
``DYNASYNC_KAFKA__*`` settings (``--bootstrap`` replaces only the servers) and checks the
cluster first: a setting that cannot be used is one line and exit 2, a cluster that refuses or
does not answer one line and exit 1, never a traceback. A Graph or Dataverse credential that
cannot be built stops ``dynasync run`` the same way (exit 2) before it connects anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from connectors.kafka_clients import KafkaConnection
from pipeline.cli import clients
from pipeline.cli.common import kafka_settings
from tests.ports import free_port
from tests.unit.cli.invoke import Ran, dynasync

SECRET = "hunter2-do-not-print"

#: One command of each kind that connects: the config store, dlq, the admin client.
KAFKA_COMMANDS = [
    ("org", "list"),
    ("mailbox", "list"),
    ("mailbox", "status", "ada@contoso.com"),
    ("dlq", "list"),
    ("dlq", "replay", "--dry-run"),
    ("topics", "create"),
    ("demo-echo",),
]

#: What ``dynasync run`` needs besides Kafka (emulator tokens).
TOKENS = {"DYNASYNC_GRAPH__STATIC_TOKEN": "tok", "DYNASYNC_DATAVERSE__STATIC_TOKEN": "tok"}


def _one_line(ran: Ran, code: int, *needles: str) -> str:
    assert ran.code == code, ran
    assert len(ran.err_lines) == 1, ran.err
    line = ran.err_lines[0]
    assert line.startswith("dynasync: "), line
    assert "Traceback" not in ran.err and SECRET not in ran.err + ran.out
    for needle in needles:
        assert needle in line, line
    return line


def _sasl(password_file: Path, bootstrap: str = "127.0.0.1:9092") -> dict[str, str | None]:
    return {
        "DYNASYNC_KAFKA__BOOTSTRAP": bootstrap,
        "DYNASYNC_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "DYNASYNC_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "DYNASYNC_KAFKA__SASL_USERNAME": "dynasync",
        "DYNASYNC_KAFKA__SASL_PASSWORD_FILE": str(password_file),
    }


def _secret_file(tmp_path: Path, mode: int, text: str = SECRET + "\n") -> Path:
    path = tmp_path / "kafka-password"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("argv", KAFKA_COMMANDS, ids=" ".join)
def test_sasl_without_a_mechanism_is_one_line_and_exit_2(argv: tuple[str, ...]) -> None:
    ran = dynasync(*argv, env={"DYNASYNC_KAFKA__SECURITY_PROTOCOL": "SASL_SSL"})
    _one_line(ran, 2, "invalid setting kafka", "needs sasl_mechanism")


@pytest.mark.parametrize("argv", KAFKA_COMMANDS, ids=" ".join)
def test_a_password_file_others_can_read_is_one_line_and_exit_2(
    argv: tuple[str, ...], tmp_path: Path
) -> None:
    # --bootstrap overrides the servers only: the password file still comes from the env
    port = free_port()
    env = _sasl(_secret_file(tmp_path, 0o644))
    ran = dynasync(*argv, "--bootstrap", f"127.0.0.1:{port}", env=env)
    _one_line(ran, 2, "Kafka settings: sasl_password_file", "mode 0644", "chmod 600")


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"DYNASYNC_KAFKA__SECURITY_PROTOCOL": "TLS"}, "invalid setting kafka.security_protocol"),
        ({"DYNASYNC_KAFKA__SASL_MECHANISM": "PLAIN"}, "need security_protocol SASL_"),
        ({"DYNASYNC_KAFKA__SSL_CA_FILE": "/etc/hosts"}, "need security_protocol SSL"),
        ({"DYNASYNC_KAFKA__BOOTSTRAP": "no port;rm -rf"}, "invalid setting kafka.bootstrap"),
        ({"DYNASYNC_KAFKA__SSL_CHECK_HOSTNAME": "perhaps"}, "kafka.ssl_check_hostname"),
    ],
)
def test_garbage_kafka_settings_are_one_line_and_exit_2(
    env: dict[str, str | None], needle: str
) -> None:
    _one_line(dynasync("org", "list", env=env), 2, needle)


def test_unusable_secret_and_ca_files_are_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = _sasl(tmp_path / "nowhere")
    _one_line(dynasync("dlq", "list", env=missing), 2, "sasl_password_file", "No such file")
    empty = _sasl(_secret_file(tmp_path, 0o600, "\n"))
    _one_line(dynasync("dlq", "list", env=empty), 2, "must hold one non-empty line")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    binary.chmod(0o600)
    _one_line(dynasync("dlq", "list", env=_sasl(binary)), 2, "sasl_password_file")
    garbage_ca = tmp_path / "ca.pem"
    garbage_ca.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n", encoding="utf-8")
    tls: dict[str, str | None] = {
        "DYNASYNC_KAFKA__SECURITY_PROTOCOL": "SSL",
        "DYNASYNC_KAFKA__SSL_CA_FILE": str(garbage_ca),
    }
    _one_line(dynasync("topics", "create", env=tls), 2, "Kafka settings: ssl_ca_file")


def test_nothing_listening_is_one_line_and_exit_1_at_once() -> None:
    port = free_port()
    started = time.monotonic()
    ran = dynasync("topics", "create", "--bootstrap", f"127.0.0.1:{port}")
    _one_line(ran, 1, f"Kafka: cannot reach 127.0.0.1:{port}")
    assert time.monotonic() - started < 10
    ran = dynasync("org", "list", "--bootstrap", f"127.0.0.1:{port}", "--timeout", "2", "--json")
    _one_line(ran, 1, f"127.0.0.1:{port}")
    assert ran.out == ""


def test_bootstrap_overrides_only_the_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = _secret_file(tmp_path, 0o600)
    for name, value in _sasl(password, "10.0.0.1:9093").items():
        assert value is not None
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DYNASYNC_KAFKA__TOPIC_PREFIX", "env.")
    kafka = kafka_settings("127.0.0.1:19092", "cli.")
    assert kafka.bootstrap == "127.0.0.1:19092" and kafka.topic_prefix == "cli."
    assert kafka.security_protocol == "SASL_PLAINTEXT"
    assert kafka.sasl_mechanism == "SCRAM-SHA-512" and kafka.sasl_username == "dynasync"
    assert kafka.sasl_password_file == password
    same = kafka_settings(None)
    assert same.bootstrap == "10.0.0.1:9093" and same.topic_prefix == "env."
    assert same.sasl_password_file == password


def test_the_cli_client_helpers_go_through_the_factory() -> None:
    kafka = KafkaConnection(
        bootstrap="127.0.0.1:1",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password=SecretStr(SECRET),
    )
    # the factory owns the security options: a caller cannot set (or drop) them
    with pytest.raises(TypeError, match="security_protocol"):
        clients.admin_client(kafka, security_protocol="PLAINTEXT")
    with pytest.raises(TypeError, match="sasl_plain_password"):
        clients.consumer(kafka, "t", sasl_plain_password="other")
    with pytest.raises(TypeError, match="bootstrap_servers"):
        clients.producer(kafka, bootstrap_servers="127.0.0.1:9092")


def _process(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DYNASYNC_")}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *argv],
        env={**base, "DYNASYNC_WEB__PORT": "0", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _process_line(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert done.returncode == code, done
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dynasync: "), done.stderr
    assert SECRET not in done.stderr + done.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_run_and_receiver_refuse_unusable_kafka_settings_in_one_line(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in _sasl(_secret_file(tmp_path, 0o640)).items() if v is not None}
    _process_line(_process("run", env={**env, **TOKENS}), 2, "sasl_password_file", "mode 0640")
    key = {"DYNASYNC_GRAPH__CLIENT_STATE_KEY": "k" * 40}
    receiver = ("receiver", "--port", str(free_port()))
    _process_line(_process(*receiver, env={**env, **key}), 2, "mode 0640")
    nobody = {"DYNASYNC_KAFKA__BOOTSTRAP": f"127.0.0.1:{port}"}
    _process_line(_process("run", env={**nobody, **TOKENS}), 1, "Kafka: cannot reach")
    _process_line(_process(*receiver, env={**nobody, **key}), 1, "Kafka: cannot reach")


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        (
            {"DYNASYNC_DATAVERSE__STATIC_TOKEN": "tok"},
            "graph credential: Graph credentials missing",
        ),
        (
            {
                "DYNASYNC_GRAPH__CREDENTIAL": "client_secret",
                "DYNASYNC_GRAPH__TENANT_ID": "t",
                "DYNASYNC_GRAPH__CLIENT_ID": "c",
                "DYNASYNC_DATAVERSE__STATIC_TOKEN": "tok",
            },
            "graph credential: a client_secret credential needs client_secret",
        ),
        (
            {
                "DYNASYNC_GRAPH__STATIC_TOKEN": "tok",
                "DYNASYNC_DATAVERSE__CERTIFICATE_PATH": "/nonexistent/cert.pem",
                "DYNASYNC_DATAVERSE__TENANT_ID": "t",
                "DYNASYNC_DATAVERSE__CLIENT_ID": "c",
            },
            "dataverse credential: certificate file '/nonexistent/cert.pem' cannot be read",
        ),
        (
            {
                "DYNASYNC_GRAPH__STATIC_TOKEN": "two words",
                "DYNASYNC_DATAVERSE__STATIC_TOKEN": "tok",
            },
            "graph credential: static token",
        ),
    ],
    ids=["graph-missing", "graph-incomplete", "dataverse-unreadable", "graph-garbage"],
)
def test_run_refuses_a_credential_it_cannot_build_in_one_line(
    env: dict[str, str], needle: str
) -> None:
    # nothing listens on the bootstrap: the credential is refused before Kafka is tried
    env = {**env, "DYNASYNC_KAFKA__BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    _process_line(_process("run", env=env), 2, needle)
