"""The Graph webhook receiver (aiohttp).

- Every request: at most ``rate_per_s`` (burst ``rate_burst``) per remote address, else 429 with
  Retry-After; the raw request path must be exactly one of the routes (no normalisation, no
  percent-encoding, no dot segments, no absolute-form targets), else 404.
- ``?validationToken=`` (GET or POST): 200 text/plain (nosniff) echoing exactly the token.
- ``POST /notifications``: Content-Type ``application/json`` (415), size cap (413), strict
  payload validation (400), clientState checked by its HMAC in constant time against the
  subscription registry (403), every notification published to the notifications topic keyed by
  mailbox and acknowledged by the broker, then 202 — or 503 if the broker did not acknowledge in
  time, so Graph delivers again. Nothing is published unless the whole request is valid.
- ``POST /lifecycle``: the same for lifecycle notifications.
- ``GET /metrics``: Prometheus text: accepted notifications, validations and rejected requests
  by reason (``dynasync_webhook_*``); ``GET /healthz`` (200 while it serves) and ``GET /readyz``
  (200 while its ``ready`` check holds, else 503).

Rejections are counted by reason and logged at a bounded rate (``RejectionLog``), never with a
secret or the raw input.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from connectors.graph.notifications import (
    ChangeNotification,
    LifecycleNotification,
    NotificationRecord,
    PayloadError,
    json_content_type_error,
    parse_change_notifications,
    parse_lifecycle_notifications,
    valid_validation_token,
)
from connectors.graph.subscriptions import SubscriptionRecord
from connectors.store import Publisher

log = logging.getLogger(__name__)

Clock = Callable[[], float]
METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
#: Paths the receiver serves besides its notification routes.
RESERVED_PATHS = frozenset({METRICS_PATH, HEALTH_PATH, READY_PATH})
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
_ROUTE = re.compile(r"^(/[A-Za-z0-9_-]{1,64}){1,8}$")
NOSNIFF = {"X-Content-Type-Options": "nosniff"}


class SubscriptionLookup(Protocol):
    """Finds our subscription record by Graph subscription id and checks clientStates."""

    def lookup(self, subscription_id: str) -> SubscriptionRecord | None:
        """The record, or None if the subscription is not ours."""
        ...

    def client_state_matches(self, record: SubscriptionRecord, client_state: str | None) -> bool:
        """Whether ``client_state`` is the one ``record`` was created with (constant time)."""
        ...


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    """Where the receiver publishes and how strict it is."""

    topic: str
    max_body_bytes: int = 1_000_000
    publish_timeout_s: float = 2.5
    notifications_path: str = "/notifications"
    lifecycle_path: str = "/lifecycle"
    rate_per_s: float = 200.0
    rate_burst: int = 1000
    max_sources: int = 10_000
    log_interval_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.topic or len(self.topic) > 249:
            raise ValueError("topic must be a Kafka topic name (1-249 chars)")
        if not 1024 <= self.max_body_bytes <= 50_000_000:
            raise ValueError("max_body_bytes must be within 1024..50,000,000")
        if not 0 < self.publish_timeout_s < 3:
            raise ValueError("publish_timeout_s must be > 0 and < 3 (Graph waits 3 s)")
        for path in (self.notifications_path, self.lifecycle_path):
            if not _ROUTE.fullmatch(path) or path in RESERVED_PATHS:
                raise ValueError(
                    f"bad receiver path {path!r} (/segment[/segment...] of [A-Za-z0-9_-])"
                )
        if self.notifications_path == self.lifecycle_path:
            raise ValueError("notifications and lifecycle paths must differ")
        if not 0.1 <= self.rate_per_s <= 1_000_000:
            raise ValueError("rate_per_s must be within 0.1..1,000,000 requests per second")
        if not 1 <= self.rate_burst <= 10_000_000:
            raise ValueError("rate_burst must be within 1..10,000,000 requests")
        if not 1 <= self.max_sources <= 1_000_000:
            raise ValueError("max_sources must be within 1..1,000,000")
        if not 1 <= self.log_interval_s <= 3600:
            raise ValueError("log_interval_s must be within 1..3600 seconds")

    @property
    def routes(self) -> frozenset[str]:
        """The only request paths the receiver answers."""
        return frozenset({self.notifications_path, self.lifecycle_path, *RESERVED_PATHS})


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
REGISTRY_KEY = web.AppKey("metrics_registry", CollectorRegistry)


class _StatsCollector(Collector):
    def __init__(self, stats: ReceiverStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        accepted = CounterMetricFamily(
            "dynasync_webhook_notifications", "Notifications accepted and published"
        )
        accepted.add_metric([], stats.accepted)
        validations = CounterMetricFamily(
            "dynasync_webhook_validations", "Subscription validation requests answered"
        )
        validations.add_metric([], stats.validations)
        rejected = CounterMetricFamily(
            "dynasync_webhook_rejected", "Webhook requests rejected, by reason", labels=["reason"]
        )
        for reason, n in sorted(stats.rejected.items()):
            rejected.add_metric([reason], n)
        yield from (accepted, validations, rejected)


def receiver_collector(stats: ReceiverStats) -> Collector:
    """A Prometheus collector of ``stats`` (register it in any registry)."""
    return _StatsCollector(stats)


class SourceLimiter:
    """A token bucket per source (remote address): ``rate_per_s`` refill, ``burst`` capacity.

    At most ``max_sources`` buckets are kept; the least recently seen one is evicted first (it
    has had the longest time to refill, so forgetting it costs the least). Behind a reverse
    proxy every request has the proxy's address: limit there, or raise the rate.
    """

    def __init__(self, rate_per_s: float, burst: int, max_sources: int, clock: Clock) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._max = max_sources
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def acquire(self, source: str) -> float:
        """Take one token: 0.0 if allowed, else the seconds until a token is available."""
        now = self._clock()
        old = self._buckets.pop(source, None)
        if old is None:
            tokens = self._burst
        else:
            tokens, stamp = old
            tokens = min(self._burst, tokens + max(0.0, now - stamp) * self._rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self._rate
        self._buckets[source] = (tokens, now)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


class RejectionLog:
    """Logs rejected webhook requests at a bounded rate.

    Per window of ``interval_s``: the first rejection of each reason is logged with its message,
    later ones are only counted; the next rejection after the window (or ``flush``) logs one
    summary line, e.g. ``rejected 1,234 webhook requests (client_state: 1,200, malformed: 34)
    in the last 60 s``. So a flood costs at most one line per reason plus one per window.
    """

    def __init__(
        self, logger: logging.Logger, *, interval_s: float = 60.0, clock: Clock = time.monotonic
    ) -> None:
        self._log = logger
        self._interval = interval_s
        self._clock = clock
        self._start: float | None = None
        self._counts: Counter[str] = Counter()
        self._detailed: set[str] = set()

    def record(
        self,
        reason: str,
        message: str,
        level: int = logging.WARNING,
        exc_info: BaseException | None = None,
    ) -> None:
        """Count one rejection; log it if it is the first of its reason in this window."""
        now = self._clock()
        if self._start is None:
            self._start = now
        elif now - self._start >= self._interval:
            self._flush(now)
            self._start = now
        self._counts[reason] += 1
        if reason not in self._detailed:
            self._detailed.add(reason)
            self._log.log(level, "webhook rejected (%s): %s", reason, message, exc_info=exc_info)

    def flush(self) -> None:
        """Log the summary of what was not logged yet (on shutdown)."""
        self._flush(self._clock())
        self._start = None

    def _flush(self, now: float) -> None:
        total = sum(self._counts.values())
        if total > len(self._detailed):  # something was suppressed
            parts = ", ".join(f"{r}: {n:,}" for r, n in self._counts.most_common())
            elapsed = max(0.0, now - (self._start or now))
            self._log.warning(
                "rejected %s webhook requests (%s) in the last %.0f s", f"{total:,}", parts, elapsed
            )
        self._counts.clear()
        self._detailed.clear()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class HttpErrorLog:
    """The logger handed to aiohttp's request handler for a receiver: a malformed HTTP request
    (bad request line, duplicate or invalid headers) and a handler crash are counted
    (``bad_http``, ``server_error``) and go through the ``RejectionLog``, instead of one
    traceback per request."""

    def __init__(self, rejections: RejectionLog, stats: ReceiverStats) -> None:
        self._rejections = rejections
        self._stats = stats

    def exception(self, msg: str, *args: object, exc_info: object = None, **kw: object) -> None:
        """What aiohttp calls on an error; the message's arguments (the peer) are dropped."""
        exc = exc_info if isinstance(exc_info, BaseException) else None
        if isinstance(exc, HttpProcessingError):
            reason, text = "bad_http", f"malformed HTTP request ({type(exc).__name__})"
            self._stats.rejected[reason] += 1
            self._rejections.record(reason, text)
        else:
            self._stats.rejected["server_error"] += 1
            self._rejections.record("server_error", msg, logging.ERROR, exc)

    def debug(self, msg: str, *args: object, **kw: object) -> None:
        """aiohttp's debug messages (non-HTTP traffic): dropped unless DEBUG is on."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug(msg, *args)


HTTP_ERROR_LOG_KEY = web.AppKey("http_error_log", HttpErrorLog)


class _Rejected(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Receiver:
    def __init__(
        self,
        config: ReceiverConfig,
        registry: SubscriptionLookup,
        publisher: Publisher,
        stats: ReceiverStats,
        clock: Clock,
    ) -> None:
        self.config = config
        self.registry = registry
        self.publisher = publisher
        self.stats = stats
        self.limiter = SourceLimiter(
            config.rate_per_s, config.rate_burst, config.max_sources, clock
        )
        self.rejections = RejectionLog(log, interval_s=config.log_interval_s, clock=clock)
        self._routes = config.routes
        self.ready: Callable[[], bool] = lambda: True

    def _reject(
        self,
        status: int,
        reason: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        level: int = logging.WARNING,
    ) -> web.Response:
        self.stats.rejected[reason] += 1
        self.rejections.record(reason, message, level)
        return web.json_response(
            {"error": {"code": reason, "message": message}},
            status=status,
            headers={**NOSNIFF, **(headers or {})},
        )

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Rate limit per source, then exact raw-path match, before any route runs."""
        wait = self.limiter.acquire(request.remote or "unknown")
        if wait > 0:
            retry = str(max(1, math.ceil(wait)))
            return self._reject(429, "rate_limited", "too many requests", {"Retry-After": retry})
        path = request.raw_path.partition("?")[0]
        if path not in self._routes or request.path != path:
            return self._reject(404, "bad_path", "no such path")
        try:
            response = await handler(request)
        except web.HTTPMethodNotAllowed as exc:
            return self._reject(
                405, "method_not_allowed", "method not allowed", {"Allow": exc.headers["Allow"]}
            )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    def _validation(self, request: web.Request) -> web.Response | None:
        tokens = request.query.getall("validationToken", [])
        if not tokens:
            return None
        if len(tokens) != 1 or not valid_validation_token(tokens[0]):
            return self._reject(400, "bad_validation_token", "invalid validationToken")
        self.stats.validations += 1
        return web.Response(status=200, text=tokens[0], content_type="text/plain", headers=NOSNIFF)

    async def _body(self, request: web.Request) -> bytes:
        problem = json_content_type_error(request.headers.getall("Content-Type", []))
        if problem is not None:
            raise _Rejected(415, "unsupported_media_type", problem)
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
        return b"".join(chunks)

    def _check(self, subscription_id: str, client_state: str | None) -> SubscriptionRecord:
        rec = self.registry.lookup(subscription_id)
        if rec is None:
            raise _Rejected(403, "unknown_subscription", "subscription is not known")
        if not self.registry.client_state_matches(rec, client_state):
            raise _Rejected(403, "client_state", "clientState does not match")
        return rec

    async def _publish(self, records: Sequence[NotificationRecord]) -> web.Response:
        sends = [self.publisher.send(self.config.topic, r.mailbox_id, r.to_json()) for r in records]
        try:
            await asyncio.wait_for(asyncio.gather(*sends), self.config.publish_timeout_s)
        except Exception as exc:  # broker slow or down: let Graph deliver again
            self.stats.rejected["publish_failed"] += 1
            self.rejections.record(
                "publish_failed",
                f"publishing {len(records)} notifications failed: {type(exc).__name__}",
                logging.ERROR,
            )
            return web.json_response(
                {"error": {"code": "unavailable", "message": "try again"}},
                status=503,
                headers=NOSNIFF,
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
        body = generate_latest(request.app[REGISTRY_KEY])
        return web.Response(body=body, headers={"Content-Type": PROMETHEUS_TEXT, **NOSNIFF})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"}, headers=NOSNIFF)

    async def readyz(self, request: web.Request) -> web.Response:
        if self.ready():
            return web.json_response({"status": "ready"}, headers=NOSNIFF)
        return web.json_response({"status": "not ready"}, status=503, headers=NOSNIFF)


def create_receiver_app(
    config: ReceiverConfig,
    registry: SubscriptionLookup,
    publisher: Publisher,
    *,
    clock: Clock = time.monotonic,
    ready: Callable[[], bool] | None = None,
) -> web.Application:
    """Build the webhook app; its counters are ``app[STATS_KEY]`` (Prometheus: a registry of
    its own, ``app[REGISTRY_KEY]``); ``clock`` drives the rate limit and the rejection log;
    ``ready`` is what ``/readyz`` asks (default: ready while serving). Serve it with
    ``ReceiverServer`` (or pass ``server_kwargs(app)`` to another runner) so malformed HTTP is
    logged bounded too."""
    stats = ReceiverStats()
    receiver = _Receiver(config, registry, publisher, stats, clock)
    receiver.ready = ready or (lambda: True)
    metrics = CollectorRegistry()
    metrics.register(receiver_collector(stats))
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[receiver.guard])
    app[STATS_KEY] = stats
    app[REGISTRY_KEY] = metrics
    app[HTTP_ERROR_LOG_KEY] = HttpErrorLog(receiver.rejections, stats)
    app.router.add_post(config.notifications_path, receiver.notifications)
    app.router.add_get(config.notifications_path, receiver.notifications)
    app.router.add_post(config.lifecycle_path, receiver.lifecycle)
    app.router.add_get(config.lifecycle_path, receiver.lifecycle)
    app.router.add_get(METRICS_PATH, receiver.metrics)
    app.router.add_get(HEALTH_PATH, receiver.healthz)
    app.router.add_get(READY_PATH, receiver.readyz)

    async def flush(_app: web.Application) -> None:
        receiver.rejections.flush()

    app.on_cleanup.append(flush)
    return app


def server_kwargs(app: web.Application) -> dict[str, Any]:
    """Runner arguments for ``app``: no access log (one line per request is what a flood
    wants) and its ``HttpErrorLog`` as aiohttp's logger, if it has one."""
    kwargs: dict[str, Any] = {"access_log": None}
    if HTTP_ERROR_LOG_KEY in app:
        kwargs["logger"] = app[HTTP_ERROR_LOG_KEY]
    return kwargs


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
        self._runner = web.AppRunner(self.app, **server_kwargs(self.app))
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
