"""The Faust app factory. There is no module-level app: every process builds its own."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import faust
from faust.types import CodecArg, FutureMessage, ProducerT

from pipeline.settings import Settings

#: Changelog records that may wait to be produced before Faust holds the stream back.
PRODUCER_BUFFER = 5_000

#: How long a send waits for others to share its produce request. Fewer, larger requests cost
#: the worker less CPU per record (bench: 20 ms takes ~15% off the engine's cost per change
#: against 5 ms) and add that much latency per hop, far below the one-second budget.
LINGER_MS = 20

#: A stage registers its agents, topics and tables on an app.
Stage = Callable[[faust.App, Settings], None]


def broker_url(settings: Settings) -> str:
    """Faust's broker URL list for the configured bootstrap servers."""
    return ";".join(f"kafka://{hostport}" for hostport in settings.kafka.bootstrap.split(","))


class App(faust.App):
    """A Faust app whose sends reach a running producer without yielding to the event loop.

    Faust's own ``maybe_start_producer`` guards every send (table changelogs included) against
    concurrent starts by yielding to the loop three times, which costs more than the send itself.
    """

    async def maybe_start_producer(self) -> ProducerT:
        """The producer, started first if it is not running yet."""
        producer = self.producer
        if producer.started and not self.in_transaction:
            return producer
        started: ProducerT = await super().maybe_start_producer()
        return started


class DurableTable(faust.Table[bytes, bytes]):
    """A table (bytes keys and values) that hands out the changelog sends of its writes.

    Faust commits an offset after a plain producer flush, which does not surface a failed
    changelog send. A stage holding its events in an
    :class:`pipeline.stages.window.AckWindow` adds :meth:`take_writes` to what an event caused,
    so the event is acked only once its state changes are durable, and a refused write stops
    the worker like a refused output.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self._writes: list[FutureMessage] = []

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: CodecArg | None = None,
        value_serializer: CodecArg | None = None,
    ) -> FutureMessage:
        """Send the change as Faust does, and remember its future."""
        sent = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        self._writes.append(sent)
        return sent

    def take_writes(self) -> list[FutureMessage]:
        """The changelog sends since the last call (their acknowledgement futures)."""
        writes, self._writes = self._writes, []
        return writes


def durable_table(app: faust.App, name: str) -> DurableTable:
    """Declare a :class:`DurableTable` called ``name`` on ``app`` (missing keys read None)."""
    table = DurableTable(
        app,
        name=name,
        default=None,
        beacon=app.tables.beacon,
        key_type=bytes,
        value_type=bytes,
    )
    app.tables.add(table)
    return table


def build_app(settings: Settings, stages: Iterable[Stage] = ()) -> faust.App:
    """Build a Faust app for ``settings`` with ``stages`` registered on it.

    Agents run with concurrency 1 and ack an event only once the records it caused are
    acknowledged by the broker (:class:`pipeline.stages.window.AckWindow`), so Faust never
    commits an offset past an event still in flight. Sends linger :data:`LINGER_MS` to travel
    in batches.
    """
    app = App(
        settings.app_id,
        broker=broker_url(settings),
        store="rocksdb://" if settings.store == "rocksdb" else "memory://",
        datadir=str(settings.data_dir),
        autodiscover=False,
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        topic_allow_declare=True,
        topic_disable_leader=True,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=LINGER_MS,
        broker_commit_every=1_000,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.kafka.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.kafka.session_timeout_s / 3),
        web_enabled=False,
        web_port=settings.web_port,
        logging_config=None,
    )
    # table changelog records wait in this buffer; at 100 (Faust's default) it stalls the stream
    app.producer.buffer.max_messages = PRODUCER_BUFFER
    for stage in stages:
        stage(app, settings)
    return app
