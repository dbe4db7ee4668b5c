"""The Faust app factory. There is no module-level app: every process builds its own."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import faust
from faust.types import ProducerT

from pipeline.settings import Settings

#: Changelog records that may wait to be produced before Faust holds the stream back.
PRODUCER_BUFFER = 5_000

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


def build_app(settings: Settings, stages: Iterable[Stage] = ()) -> faust.App:
    """Build a Faust app for ``settings`` with ``stages`` registered on it.

    Agents run with concurrency 1 and ack an event only once the records it caused are
    acknowledged by the broker (:class:`pipeline.stages.window.AckWindow`), so Faust never
    commits an offset past an event still in flight. Sends linger 5 ms to travel in batches.
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
        producer_linger_ms=5,
        broker_commit_every=1_000,
        broker_commit_interval=1.0,
        web_enabled=False,
        web_port=settings.web_port,
        logging_config=None,
    )
    # table changelog records wait in this buffer; at 100 (Faust's default) it stalls the stream
    app.producer.buffer.max_messages = PRODUCER_BUFFER
    for stage in stages:
        stage(app, settings)
    return app
