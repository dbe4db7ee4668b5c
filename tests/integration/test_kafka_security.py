"""Clients built by KafkaClients, and a worker app built from KafkaSettings, work against a
broker that takes only SASL_SSL (SCRAM-SHA-512, PLAIN, OAUTHBEARER) or mutual TLS; a wrong
password, an untrusted CA or a missing client certificate is one line saying so.

The broker is this module's own (tests/secure_kafka.py): one KRaft node on free ports, its
certificates made with openssl and its SCRAM user with Kafka's storage tool, at test time.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaConnectionError
from pydantic import SecretStr

from connectors.kafka_clients import KafkaAccessError, KafkaClients, KafkaConnection
from pipeline.app import build_app
from pipeline.settings import KafkaSettings, Settings
from pipeline.stages.echo import echo_stage
from tests.secure_kafka import (
    SecureBroker,
    broker_for_tests,
)
from tests.token_endpoint import token_endpoint

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

SCOPE = "https://dynasync-test.servicebus.windows.net/.default"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    yield from broker_for_tests(tmp_path_factory.mktemp("secure-kafka"))


def _scram(broker: SecureBroker, **extra: Any) -> dict[str, Any]:
    return {
        "bootstrap": broker.sasl_ssl,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": broker.scram_user,
        "sasl_password": broker.scram_password,
        "ssl_ca_file": broker.ca_file,
        **extra,
    }


async def _topics(clients: KafkaClients, *names: str) -> None:
    admin = clients.admin(request_timeout_ms=20_000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, 1, 1) for n in names])
    finally:
        await admin.close()


async def _round_trip(clients: KafkaClients, topic: str, values: list[bytes]) -> list[bytes]:
    """Produce ``values`` to ``topic`` and read them back, both through ``clients``."""
    producer = clients.producer(acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()
    return await _read(clients, topic, len(values))


async def _read(clients: KafkaClients, topic: str, count: int) -> list[bytes]:
    consumer = clients.consumer(topic, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            while len(seen) < count:
                batch = await consumer.getmany(timeout_ms=500)
                seen += [r.value for records in batch.values() for r in records]
    finally:
        await consumer.stop()
    return seen


async def test_scram_clients_and_a_worker_app_over_sasl_ssl(
    broker: SecureBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    kafka = KafkaSettings.model_validate({**_scram(broker), "partitions": 1})
    clients = KafkaClients(kafka)
    await clients.check()
    run = uuid.uuid4().hex[:8]
    source, sink = f"sec-src-{run}", f"sec-sink-{run}"
    await _topics(clients, source, sink)
    assert await _round_trip(clients, source, [b"one", b"two"]) == [b"one", b"two"]
    # the worker app's stream processor (consumer group, commits, its producer) on the same
    # settings, as `dynasync run` builds it
    settings = Settings(app_id=f"sec-{run}", kafka=kafka)
    async with build_app(settings, [echo_stage(source, sink)]) as app:
        producer = clients.producer(acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(source, b"three", key=b"k")
        finally:
            await producer.stop()
        assert await _read(clients, sink, 3) == [b"one", b"two", b"three"]
        assert not app.crashed
    assert f"as {broker.scram_user} via SCRAM-SHA-512" in caplog.text  # aiokafka's own line
    assert broker.scram_password not in caplog.text


async def test_plain_over_sasl_ssl(broker: SecureBroker) -> None:
    connection = KafkaConnection.model_validate(
        _scram(
            broker,
            sasl_mechanism="PLAIN",
            sasl_username=broker.plain_user,
            sasl_password=broker.plain_password,
        )
    )
    clients = KafkaClients(connection)
    topic = f"sec-plain-{uuid.uuid4().hex[:8]}"
    await _topics(clients, topic)
    assert await _round_trip(clients, topic, [b"plain"]) == [b"plain"]


async def test_oauthbearer_with_a_managed_identity_token(
    broker: SecureBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = KafkaConnection(
        bootstrap=broker.sasl_ssl,
        security_protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        oauth_scope=SCOPE,
        oauth_credential="managed_identity",
        ssl_ca_file=broker.ca_file,
    )
    async with token_endpoint("dynasync-worker") as endpoint:
        monkeypatch.setenv("IDENTITY_ENDPOINT", endpoint.url)
        monkeypatch.setenv("IDENTITY_HEADER", endpoint.secret)
        clients = KafkaClients(connection)
        topic = f"sec-oauth-{uuid.uuid4().hex[:8]}"
        await _topics(clients, topic)
        assert await _round_trip(clients, topic, [b"bearer"]) == [b"bearer"]
    # one client's provider fetched once and reused its token for every connection
    assert set(endpoint.resources) == {"https://dynasync-test.servicebus.windows.net"}


async def test_mutual_tls_with_an_encrypted_client_key(broker: SecureBroker) -> None:
    connection = KafkaConnection(
        bootstrap=broker.mtls,
        security_protocol="SSL",
        ssl_ca_file=broker.ca_file,
        ssl_cert_file=broker.client_cert,
        ssl_key_file=broker.client_key,
        ssl_key_password=SecretStr(broker.client_key_password),
    )
    clients = KafkaClients(connection)
    topic = f"sec-mtls-{uuid.uuid4().hex[:8]}"
    await _topics(clients, topic)
    assert await _round_trip(clients, topic, [b"mtls"]) == [b"mtls"]
    without_cert = KafkaClients(
        KafkaConnection(bootstrap=broker.mtls, security_protocol="SSL", ssl_ca_file=broker.ca_file)
    )
    with pytest.raises(KafkaAccessError) as caught:
        await without_cert.check(timeout_s=10)
    assert caught.value.problem == "unreachable"
    assert str(caught.value).startswith(
        f"{broker.mtls} closed the connection (is security_protocol SSL what that listener"
        " speaks, or does it want a client certificate (ssl_cert_file)?)"
    )


async def test_a_wrong_password_is_one_line(
    broker: SecureBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clients = KafkaClients(KafkaConnection.model_validate(_scram(broker, sasl_password="wrong-pw")))
    with pytest.raises(KafkaAccessError) as caught:
        await clients.check(timeout_s=10)
    line = str(caught.value)
    assert caught.value.problem == "auth"
    assert line.startswith(
        f"SASL SCRAM-SHA-512 authentication as {broker.scram_user!r} at {broker.sasl_ssl} failed"
    )
    assert "\n" not in line and "wrong-pw" not in line
    producer = clients.producer()
    with pytest.raises(KafkaConnectionError):  # a client on its own says only "Unable to bootstrap"
        await producer.start()
    await producer.stop()
    assert "wrong-pw" not in caplog.text


async def test_an_untrusted_ca_is_one_line(broker: SecureBroker) -> None:
    untrusted = _scram(broker, ssl_ca_file=broker.other_ca_file)
    clients = KafkaClients(KafkaConnection.model_validate(untrusted))
    with pytest.raises(KafkaAccessError) as caught:
        await clients.check(timeout_s=10)
    line = str(caught.value)
    assert caught.value.problem == "tls"
    assert line.startswith(
        f"TLS: the certificate of {broker.sasl_ssl} is not trusted by {broker.other_ca_file} ("
    )
    assert "\n" not in line


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
async def test_the_wrong_protocol_for_the_listener_is_one_line(
    broker: SecureBroker, protocol: str
) -> None:
    tls = {"ssl_ca_file": broker.ca_file} if protocol == "SSL" else {}
    connection = KafkaConnection.model_validate(
        {"bootstrap": broker.sasl_ssl, "security_protocol": protocol, **tls}
    )
    with pytest.raises(KafkaAccessError) as caught:
        await KafkaClients(connection).check(timeout_s=5)
    assert caught.value.problem == "unreachable"
    assert str(caught.value).startswith(
        f"{broker.sasl_ssl} closed the connection (is security_protocol {protocol} what that"
        " listener speaks"
    )
    assert "\n" not in str(caught.value)


async def test_a_mechanism_the_listener_does_not_offer_is_one_line(broker: SecureBroker) -> None:
    connection = KafkaConnection.model_validate(_scram(broker, sasl_mechanism="SCRAM-SHA-256"))
    with pytest.raises(KafkaAccessError) as caught:
        await KafkaClients(connection).check(timeout_s=10)
    assert caught.value.problem == "auth"
    assert str(caught.value) == (
        f"SASL: {broker.sasl_ssl} does not accept sasl_mechanism SCRAM-SHA-256"
    )
