"""A throwaway secured Kafka broker for the security tests: one KRaft node in a temp directory
with a SASL_SSL listener (SCRAM-SHA-512, PLAIN and unsecured-JWT OAUTHBEARER) and an SSL
listener that requires a client certificate, on free ports.

Its certificates are made here with openssl (a CA, a broker certificate for localhost and
127.0.0.1, a client certificate with an encrypted key, and a second CA that signed nothing the
broker shows); the SCRAM user is created by Kafka's own storage tool (``format --add-scram``).
It runs from the jars ``deploy/kafka/kafka.sh fetch`` puts in ``.cache/kafka``, heap ≤ 384 MB.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"
LOG4J = ROOT / "deploy" / "kafka" / "log4j2.xml"
START_TIMEOUT_S = 90.0


@dataclass(frozen=True, slots=True)
class SecureBroker:
    """Where the secured broker listens and what a client needs to get in."""

    sasl_ssl: str
    mtls: str
    ca_file: Path
    other_ca_file: Path
    client_cert: Path
    client_key: Path
    client_key_password: str
    scram_user: str
    scram_password: str
    plain_user: str
    plain_password: str
    log: Path


class BrokerUnavailableError(RuntimeError):
    """What the secured broker needs (java, openssl, the jars) is missing or it did not start."""


def missing_tools() -> list[str]:
    """The programs this helper needs that are not on PATH."""
    return [tool for tool in ("java", "openssl") if shutil.which(tool) is None]


def kafka_libs() -> Path:
    """The broker's jars (fetched by kafka.sh if not there yet)."""
    done = subprocess.run(
        [str(KAFKA_SH), "fetch"], capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        raise BrokerUnavailableError(f"kafka.sh fetch failed: {done.stderr.strip()[-500:]}")
    pom = (ROOT / "deploy" / "kafka" / "pom.xml").read_text(encoding="utf-8")
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    if match is None:
        raise BrokerUnavailableError("no <kafka.version> in deploy/kafka/pom.xml")
    return ROOT / ".cache" / "kafka" / match.group(1) / "libs"


def _run(*args: str, cwd: Path) -> None:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise BrokerUnavailableError(f"{' '.join(args[:3])} failed: {done.stderr.strip()[-500:]}")


def _ca(directory: Path, name: str) -> None:
    _run(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN=dynasync test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip


def _leaf(directory: Path, name: str, ca: str, extensions: str, key_password: str | None) -> None:
    (directory / f"{name}.ext").write_text(extensions, encoding="utf-8")
    _run(
        "openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
        "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip
    _run(
        "openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
        f"{ca}.key", "-CAcreateserial", "-days", "2", "-out", f"{name}.pem",
        "-extfile", f"{name}.ext",
        cwd=directory,
    )  # fmt: skip
    if key_password is not None:
        _run(
            "openssl", "pkcs8", "-topk8", "-in", f"{name}.key", "-out", f"{name}.enc.key",
            "-v2", "aes-256-cbc", "-passout", f"pass:{key_password}",
            cwd=directory,
        )  # fmt: skip


def make_certificates(directory: Path, store_password: str, key_password: str) -> None:
    """ca.pem, other-ca.pem, broker.p12 (PKCS12 for the broker), client.pem/client.enc.key."""
    _ca(directory, "ca")
    _ca(directory, "other-ca")
    _leaf(
        directory,
        "broker",
        "ca",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
        None,
    )
    _leaf(
        directory,
        "client",
        "ca",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
        key_password,
    )
    _run(
        "openssl", "pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key",
        "-certfile", "ca.pem", "-name", "broker", "-out", "broker.p12",
        "-passout", f"pass:{store_password}",
        cwd=directory,
    )  # fmt: skip


def _properties(
    directory: Path, ports: dict[str, int], store_password: str, plain: tuple[str, str]
) -> str:
    listeners = ",".join(f"{name}://127.0.0.1:{port}" for name, port in ports.items())
    advertised = ",".join(
        f"{name}://127.0.0.1:{port}" for name, port in ports.items() if name != "CONTROLLER"
    )
    modules = "org.apache.kafka.common.security"
    return f"""\
process.roles=broker,controller
node.id=1
listeners={listeners}
advertised.listeners={advertised}
listener.security.protocol.map=INTERNAL:PLAINTEXT,SECURE:SASL_SSL,MTLS:SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=INTERNAL
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=127.0.0.1:{ports["CONTROLLER"]}
log.dirs={directory}/data
num.network.threads=2
num.io.threads=2
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
ssl.keystore.type=PKCS12
ssl.keystore.location={directory}/broker.p12
ssl.keystore.password={store_password}
ssl.key.password={store_password}
listener.name.mtls.ssl.client.auth=required
listener.name.mtls.ssl.truststore.type=PEM
listener.name.mtls.ssl.truststore.location={directory}/ca.pem
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN,OAUTHBEARER
listener.name.secure.scram-sha-512.sasl.jaas.config={modules}.scram.ScramLoginModule required;
listener.name.secure.plain.sasl.jaas.config={modules}.plain.PlainLoginModule required \
user_{plain[0]}="{plain[1]}";
listener.name.secure.oauthbearer.sasl.jaas.config=\
{modules}.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="broker";
"""


def _cluster_id() -> str:
    """A random Kafka cluster id (URL-safe base64 of 16 bytes, not starting with '-')."""
    while True:
        raw = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not raw.startswith("-"):
            return raw


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


@contextlib.contextmanager
def secure_broker(directory: Path) -> Iterator[SecureBroker]:
    """Start the secured broker in ``directory``; stop it (and wait for it) on exit."""
    libs = kafka_libs()
    store_password = secrets.token_hex(8)
    key_password = secrets.token_hex(8)
    scram = ("alice", secrets.token_hex(8))
    plain = ("bob", secrets.token_hex(8))
    make_certificates(directory, store_password, key_password)
    ports = {name: free_port() for name in ("INTERNAL", "SECURE", "MTLS", "CONTROLLER")}
    config = directory / "server.properties"
    config.write_text(_properties(directory, ports, store_password, plain), encoding="utf-8")
    logs = directory / "logs"
    logs.mkdir()
    java = ["java", f"-Dkafka.logs.dir={logs}", f"-Dlog4j2.configurationFile={LOG4J}"]
    cluster_id = _cluster_id()
    _run(
        *java, "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format", "--config", str(config),
        "--cluster-id", cluster_id, "--standalone",
        "--add-scram", f"SCRAM-SHA-512=[name={scram[0]},password={scram[1]}]",
        cwd=directory,
    )  # fmt: skip
    with (logs / "console.log").open("wb") as console:
        process = subprocess.Popen(
            [*java, "-Xms128m", "-Xmx384m", "-XX:+UseSerialGC", "-cp", f"{libs}/*",
             "kafka.Kafka", str(config)],
            stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(_port_open(ports[n]) for n in ("SECURE", "MTLS")):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (logs / "server.log").read_text(errors="replace")[-2000:]
                raise BrokerUnavailableError(f"the secured broker did not start:\n{tail}")
            time.sleep(0.5)
        yield SecureBroker(
            sasl_ssl=f"127.0.0.1:{ports['SECURE']}",
            mtls=f"127.0.0.1:{ports['MTLS']}",
            ca_file=directory / "ca.pem",
            other_ca_file=directory / "other-ca.pem",
            client_cert=directory / "client.pem",
            client_key=directory / "client.enc.key",
            client_key_password=key_password,
            scram_user=scram[0],
            scram_password=scram[1],
            plain_user=plain[0],
            plain_password=plain[1],
            log=logs / "server.log",
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def broker_for_tests(directory: Path) -> Iterator[SecureBroker]:
    """A test fixture's body: a secured broker in ``directory`` for as long as the fixture
    lives. Without its tools it skips, or fails when ``DYNASYNC_KAFKA_REQUIRED=1`` (CI); a
    broker that does not come up fails."""
    import pytest

    missing = missing_tools()
    if missing:
        reason = f"a secured broker needs {', '.join(missing)} on PATH"
        if os.environ.get("DYNASYNC_KAFKA_REQUIRED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        with secure_broker(directory) as running:
            yield running
    except BrokerUnavailableError as exc:
        pytest.fail(str(exc))
