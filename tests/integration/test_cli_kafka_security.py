"""``dynasync`` commands over a secured cluster with nothing but the ``DYNASYNC_KAFKA__*``
settings of the environment: topics, the config store and dlq over SASL_SSL (SCRAM-SHA-512,
the password in an owner-only file), ``dynasync receiver`` too; a wrong password, an untrusted
CA or the wrong protocol is one line on stderr and exit 1, within a bounded time.

The SASL_SSL broker is this module's own (tests/secure_kafka.py); the last test uses the
PLAINTEXT broker of ``make test``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port
from tests.secure_kafka import (
    SecureBroker,
    broker_for_tests,
)
from tests.unit.cli.invoke import Ran, dynasync

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    yield from broker_for_tests(tmp_path_factory.mktemp("secure-kafka-cli"))


def _env(broker: SecureBroker, password_file: Path, **extra: str) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        "DYNASYNC_KAFKA__BOOTSTRAP": broker.sasl_ssl,
        "DYNASYNC_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "DYNASYNC_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "DYNASYNC_KAFKA__SASL_USERNAME": broker.scram_user,
        "DYNASYNC_KAFKA__SASL_PASSWORD_FILE": str(password_file),
        "DYNASYNC_KAFKA__SSL_CA_FILE": str(broker.ca_file),
        "DYNASYNC_KAFKA__TOPIC_PREFIX": f"cli{uuid.uuid4().hex[:8]}.",
        "DYNASYNC_KAFKA__PARTITIONS": "1",
    }
    return {**env, **{f"DYNASYNC_KAFKA__{k.upper()}": v for k, v in extra.items()}}


def _password_file(tmp_path: Path, password: str) -> Path:
    path = tmp_path / f"kafka-password-{uuid.uuid4().hex[:6]}"
    path.write_text(password + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def _refused(ran: Ran, secret: str, *needles: str) -> str:
    assert ran.code == 1, ran
    assert ran.out == "" and len(ran.err_lines) == 1, ran
    line = ran.err_lines[0]
    assert line.startswith("dynasync: Kafka: ") and secret not in ran.err, line
    for needle in needles:
        assert needle in line, line
    return line


def test_commands_over_sasl_ssl_from_the_environment(broker: SecureBroker, tmp_path: Path) -> None:
    env = _env(broker, _password_file(tmp_path, broker.scram_password))
    ran = dynasync("topics", "create", "--json", env=env)
    assert ran.code == 0, ran
    created = json.loads(ran.out)
    assert created and all(t["created"] and t["partitions"] == 1 for t in created)
    again = dynasync("topics", "create", "--json", env=env)
    assert again.code == 0, again
    assert {t["name"] for t in json.loads(again.out)} == {t["name"] for t in created}
    assert not any(t["created"] for t in json.loads(again.out))

    ran = dynasync("org", "add", "--org", "contoso", "--url", "https://c.example", env=env)
    assert ran.code == 0, ran
    ran = dynasync("org", "list", "--json", env=env)
    assert ran.code == 0, ran
    assert [o["org_id"] for o in json.loads(ran.out)] == ["contoso"]
    ran = dynasync("dlq", "list", "--json", env=env)
    assert ran.code == 0 and json.loads(ran.out) == [], ran
    assert broker.scram_password not in ran.out + ran.err


def test_a_wrong_password_an_untrusted_ca_and_the_wrong_protocol_are_one_line(
    broker: SecureBroker, tmp_path: Path
) -> None:
    wrong = "wrong-" + uuid.uuid4().hex[:8]
    env = _env(broker, _password_file(tmp_path, wrong))
    started = time.monotonic()
    _refused(
        dynasync("org", "list", "--timeout", "10", env=env),
        wrong,
        f"SASL SCRAM-SHA-512 authentication as {broker.scram_user!r} at {broker.sasl_ssl} failed",
    )
    assert time.monotonic() - started < 30

    good = _password_file(tmp_path, broker.scram_password)
    untrusted = _env(broker, good, ssl_ca_file=str(broker.other_ca_file))
    _refused(
        dynasync("topics", "create", env=untrusted),
        broker.scram_password,
        f"TLS: the certificate of {broker.sasl_ssl} is not trusted by {broker.other_ca_file}",
    )

    # --bootstrap keeps the environment's security settings: PLAINTEXT there is refused
    plaintext: dict[str, str | None] = {"DYNASYNC_KAFKA__SECURITY_PROTOCOL": "PLAINTEXT"}
    started = time.monotonic()
    _refused(
        dynasync("dlq", "list", "--bootstrap", broker.sasl_ssl, "--timeout", "5", env=plaintext),
        broker.scram_password,
        broker.sasl_ssl,
        "security_protocol PLAINTEXT",
    )
    assert time.monotonic() - started < 30


def test_the_receiver_publishes_over_sasl_ssl(broker: SecureBroker, tmp_path: Path) -> None:
    """The receiver's publisher and cursor store get the security settings too (it starts,
    says it is ready, stops on SIGTERM)."""
    env = _env(broker, _password_file(tmp_path, broker.scram_password))
    base = {k: v for k, v in os.environ.items() if not k.startswith("DYNASYNC_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "receiver", "--port", str(free_port())],
        env={
            **base,
            **{k: v for k, v in env.items() if v is not None},
            "DYNASYNC_GRAPH__CLIENT_STATE_KEY": "k" * 40,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "dynasync receiver: ready" in line:
                break
        assert any("dynasync receiver: ready" in line for line in lines), "".join(lines)
        assert any(broker.sasl_ssl in line for line in lines)
    finally:
        process.terminate()
        rest = process.communicate(timeout=30)[1]
    assert process.returncode == 0, "".join(lines) + rest
    assert broker.scram_password not in "".join(lines) + rest


def test_sasl_against_a_plaintext_broker_is_one_line(kafka_bootstrap: str) -> None:
    env: dict[str, str | None] = {
        "DYNASYNC_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "DYNASYNC_KAFKA__SASL_MECHANISM": "PLAIN",
        "DYNASYNC_KAFKA__SASL_USERNAME": "dynasync",
        "DYNASYNC_KAFKA__SASL_PASSWORD": "not-the-point",
    }
    started = time.monotonic()
    ran = dynasync("topics", "create", "--bootstrap", kafka_bootstrap, env=env)
    _refused(ran, "not-the-point", kafka_bootstrap)
    assert time.monotonic() - started < 30
