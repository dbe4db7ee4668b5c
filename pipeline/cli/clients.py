"""The aiokafka clients the ``dynasync`` commands build themselves, one small function per
kind, so that how they connect (bootstrap, later TLS and SASL) is decided in one place.
aiokafka is imported when a client is made, not when a command module loads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient


def admin_client(bootstrap: str, **options: Any) -> AIOKafkaAdminClient:
    """An admin client (not started)."""
    from aiokafka.admin import AIOKafkaAdminClient

    return AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)


def consumer(bootstrap: str, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer of ``topics`` (not started)."""
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, **options)


def producer(bootstrap: str, **options: Any) -> AIOKafkaProducer:
    """A producer (not started)."""
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(bootstrap_servers=bootstrap, **options)
