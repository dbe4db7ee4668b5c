"""Shared fixtures: where the real broker is."""

from __future__ import annotations

import os
import socket

import pytest

# Every worker a test starts, in-process or as a child, serves its status page and metrics on
# a free port unless the test names one (many run at once; 6066 is the default of `make up`).
os.environ.setdefault("DYNASYNC_WEB__PORT", "0")


def _bootstrap() -> str:
    return os.environ.get("DYNASYNC_KAFKA_BOOTSTRAP", "127.0.0.1:9092")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """Bootstrap servers of the real broker `make test` started; fails loudly if it is down."""
    bootstrap = _bootstrap()
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        pytest.fail(f"Kafka is not reachable at {bootstrap} ({exc}); run `make kafka-up` first")
    return bootstrap
