"""The Graph webhook receiver (aiohttp).

- ``?validationToken=`` (GET or POST): 200 text/plain echoing exactly the token.
- ``POST /notifications``: size cap (413), strict payload validation (400), clientState checked
  in constant time against the subscription registry (403), every notification published to the
  notifications topic keyed by mailbox and acknowledged by the broker, then 202 — or 503 if the
  broker did not acknowledge in time, so Graph delivers again. Nothing is published unless the
  whole request is valid.
- ``POST /lifecycle``: the same for lifecycle notifications.
- ``GET /metrics``: counters of accepted notifications and of rejections by reason.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from aiohttp import web

from connectors.graph.notifications import (
    ChangeNotification,
    LifecycleNotification,
    NotificationRecord,
    PayloadError,
    parse_change_notifications,
    parse_lifecycle_notifications,
    valid_validation_token,
)
from connectors.graph.subscriptions import SubscriptionRecord
from connectors.store import Publisher

log = logging.getLogger(__name__)


class SubscriptionLookup(Protocol):
    """Finds our subscription record by Graph subscription id."""

    def lookup(self, subscription_id: str) -> SubscriptionRecord | None:
        """The record, or None if the subscription is not ours."""
        ...


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    """Where the receiver publishes and how strict it is."""

    topic: str
    max_body_bytes: int = 1_000_000
    publish_timeout_s: float = 2.5
    notifications_path: str = "/notifications"
    lifecycle_path: str = "/lifecycle"

    def __post_init__(self) -> None:
        if not self.topic or len(self.topic) > 249:
            raise ValueError("topic must be a Kafka topic name (1-249 chars)")
        if not 1024 <= self.max_body_bytes <= 50_000_000:
            raise ValueError("max_body_bytes must be within 1024..50,000,000")
        if not 0 < self.publish_timeout_s < 3:
            raise ValueError("publish_timeout_s must be > 0 and < 3 (Graph waits 3 s)")
        for path in (self.notifications_path, self.lifecycle_path):
            if not path.startswith("/") or path == "/metrics":
                raise ValueError(f"bad receiver path {path!r}")
        if self.notifications_path == self.lifecycle_path:
            raise ValueError("notifications and lifecycle paths must differ")


class ReceiverStats:
    """Counters: ``accepted`` notifications and ``rejected`` requests by reason."""

    def __init__(self) -> None:
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.validations = 0

    def as_dict(self) -> dict[str, object]:
        """A JSON-able snapshot."""
        return {
            "accepted": self.accepted,
            "validations": self.validations,
            "rejected": dict(self.rejected),
        }


STATS_KEY = web.AppKey("stats", ReceiverStats)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Rejected(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class _Receiver:
    def __init__(
        self,
        config: ReceiverConfig,
        registry: SubscriptionLookup,
        publisher: Publisher,
        stats: ReceiverStats,
    ) -> None:
        self.config = config
        self.registry = registry
        self.publisher = publisher
        self.stats = stats

    def _reject(self, status: int, reason: str, message: str) -> web.Response:
        self.stats.rejected[reason] += 1
        log.warning("webhook rejected (%s): %s", reason, message)
        return web.json_response({"error": {"code": reason, "message": message}}, status=status)

    def _validation(self, request: web.Request) -> web.Response | None:
        tokens = request.query.getall("validationToken", [])
        if not tokens:
            return None
        if len(tokens) != 1 or not valid_validation_token(tokens[0]):
            return self._reject(400, "bad_validation_token", "invalid validationToken")
        self.stats.validations += 1
        return web.Response(status=200, text=tokens[0], content_type="text/plain")

    async def _body(self, request: web.Request) -> bytes:
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise _Rejected(413, "too_large", f"body exceeds {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.read(65536):
            size += len(chunk)
            if size > limit:
                raise _Rejected(413, "too_large", f"body exceeds {limit} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        ctype = request.content_type
        if ctype not in ("application/json", "application/octet-stream", "text/plain"):
            raise _Rejected(400, "malformed", f"unsupported content type {ctype[:60]!r}")
        return body

    def _check(self, subscription_id: str, client_state: str | None) -> SubscriptionRecord:
        rec = self.registry.lookup(subscription_id)
        if rec is None:
            raise _Rejected(403, "unknown_subscription", "subscription is not known")
        given = (client_state or "").encode("utf-8")
        if not hmac.compare_digest(given, rec.client_state.encode("utf-8")):
            raise _Rejected(403, "client_state", "clientState does not match")
        return rec

    async def _publish(self, records: Sequence[NotificationRecord]) -> web.Response:
        sends = [self.publisher.send(self.config.topic, r.mailbox_id, r.to_json()) for r in records]
        try:
            await asyncio.wait_for(asyncio.gather(*sends), self.config.publish_timeout_s)
        except Exception as exc:  # broker slow or down: let Graph deliver again
            self.stats.rejected["publish_failed"] += 1
            log.error("publishing %d notifications failed: %s", len(records), type(exc).__name__)
            return web.json_response(
                {"error": {"code": "unavailable", "message": "try again"}}, status=503
            )
        self.stats.accepted += len(records)
        return web.Response(status=202)

    async def notifications(self, request: web.Request) -> web.StreamResponse:
        answer = self._validation(request)
        if answer is not None:
            return answer
        try:
            items = parse_change_notifications(await self._body(request))
            records = [self._change_record(n) for n in items]
        except _Rejected as rej:
            return self._reject(rej.status, rej.reason, str(rej))
        except PayloadError as exc:
            return self._reject(400, "malformed", str(exc))
        return await self._publish(records)

    async def lifecycle(self, request: web.Request) -> web.StreamResponse:
        answer = self._validation(request)
        if answer is not None:
            return answer
        try:
            items = parse_lifecycle_notifications(await self._body(request))
            records = [self._lifecycle_record(n) for n in items]
        except _Rejected as rej:
            return self._reject(rej.status, rej.reason, str(rej))
        except PayloadError as exc:
            return self._reject(400, "malformed", str(exc))
        return await self._publish(records)

    def _change_record(self, n: ChangeNotification) -> NotificationRecord:
        rec = self._check(n.subscription_id, n.client_state)
        return NotificationRecord(
            mailbox_id=rec.mailbox_id,
            resource_kind=rec.resource,
            subscription_id=n.subscription_id,
            received_at=_now(),
            change_type=n.change_type,
            item_id=n.item_id,
        )

    def _lifecycle_record(self, n: LifecycleNotification) -> NotificationRecord:
        rec = self._check(n.subscription_id, n.client_state)
        return NotificationRecord(
            mailbox_id=rec.mailbox_id,
            resource_kind=rec.resource,
            subscription_id=n.subscription_id,
            received_at=_now(),
            lifecycle_event=n.lifecycle_event,
        )

    async def metrics(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.as_dict())


def create_receiver_app(
    config: ReceiverConfig, registry: SubscriptionLookup, publisher: Publisher
) -> web.Application:
    """Build the webhook app; its counters are ``app[STATS_KEY]``."""
    stats = ReceiverStats()
    receiver = _Receiver(config, registry, publisher, stats)
    app = web.Application(client_max_size=config.max_body_bytes)
    app[STATS_KEY] = stats
    app.router.add_post(config.notifications_path, receiver.notifications)
    app.router.add_get(config.notifications_path, receiver.notifications)
    app.router.add_post(config.lifecycle_path, receiver.lifecycle)
    app.router.add_get(config.lifecycle_path, receiver.lifecycle)
    app.router.add_get("/metrics", receiver.metrics)
    return app


class ReceiverServer:
    """Runs a receiver app on host:port (port 0: an ephemeral one, see ``port``)."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.port = port

    async def start(self) -> None:
        """Start listening."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://{self._host}:{self.port}"
