"""The aiokafka clients the ``dynasync`` commands build themselves, one small function per
kind, each through :class:`connectors.kafka_clients.KafkaClients`: the bootstrap servers and
the security settings (TLS, SASL) of one :class:`KafkaConnection` (``DYNASYNC_KAFKA__*``).
aiokafka is imported when a client is made, not when a command module loads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient

    from connectors.kafka_clients import KafkaConnection


def admin_client(kafka: KafkaConnection, **options: Any) -> AIOKafkaAdminClient:
    """An admin client (not started)."""
    from connectors.kafka_clients import KafkaClients

    return KafkaClients(kafka).admin(**options)


def consumer(kafka: KafkaConnection, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer of ``topics`` (not started)."""
    from connectors.kafka_clients import KafkaClients

    return KafkaClients(kafka).consumer(*topics, **options)


def producer(kafka: KafkaConnection, **options: Any) -> AIOKafkaProducer:
    """A producer (not started)."""
    from connectors.kafka_clients import KafkaClients

    return KafkaClients(kafka).producer(**options)
