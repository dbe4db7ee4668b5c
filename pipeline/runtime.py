"""One running pipeline in one process: the stages (fan-out, engine, writers with the real
Graph and Dataverse sinks) and the readers that feed them.

- CRM: one change-tracking reader per (organisation, table), publishing to ``crm.raw`` then
  storing the deltaLink in ``cursors``; it polls every ``crm_poll_s`` while rows change and
  backs off to ``crm_poll_max_s`` while the table is idle.
- Outlook: per enabled mailbox, one delta stream per synced mail folder, contacts, a calendar
  window and each To Do list, publishing to ``changes.outlook``. With
  ``settings.graph.notification_url`` the webhook receiver runs here, subscriptions are kept
  alive, notifications drive delta passes, only To Do (no app-only webhooks) is polled, and a
  full pass every ``safety_net_s`` catches a lost notification; otherwise every stream is
  polled. Polls run every ``outlook_poll_s`` while they find changes and back off to
  :meth:`RuntimeOptions.outlook_ceiling` while the mailbox is idle; a notification pass that
  found changes brings the mailbox's polling back to ``outlook_poll_s``. Each mailbox's reader
  runs under a :class:`pipeline.mailbox_runner.MailboxRunner`: passing failures back off; a
  mailbox Graph refuses is marked failing (alert to ``dlq``, ``failing_since``/``last_error``
  on its config record, subscriptions and cached To Do list ids dropped), retried
  ``settings.health`` ``failing_tries`` times ``failing_retry_s`` apart, then disabled in the
  config.

``Pipeline.refresh(snapshot)`` applies a new configuration snapshot: readers of new enabled
mailboxes and organisations start, those of removed or disabled ones stop; the engine reads its
rules from the current snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from connectors.dataverse.client import DataverseClient
from connectors.dataverse.ids import stream_id
from connectors.dataverse.publisher import CrmTableReader
from connectors.dataverse.reader import DataverseChangeSource
from connectors.dataverse.users import enabled_users
from connectors.errors import ConnectorError
from connectors.graph.notifications import RESOURCE_KINDS, NotificationRecord
from connectors.graph.reader import (
    GraphDeltaSource,
    folders_read,
    mailbox_streams,
    message_folders,
)
from connectors.graph.receiver import (
    STATS_KEY,
    ReceiverConfig,
    ReceiverServer,
    create_receiver_app,
    receiver_collector,
)
from connectors.graph.subscriptions import (
    SubscriptionManager,
    SubscriptionRegistry,
    client_state_key,
    subscription_key,
)
from connectors.graph.sync import OutlookReader
from connectors.http import RetryPolicy
from connectors.kafka_clients import KafkaClients
from connectors.pacing import Pacer
from connectors.store import KafkaCursorStore, KafkaPublisher
from pipeline.app import App, build_app
from pipeline.assignment import ReaderAssignment, ReaderFactory
from pipeline.config_store import ConfigSnapshot, ConfigStore
from pipeline.crm_directory import CrmDirectory
from pipeline.mailbox_health import HealthBook, HealthPublisher
from pipeline.mailbox_runner import MailboxRunner, RunnerPolicy, RunnerState, describe
from pipeline.ownership import MailboxOwnership
from pipeline.plan import Alert
from pipeline.rules_source import ConfigDirectory, ConfigRules
from pipeline.settings import Settings
from pipeline.sinks import Connections, UnknownOrganisationError
from pipeline.stages.engine import engine_stage
from pipeline.stages.fanout import fanout_stage
from pipeline.stages.publish import Publisher
from pipeline.stages.writers import writers_stage
from pipeline.topics import (
    CHANGES_OUTLOOK,
    CONFLICTS,
    CRM_RAW,
    CURSORS,
    DLQ,
    GRAPH_NOTIFICATIONS,
    MAILBOX_STATUS,
    topic_name,
)
from pipeline.web.feed import RecentFeed
from pipeline.web.metrics import WorkerMetrics
from pipeline.web.server import StatusWeb, WebServer, create_web_app
from schemas.codec import dumps
from schemas.models import Mailbox, MailboxHealth
from schemas.token import TrackingTokenFormat
from schemas.types import CRM_TABLES, CrmTable, Kind

log = logging.getLogger(__name__)

#: Cursor-store key prefix of the mailboxes an organisation's CRM rows were delivered to.
MEMBERS_KEY = "crm-members:"

#: The Outlook kinds with Graph webhooks (To Do has none for app-only access).
WEBHOOK_KINDS: tuple[Kind, ...] = ("email", "contact", "appointment")


#: How long stopping waits for the stages before it goes on with the rest.
APP_STOP_TIMEOUT_S = 30.0


#: The default idle ceiling of Outlook polling with webhooks: only To Do is polled (one
#: request per list per pass), so an idle mailbox costs about 1 request a minute, plus its
#: safety-net passes.
OUTLOOK_IDLE_WEBHOOKS_S = 60.0
#: ... and without: every stream is polled (two mail folders, contacts, the calendar, To Do:
#: five requests a pass), so an idle mailbox costs about 1.7 requests a minute.
OUTLOOK_IDLE_POLLING_S = 180.0


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """How often the readers poll and what they read."""

    crm_poll_s: float = 1.0
    """A CRM table's poll interval while its rows change."""
    crm_poll_max_s: float = 60.0
    """What it grows to while the table is idle (one request a minute)."""
    outlook_poll_s: float = 1.0
    """A mailbox's poll interval while its polls find changes."""
    outlook_poll_max_s: float | None = None
    """What it grows to while the mailbox is idle; None: ``OUTLOOK_IDLE_WEBHOOKS_S`` with
    webhooks, ``OUTLOOK_IDLE_POLLING_S`` without (never below ``outlook_poll_s``)."""
    safety_net_s: float = 900.0
    new_mailbox_settle_s: float = 0.0
    """How long a mailbox that appears in the configuration while this process runs waits
    before it is read (its first full pass, its organisation's resync): long enough for every
    other worker to have reloaded the configuration, or their stages would take its changes
    for an unknown mailbox's (park them as refused, route its CRM rows to nobody). ``dynasync
    run`` sets it from its reload interval; 0 for a pipeline alone in its deployment."""
    """With webhooks: a pass over every stream of a mailbox at least this often."""
    crm_tables: tuple[CrmTable, ...] = CRM_TABLES
    mail_folders: tuple[str, ...] = ("inbox", "sentitems")
    todo: bool = True
    retry: RetryPolicy | None = None
    restart_delay_s: float = 2.0
    max_restart_delay_s: float = 60.0
    """Cap of an Outlook reader's exponential backoff after passing failures."""
    failure_summary_s: float = 60.0
    """How often a reader that keeps failing logs a summary line."""
    crm_user_check_s: float = 300.0
    """How often the mailboxes' readers check that Dataverse still lets them act as their CRM
    users (also on every full pass): the organisation's enabled users are listed at most this
    often, in one paged query for all its mailboxes, and a user not among them is tried once
    (an impersonated WhoAmI). A disabled or removed user is a permanent failure, the mailbox
    failing and then disabled like one Graph refuses."""
    full_pass_concurrency: int = 16
    """How many mailboxes make a full pass (subscriptions ensured, every stream read) at once.
    A worker that starts with thousands of mailboxes admits them this many at a time, so their
    first passes neither exhaust the HTTP pool nor starve the event loop that heartbeats to
    Kafka and answers webhook validations; incremental passes are not held back."""

    def __post_init__(self) -> None:
        for name in (
            "crm_poll_s",
            "crm_poll_max_s",
            "outlook_poll_s",
            "outlook_poll_max_s",
            "restart_delay_s",
            "max_restart_delay_s",
            "failure_summary_s",
            "crm_user_check_s",
        ):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 3600:
                raise ValueError(f"{name} must be within (0, 3600] seconds, got {value!r}")
        if not 0 <= self.new_mailbox_settle_s <= 3600:
            raise ValueError(
                "new_mailbox_settle_s must be within [0, 3600] seconds, "
                f"got {self.new_mailbox_settle_s!r}"
            )
        if not 0 < self.safety_net_s <= 86_400:
            raise ValueError(
                f"safety_net_s must be within (0, 86400] seconds, got {self.safety_net_s!r}"
            )
        if self.crm_poll_max_s < self.crm_poll_s:
            raise ValueError("crm_poll_max_s must be >= crm_poll_s")
        if self.outlook_poll_max_s is not None and self.outlook_poll_max_s < self.outlook_poll_s:
            raise ValueError("outlook_poll_max_s must be >= outlook_poll_s")
        if self.max_restart_delay_s < self.restart_delay_s:
            raise ValueError("max_restart_delay_s must be >= restart_delay_s")
        if not self.crm_tables:
            raise ValueError("crm_tables must name at least one table")
        if not 1 <= self.full_pass_concurrency <= 1000:
            raise ValueError(
                "full_pass_concurrency must be within [1, 1000], "
                f"got {self.full_pass_concurrency!r}"
            )

    def outlook_ceiling(self, webhooks: bool) -> float:
        """What an idle mailbox's poll interval grows to, with or without webhooks."""
        if self.outlook_poll_max_s is not None:
            return self.outlook_poll_max_s
        default = OUTLOOK_IDLE_WEBHOOKS_S if webhooks else OUTLOOK_IDLE_POLLING_S
        return max(default, self.outlook_poll_s)


# ------------------------------------------------------------------------------------ readers


async def _supervise(name: str, body: Callable[[], Awaitable[None]], delay_s: float) -> None:
    """Run ``body`` until cancelled; an unexpected error is logged and it starts again."""
    while True:
        try:
            await body()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; restarting in %.1fs", name, delay_s)
            await asyncio.sleep(delay_s)


async def _cancel(tasks: Sequence[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Pipeline:
    """The whole pipeline in this process. ``async with Pipeline(settings, snapshot):`` or
    ``start()``/``stop()``. The catalogue topics must exist (``dynasync topics create``)."""

    def __init__(
        self,
        settings: Settings,
        config: ConfigSnapshot,
        options: RuntimeOptions | None = None,
    ) -> None:
        self.settings = settings
        self.options = options or RuntimeOptions()
        self._config = config
        self._kafka = settings.kafka
        self._publisher: KafkaPublisher | None = None
        self._cursors: KafkaCursorStore | None = None
        self._connections: Connections | None = None
        self._app: App | None = None
        self._reader: OutlookReader | None = None
        self._receiver: ReceiverServer | None = None
        self._subscriptions: SubscriptionManager | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._streams: dict[str, list[GraphDeltaSource]] = {}
        self._mailbox_tasks: dict[str, asyncio.Task[None]] = {}
        self._runners: dict[str, MailboxRunner] = {}
        self._failing: set[str] = set()
        self._alerts: Publisher | None = None
        self._alert_producer: AIOKafkaProducer | None = None
        self._service_tasks: list[asyncio.Task[None]] = []
        self._ownership = MailboxOwnership(settings.kafka.partitions)
        self._ownership.listen(self._owned_changed)
        self._mailbox_lock = asyncio.Lock()
        self._crm_readers: ReaderAssignment | None = None
        self._resyncing: set[str] = set()
        self._notification_task: asyncio.Task[None] | None = None
        self._owned_logged: tuple[set[str], int] | None = None
        #: when this process first saw each mailbox (those of the first snapshot: long ago)
        self._seen_at: dict[str, float] = dict.fromkeys(config.mailboxes, -math.inf)
        #: admits this many mailboxes' full passes at a time (see ``full_pass_concurrency``)
        self._full_gate = asyncio.Semaphore(self.options.full_pass_concurrency)
        #: per organisation: when its enabled CRM users were listed, and their ids
        self._crm_users: dict[str, tuple[float, frozenset[str]]] = {}
        self._crm_user_locks: dict[str, asyncio.Lock] = {}
        self.health = HealthBook(settings.app_id)
        """What this worker saw of the mailboxes it reads (published on ``mailbox.status``)."""
        self.metrics = WorkerMetrics()
        """This worker's Prometheus metrics (served on ``settings.web``)."""
        self._web: WebServer | None = None
        self._feed: RecentFeed | None = None
        self._ready = False

    @property
    def config(self) -> ConfigSnapshot:
        """The configuration snapshot in force."""
        return self._config

    @property
    def ready(self) -> bool:
        """Whether everything has started (and not stopped since)."""
        return self._ready

    @property
    def web_url(self) -> str | None:
        """Where the metrics, health endpoints and status page are served (None: off)."""
        return self._web.url if self._web is not None else None

    @property
    def receiver_url(self) -> str | None:
        """Where the webhook receiver listens (None without webhooks)."""
        return self._receiver.url if self._receiver is not None else None

    @property
    def app(self) -> App | None:
        """The running app of the stages (None before start and after stop)."""
        return self._app

    def failure(self) -> str | None:
        """Why the stream processor stopped on its own (None while it runs, or after stop)."""
        app = self._app
        if app is None or not app.crashed:
            return None
        return repr(app.crash_reason) if app.crash_reason is not None else "crashed"

    def mailbox_state(self, mailbox_id: str) -> RunnerState | None:
        """How the mailbox's Outlook reader fares (None: it has none in this process)."""
        runner = self._runners.get(mailbox_id)
        return None if runner is None else runner.state

    def mailbox_runner(self, mailbox_id: str) -> MailboxRunner | None:
        """The mailbox's Outlook reader in this process (its passes, waits, wakes), if any."""
        return self._runners.get(mailbox_id)

    def health_records(self) -> list[MailboxHealth]:
        """The status record of each mailbox this worker reads now."""
        feed, records = self._feed, []
        conflicts: dict[str, int] = {}
        alerts: dict[str, list[str]] = {}
        if feed is not None:  # indexed once, not scanned once per mailbox
            for c in feed.conflicts:
                if c.policy == "manual" and c.winner == "none":
                    conflicts[c.mailbox_id] = conflicts.get(c.mailbox_id, 0) + 1
            for a in feed.alerts:
                alerts.setdefault(a.mailbox_id, []).append(f"{a.at} {a.reason}")
        for mailbox_id, runner in sorted(self._runners.items()):
            mailbox = self._config.mailboxes.get(mailbox_id)
            if mailbox is None:
                continue
            records.append(
                self.health.record(
                    mailbox,
                    runner,
                    open_conflicts=conflicts.get(mailbox_id, 0),
                    alerts=alerts.get(mailbox_id, []),
                )
            )
        return records

    async def _send_health(self, mailbox_id: str, record: MailboxHealth) -> None:
        producer = self._alert_producer
        if producer is not None:
            topic = topic_name(MAILBOX_STATUS, self._kafka)
            await producer.send_and_wait(topic, dumps(record), key=mailbox_id.encode())

    def _settled(self, mailbox_id: str, share: float = 1.0) -> bool:
        """Whether ``mailbox_id`` has been in the configuration long enough to be read (or,
        with ``share``, that part of the settle time)."""
        seen = self._seen_at.setdefault(mailbox_id, time.monotonic())
        return time.monotonic() - seen >= self.options.new_mailbox_settle_s * share

    def _routable(self, mailbox_id: str) -> bool:
        """Whether the fan-out may route rows to ``mailbox_id``: after 3/5 of the settle time
        (1.5 reloads), so the engine of every worker knows it, and before the resync that
        follows at the whole of it (2.5 reloads) from the reader's worker, which saw it at
        most one reload apart from this one."""
        return self._settled(mailbox_id, share=0.6)

    def enabled_mailboxes(self) -> list[Mailbox]:
        """The mailboxes that sync now (enabled, organisation known, not named in a clash)."""
        snap = self._config
        clashing = {p.key for p in snap.clashes()}
        return sorted(
            (
                m
                for m in snap.mailboxes.values()
                if m.status == "enabled"
                and m.org_id in snap.organisations
                and f"mailbox:{m.mailbox_id}" not in clashing
            ),
            key=lambda m: m.mailbox_id,
        )

    async def start(self) -> None:
        """Connect, start the stages, then the readers."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        settings, kafka = self.settings, self._kafka
        if settings.web.enabled:  # first: /healthz answers while the rest starts
            routes = StatusWeb(self, self.metrics, lambda: self._feed, settings.app_id)
            self._web = WebServer(create_web_app(routes), settings.web.host, settings.web.port)
            await self._web.start()
            log.info("status page, /metrics, /healthz and /readyz on %s", self._web.url)
        self._publisher = KafkaPublisher(kafka, client_id=f"{settings.app_id}-readers")
        await self._publisher.start()
        self._cursors = KafkaCursorStore(self._publisher, kafka, topic_name(CURSORS, kafka))
        await self._cursors.start(follow=True)  # other workers' cursors, as mailboxes move
        self._connections = Connections(
            settings.graph,
            settings.dataverse,
            self._config.organisations,
            policy=self.options.retry,
            meter=self.metrics,
        )
        await self._connections.start()
        stages = [
            fanout_stage(ConfigDirectory(lambda: self._config, self._routable)),
            engine_stage(ConfigRules(lambda: self._config), directories=self._directory),
            writers_stage(self._connections, ownership=self._ownership, observe=self.health.wrote),
        ]
        self._app = build_app(settings, stages, meter=self.metrics)
        await self._app.start()
        if settings.web.enabled:
            self._feed = RecentFeed(kafka, topic_name(CONFLICTS, kafka), topic_name(DLQ, kafka))
            await self._feed.start()
        self._alert_producer = KafkaClients(kafka).producer(acks="all")
        await self._alert_producer.start()
        self._alerts = Publisher.over(self._alert_producer, settings)
        self._service_tasks.append(
            asyncio.create_task(HealthPublisher(self.health_records, self._send_health).run())
        )
        self._reader = OutlookReader(
            self._streams_for,
            self._publisher,
            self._cursors,
            changes_topic=topic_name(CHANGES_OUTLOOK, kafka),
            on_changes=self._outlook_active,
            on_lifecycle=self._subscription_lifecycle,
        )
        self._crm_readers = ReaderAssignment(
            kafka,
            topic=topic_name(CURSORS, kafka),
            group_id=f"{settings.app_id}-crm-readers",
            session_timeout_ms=int(kafka.session_timeout_s * 1000),
        )
        await self._crm_readers.start()
        if settings.graph.notification_url is not None:
            await self._start_webhooks(settings.graph.notification_url.rstrip("/"))
        await self.refresh(self._config)
        self._ready = True

    async def _start_webhooks(self, public_url: str) -> None:
        assert self._publisher is not None and self._cursors is not None
        assert self._connections is not None and self._reader is not None
        settings, kafka = self.settings, self._kafka
        notifications = topic_name(GRAPH_NOTIFICATIONS, kafka)
        config = ReceiverConfig(
            topic=notifications,
            max_body_bytes=settings.receiver.max_body_bytes,
            rate_per_s=settings.receiver.rate_per_s,
            rate_burst=settings.receiver.rate_burst,
        )
        graph = settings.graph
        key = client_state_key(
            *(
                None if s is None else s.get_secret_value()
                for s in (graph.client_state_key, graph.client_secret, graph.static_token)
            )
        )
        if settings.receiver.enabled:
            registry = SubscriptionRegistry(self._cursors, key)
            app = create_receiver_app(config, registry, self._publisher)
            self._receiver = ReceiverServer(app, settings.receiver.host, settings.receiver.port)
            await self._receiver.start()
            self.metrics.registry.register(receiver_collector(app[STATS_KEY]))
        self._subscriptions = SubscriptionManager(
            self._connections.transport,
            self._cursors,
            key=key,
            notification_url=f"{public_url}{config.notifications_path}",
            lifecycle_url=f"{public_url}{config.lifecycle_path}",
        )
        # the notification partitions of the mailboxes this worker owns, assigned by hand as
        # ownership moves (a group of its own could hand them to another worker)
        self._consumer = KafkaClients(kafka).consumer(
            group_id=f"{settings.app_id}-outlook-reader",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await self._consumer.start()
        manager = self._subscriptions

        def names() -> list[str]:  # a failing mailbox's subscriptions wait for its reader
            return [
                m.mailbox_id
                for m in self.enabled_mailboxes()
                if m.mailbox_id not in self._failing
                and self._ownership.owns(m.mailbox_id)
                and self._settled(m.mailbox_id)
            ]

        delay = self.options.restart_delay_s
        self._service_tasks.append(
            asyncio.create_task(_supervise("subscriptions", lambda: manager.run(names), delay))
        )
        await self._follow_notifications(self._ownership.owned)

    async def _follow_notifications(self, owned: frozenset[int]) -> None:
        """Read the notifications of the owned partitions (none: stop reading)."""
        consumer, reader = self._consumer, self._reader
        if consumer is None or reader is None:
            return
        if self._notification_task is not None:
            task, self._notification_task = self._notification_task, None
            await _cancel([task])  # uncommitted notifications are read again by their owner
        if not owned:
            consumer.unsubscribe()
            return
        topic = topic_name(GRAPH_NOTIFICATIONS, self._kafka)
        consumer.assign([TopicPartition(topic, p) for p in sorted(owned)])
        delay = self.options.restart_delay_s
        self._notification_task = asyncio.create_task(
            _supervise("notification reader", lambda: reader.consume(consumer), delay)
        )

    async def _owned_changed(self, owned: frozenset[int]) -> None:
        """The Outlook writer's partitions changed: read the mailboxes of those partitions only
        (awaited in the writer's rebalance callback, so readers stop before a mailbox moves)."""
        await self._follow_notifications(owned)
        await self._refresh_mailboxes()

    async def stop(self) -> None:
        """Stop the readers, then the stages, then the connections, then the web server."""
        self._ready = False
        if self._feed is not None:
            feed, self._feed = self._feed, None
            await feed.stop()
        await _cancel(list(self._mailbox_tasks.values()))
        self._mailbox_tasks = {}
        if self._crm_readers is not None:
            crm_readers, self._crm_readers = self._crm_readers, None
            await crm_readers.stop()
        notifications = [self._notification_task] if self._notification_task else []
        self._notification_task = None
        await _cancel([*self._service_tasks, *notifications])
        self._service_tasks = []
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
        if self._receiver is not None:
            receiver, self._receiver = self._receiver, None
            await receiver.stop()
        self._runners, self._failing, self._alerts = {}, set(), None
        if self._alert_producer is not None:
            producer, self._alert_producer = self._alert_producer, None
            await producer.stop()
        if self._app is not None:
            app, self._app = self._app, None
            try:  # a crashed app may wait forever for events it will never ack
                await asyncio.wait_for(app.stop(), APP_STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("the stream processor did not stop within %ss", APP_STOP_TIMEOUT_S)
        if self._connections is not None:
            connections, self._connections = self._connections, None
            await connections.stop()
        if self._cursors is not None:
            cursors, self._cursors = self._cursors, None
            await cursors.stop()
        if self._publisher is not None:
            publisher, self._publisher = self._publisher, None
            await publisher.stop()
        self._streams = {}
        if self._web is not None:
            web, self._web = self._web, None
            await web.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def refresh(self, snapshot: ConfigSnapshot) -> None:
        """Use ``snapshot`` from now on: start and stop readers to match it."""
        self._config = snapshot
        if self._connections is None:
            return
        self._connections.set_organisations(snapshot.organisations)
        await self._refresh_crm(snapshot)
        await self._refresh_mailboxes()

    async def _refresh_crm(self, snapshot: ConfigSnapshot) -> None:
        """One reader per (organisation, table) with enabled mailboxes, run by whichever
        worker owns the stream's partition (:class:`pipeline.assignment.ReaderAssignment`).
        A table whose rows have not reached every member mailbox yet (a mailbox joined) is
        read again from the start once, then followed from its cursor."""
        if self._crm_readers is None:
            return
        members: dict[str, set[str]] = {}
        for m in self.enabled_mailboxes():
            if self._settled(m.mailbox_id):  # its rows wait until every worker knows it
                members.setdefault(m.org_id, set()).add(m.mailbox_id)
        readers: dict[str, ReaderFactory] = {}
        restart: list[str] = []
        for org_id in sorted(members):
            for table in self.options.crm_tables:
                stream = stream_id(org_id, table)
                behind = bool(members[org_id] - self._known_members(org_id, table))
                resync = frozenset(members[org_id]) if behind else None
                if behind and stream not in self._resyncing:
                    restart.append(stream)
                readers[stream] = partial(self._run_crm, org_id, table, resync)
        if restart:  # stop the readers that must start again with a resync
            await self._crm_readers.set_readers(
                {k: v for k, v in readers.items() if k not in restart}
            )
        self._resyncing = {s for s in self._resyncing if s in readers} | set(restart)
        await self._crm_readers.set_readers(readers)

    def _known_members(self, org_id: str, table: str) -> set[str]:
        """The mailboxes the table's CRM rows were last fully delivered to."""
        assert self._cursors is not None
        raw = self._cursors.get(f"{MEMBERS_KEY}{org_id}:{table}")
        return set(raw.split("\n")) if raw else set()

    async def _run_crm(self, org_id: str, table: CrmTable, resync: frozenset[str] | None) -> None:
        assert self._connections is not None
        client = await self._connections.dataverse(org_id)
        source = DataverseChangeSource(client, org_id=org_id, table=table)
        assert self._publisher is not None and self._cursors is not None
        cursors = self._cursors
        reader = CrmTableReader(
            source,
            self._publisher,
            cursors,
            raw_topic=topic_name(CRM_RAW, self._kafka),
        )
        options = self.options
        pending = resync

        async def body() -> None:
            nonlocal pending
            if pending is not None:
                result = await reader.resync()
                log.info(
                    "%s: %d row(s) published again for new mailboxes",
                    reader.cursor_key,
                    result.published,
                )
                key = f"{MEMBERS_KEY}{source.org_id}:{source.table}"
                await cursors.put(key, "\n".join(sorted(pending)))  # after: a crash resyncs
                self._resyncing.discard(source.stream_id)
                pending = None
            await reader.run(Pacer(options.crm_poll_s, options.crm_poll_max_s))

        await _supervise(f"CRM reader {source.stream_id}", body, self.options.restart_delay_s)

    async def _refresh_mailboxes(self) -> None:
        """Run the Outlook readers of the enabled mailboxes this worker owns, and only those."""
        async with self._mailbox_lock:
            await self._refresh_owned_mailboxes()

    async def _refresh_owned_mailboxes(self) -> None:
        if self._reader is None:
            return  # started from start(), once the reader exists
        every = self.enabled_mailboxes()
        enabled = {
            m.mailbox_id: m
            for m in every
            if self._ownership.owns(m.mailbox_id) and self._settled(m.mailbox_id)
        }
        wanted = set(enabled)
        if (wanted, len(every)) != self._owned_logged:
            self._owned_logged = (wanted, len(every))
            upns = sorted(m.upn for m in enabled.values())
            shown = ", ".join(upns[:50]) + (f", ... (+{len(upns) - 50})" if len(upns) > 50 else "")
            log.info(
                "mailboxes owned: %d of %d enabled (partitions %s)%s",
                len(upns),
                len(every),
                ",".join(map(str, sorted(self._ownership.owned))) or "none",
                f": {shown}" if upns else "",
            )
        gone = [
            self._mailbox_tasks.pop(key)
            for key, task in list(self._mailbox_tasks.items())
            if key not in wanted
            # its runner disabled it, but an operator enabled it again before we saw that
            or (task.done() and enabled[key].failing_since is None and not enabled[key].last_error)
        ]
        await _cancel(gone)
        for key in set(self._streams) - wanted:
            del self._streams[key]
        for key in set(self._runners) - set(self._mailbox_tasks):
            del self._runners[key]
            self._failing.discard(key)
            self.health.forget(key)
        for mailbox_id in sorted(wanted - set(self._mailbox_tasks)):
            self._mailbox_tasks[mailbox_id] = asyncio.create_task(self._run_mailbox(mailbox_id))

    async def _run_mailbox(self, mailbox_id: str) -> None:
        reader = self._reader
        assert reader is not None
        webhooks = self._subscriptions is not None
        kinds: tuple[Kind, ...] = ("task",) if webhooks else ("email", "contact", "appointment")
        if not webhooks:
            kinds = (*kinds, "task")

        crm_checked: float | None = None

        async def sync(full: bool) -> int:
            nonlocal crm_checked
            # full: every stream once: the initial sync, the safety net, or after failing
            now = time.monotonic()
            if full or crm_checked is None or now - crm_checked >= self.options.crm_user_check_s:
                try:
                    await self._check_crm_user(mailbox_id)
                except Exception as exc:
                    self.health.error(mailbox_id, "crm_user", describe(exc))
                    raise
                crm_checked = now
            if full and self._subscriptions is not None:
                await self._subscriptions.ensure(mailbox_id)
            try:
                results = await reader.sync_mailbox(mailbox_id, None if full else kinds)
            except Exception as exc:
                self.health.error(mailbox_id, "reader", describe(exc))
                raise
            kind_of = {s.stream_id: s.stream.kind for s in self._streams.get(mailbox_id, ())}
            self.health.read(
                mailbox_id,
                [(kind_of[r.stream_id], r.stream_id) for r in results if r.stream_id in kind_of],
            )
            return sum(r.published for r in results)

        options, health = self.options, self.settings.health
        policy = RunnerPolicy(
            poll_s=options.outlook_poll_s,
            max_poll_s=options.outlook_ceiling(webhooks),
            full_every_s=options.safety_net_s if webhooks else None,
            restart_delay_s=options.restart_delay_s,
            max_restart_delay_s=options.max_restart_delay_s,
            summary_every_s=options.failure_summary_s,
            failing_tries=health.failing_tries,
            failing_retry_s=health.failing_retry_s,
        )
        mailbox = self._config.mailboxes.get(mailbox_id)
        label = f"Outlook reader for {mailbox.upn if mailbox is not None else mailbox_id}"
        runner = MailboxRunner(
            mailbox_id, label, sync, _Hooks(self), policy, full_gate=self._full_gate
        )
        self._runners[mailbox_id] = runner
        await runner.run()

    async def _check_crm_user(self, mailbox_id: str) -> None:
        """Whether the mailbox's CRM user can still be acted as. The organisation's enabled
        users are listed at most every ``crm_user_check_s`` (one paged query for all its
        mailboxes); a user not among them is checked by acting as it once (WhoAmI with its
        impersonation header): a disabled user is answered 403 (0x8004a104), a removed one
        404, both permanent. A user the listing missed but WhoAmI accepts renews the list."""
        mailbox = self._config.mailboxes.get(mailbox_id)
        if mailbox is None or self._connections is None:
            return
        client = await self._connections.dataverse(mailbox.org_id)
        enabled = await self._enabled_users(mailbox.org_id, client)
        if mailbox.systemuser_id.strip().strip("{}").lower() in enabled:
            return
        await client.get_json(
            "WhoAmI",
            run_as=mailbox.systemuser_id,
            what=f"WhoAmI as CRM user {mailbox.systemuser_id}",
        )
        self._crm_users.pop(mailbox.org_id, None)  # enabled after all: list again next time

    async def _enabled_users(self, org_id: str, client: DataverseClient) -> frozenset[str]:
        """The organisation's enabled CRM users, listed again once ``crm_user_check_s`` old."""
        lock = self._crm_user_locks.setdefault(org_id, asyncio.Lock())
        async with lock:  # one listing per organisation, however many mailboxes ask
            cached = self._crm_users.get(org_id)
            now = time.monotonic()
            if cached is not None and now - cached[0] < self.options.crm_user_check_s:
                return cached[1]
            users = await enabled_users(client)
            self._crm_users[org_id] = (now, users)
            return users

    async def _subscription_lifecycle(self, record: NotificationRecord) -> None:
        """A Graph lifecycle notification: ``subscriptionRemoved`` recreates the subscription,
        ``reauthorizationRequired`` renews it (the reader then runs the passes it needs)."""
        if self._subscriptions is not None:
            log.info(
                "lifecycle %s for mailbox=%s subscription=%s",
                record.lifecycle_event,
                record.mailbox_id,
                record.subscription_id,
            )
            await self._subscriptions.handle_lifecycle(record)

    def _outlook_active(self, mailbox_id: str) -> None:
        """A notification pass found changes in the mailbox: poll its To Do soon again."""
        runner = self._runners.get(mailbox_id)
        if runner is not None:
            runner.wake()

    async def _mailbox_failing(self, mailbox_id: str, error: str) -> None:
        """Alert, drop what is cached of the mailbox, and record the failing state."""
        self._failing.add(mailbox_id)
        self.health.failing(mailbox_id, True)
        self._streams.pop(mailbox_id, None)
        alert = Alert(mailbox_id, f"mailbox_failing: {error}", caused_by="outlook-reader")
        if self._alerts is not None:
            await asyncio.gather(*await self._alerts.emit([alert]))
        await self._drop_subscriptions(mailbox_id)
        since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        await self._update_mailbox(
            mailbox_id,
            lambda m: dataclasses.replace(m, failing_since=since, last_error=error[:500]),
        )

    async def _mailbox_recovered(self, mailbox_id: str) -> None:
        self._failing.discard(mailbox_id)
        self.health.failing(mailbox_id, False)
        await self._update_mailbox(
            mailbox_id,
            lambda m: (
                dataclasses.replace(m, failing_since=None, last_error=None)
                if m.failing_since is not None
                else None
            ),
        )

    async def _mailbox_disable(self, mailbox_id: str, reason: str) -> None:
        await self._update_mailbox(
            mailbox_id,
            lambda m: dataclasses.replace(
                m, status="disabled", failing_since=None, last_error=reason[:500]
            ),
        )

    async def _drop_subscriptions(self, mailbox_id: str) -> None:
        """Delete the mailbox's subscriptions where Graph still has them and forget their
        records, so that its next full pass creates new ones."""
        if self._subscriptions is None or self._cursors is None:
            return
        try:
            await self._subscriptions.remove(mailbox_id)
        except ConnectorError as exc:
            log.info("subscriptions of %s not deleted (%s); forgotten", mailbox_id, describe(exc))
            for resource in RESOURCE_KINDS:
                await self._cursors.put(subscription_key(mailbox_id, resource), None)

    async def _update_mailbox(
        self, mailbox_id: str, change: Callable[[Mailbox], Mailbox | None]
    ) -> None:
        """Write ``change`` of the mailbox's current config record, if it is still enabled
        (an operator's disable in the meantime wins)."""
        async with ConfigStore(self._kafka) as store:
            current = store.snapshot.mailboxes.get(mailbox_id)
            if current is None or current.status != "enabled":
                return
            updated = change(current)
            if updated is not None and updated != current:
                await store.put(updated)

    async def _directory(self, org_id: str) -> CrmDirectory | None:
        """The CRM directory of ``org_id`` (None: the organisation is not configured)."""
        if self._connections is None:
            return None
        try:
            return await self._connections.directory(org_id)
        except UnknownOrganisationError:
            return None

    async def _streams_for(self, mailbox_id: str) -> list[GraphDeltaSource]:
        mailbox = self._config.mailboxes.get(mailbox_id)
        if mailbox is None:
            return []
        # the mailbox's tracked folders are read too, and its organisation's token format
        tracked = tuple(f.folder_id for f in mailbox.tracked_folders)
        folders = self.options.mail_folders
        org = self._config.organisations.get(mailbox.org_id)
        token = TrackingTokenFormat(org.token_prefix) if org is not None else TrackingTokenFormat()
        cached = self._streams.get(mailbox_id)
        if cached and (message_folders(cached), cached[0].token_format) == (
            folders_read(folders, tracked),
            token,
        ):
            return cached
        assert self._connections is not None
        transport = self._connections.transport
        streams = await mailbox_streams(
            transport,
            mailbox_id,
            folders=folders,
            tracked_folders=tracked,
            todo=self.options.todo,
        )
        sources = [
            GraphDeltaSource(
                transport,
                stream,
                org_id=mailbox.org_id,
                groups=frozenset(mailbox.field_groups),
                owner_address=mailbox.upn,
                token_format=token,
            )
            for stream in streams
        ]
        self._streams[mailbox_id] = sources
        return sources


class _Hooks:
    """The pipeline's side of a MailboxRunner."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._p = pipeline

    def forget(self, mailbox_id: str) -> None:
        self._p._streams.pop(mailbox_id, None)

    async def failing(self, mailbox_id: str, error: str) -> None:
        await self._p._mailbox_failing(mailbox_id, error)

    async def recovered(self, mailbox_id: str) -> None:
        await self._p._mailbox_recovered(mailbox_id)

    async def disable(self, mailbox_id: str, reason: str) -> None:
        await self._p._mailbox_disable(mailbox_id, reason)
