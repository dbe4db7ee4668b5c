"""The receiver's /metrics (Prometheus text), /healthz and /readyz."""

from __future__ import annotations

import httpx
import pytest

from connectors.graph.receiver import (
    ReceiverConfig,
    ReceiverServer,
    create_receiver_app,
)
from connectors.graph.subscriptions import ClientStateKey, SubscriptionRegistry
from connectors.store import MemoryCursorStore, MemoryPublisher
from tests.metrics_text import samples

KEY = ClientStateKey.derive("receiver probe tests: a key of 32+ characters")


async def _serve(ready: bool | None) -> ReceiverServer:
    app = create_receiver_app(
        ReceiverConfig(topic="t"),
        SubscriptionRegistry(MemoryCursorStore(), KEY),
        MemoryPublisher(),
        ready=None if ready is None else (lambda: ready),
    )
    server = ReceiverServer(app)
    await server.start()
    return server


async def test_metrics_are_prometheus_text_counting_rejections() -> None:
    server = await _serve(None)
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            bad = await http.post(
                "/notifications", content=b"{not json", headers={"content-type": "application/json"}
            )
            assert bad.status_code == 400
            resp = await http.get("/metrics")
    finally:
        await server.stop()
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    got = samples(resp.text)
    assert got['dynasync_webhook_rejected_total{reason="malformed"}'] == 1
    assert got["dynasync_webhook_notifications_total"] == 0


@pytest.mark.parametrize(("ready", "status"), [(None, 200), (True, 200), (False, 503)])
async def test_health_and_readiness(ready: bool | None, status: int) -> None:
    server = await _serve(ready)
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            health = await http.get("/healthz")
            readiness = await http.get("/readyz")
            posted = await http.post("/healthz")
    finally:
        await server.stop()
    assert health.status_code == 200
    assert readiness.status_code == status
    assert posted.status_code == 405


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_a_notification_path_cannot_take_a_probe_path(path: str) -> None:
    with pytest.raises(ValueError, match="bad receiver path"):
        ReceiverConfig(topic="t", notifications_path=path)
