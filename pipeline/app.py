"""The Faust app factory. There is no module-level app: every process builds its own."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import faust

from pipeline.settings import Settings

#: A stage registers its agents, topics and tables on an app.
Stage = Callable[[faust.App, Settings], None]


def broker_url(settings: Settings) -> str:
    """Faust's broker URL list for the configured bootstrap servers."""
    return ";".join(f"kafka://{hostport}" for hostport in settings.kafka.bootstrap.split(","))


def build_app(settings: Settings, stages: Iterable[Stage] = ()) -> faust.App:
    """Build a Faust app for ``settings`` with ``stages`` registered on it.

    Offsets are committed by Faust only after an event's processing has finished; agents run
    with concurrency 1 so a partition is never committed past an event still in flight.
    """
    app = faust.App(
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
        broker_commit_every=100,
        broker_commit_interval=1.0,
        web_enabled=False,
        web_port=settings.web_port,
        logging_config=None,
    )
    for stage in stages:
        stage(app, settings)
    return app
