"""``dynasync receiver``: the Graph webhook receiver as a process of its own.

Several workers share one public notification URL: run one or more receivers behind it (a load
balancer spreads the requests; every receiver checks clientState against the subscriptions in
the ``cursors`` topic and publishes to ``graph.notifications``) and start the workers with
``DYNASYNC_RECEIVER__ENABLED=false``. Each worker reads the notifications of the mailboxes it
owns. Secrets come from the environment (``DYNASYNC_GRAPH__CLIENT_STATE_KEY``, ...), never argv.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import TYPE_CHECKING, Any

import click

from pipeline.cli.common import (
    UsageError,
    bootstrap_option,
    check_kafka,
    json_option,
    kafka_refusal,
    load_settings,
    log_level_option,
    setup_logging,
)
from pipeline.cli.params import PORT

if TYPE_CHECKING:
    from pipeline.settings import Settings

log = logging.getLogger("dynasync.receiver")

#: Logged once the receiver listens (the stack script waits for it).
READY_LINE = "dynasync receiver: ready"


async def serve_receiver(settings: Settings, stop: asyncio.Event) -> int:
    """Receive until ``stop`` is set."""
    from connectors.graph.receiver import ReceiverConfig, ReceiverServer, create_receiver_app
    from connectors.graph.subscriptions import SubscriptionRegistry, client_state_key
    from connectors.store import KafkaCursorStore, KafkaPublisher
    from pipeline.cli.topics import ensure_topics
    from pipeline.topics import CURSORS, GRAPH_NOTIFICATIONS, topic_name

    kafka, graph, receiver = settings.kafka, settings.graph, settings.receiver
    try:  # the workers' key: the receiver checks the clientState they gave Graph
        key = client_state_key(
            *(
                None if s is None else s.get_secret_value()
                for s in (graph.client_state_key, graph.client_secret, graph.static_token)
            )
        )
    except ValueError as exc:
        raise UsageError(f"{exc} (as the workers do)") from None
    await check_kafka(kafka)
    await ensure_topics(kafka)
    publisher = KafkaPublisher(kafka, client_id=f"{settings.app_id}-receiver")
    cursors = KafkaCursorStore(publisher, kafka, topic_name(CURSORS, kafka))
    server: ReceiverServer | None = None
    await publisher.start()
    try:
        await cursors.start(follow=True)  # subscriptions the workers create show up here
        config = ReceiverConfig(
            topic=topic_name(GRAPH_NOTIFICATIONS, kafka),
            max_body_bytes=receiver.max_body_bytes,
            rate_per_s=receiver.rate_per_s,
            rate_burst=receiver.rate_burst,
        )
        app = create_receiver_app(config, SubscriptionRegistry(cursors, key), publisher)
        server = ReceiverServer(app, receiver.host, receiver.port)
        await server.start()
        log.info("%s on %s (Kafka %s)", READY_LINE, server.url, kafka.bootstrap)
        await stop.wait()
    finally:
        if server is not None:
            await server.stop()
        await cursors.stop()
        await publisher.stop()
    log.info("dynasync receiver: stopped")
    return 0


@click.command(name="receiver")
@bootstrap_option
@click.option("--host", help="address to listen on (default 127.0.0.1)")
@click.option("--port", type=PORT, help="port to listen on (default 8090)")
@log_level_option
@json_option
def receiver(
    bootstrap: str | None, host: str | None, port: int | None, log_level: str | None, as_json: bool
) -> int:
    """Run the Graph webhook receiver on its own (workers read its output; --json: log lines
    as JSON)."""
    overrides: dict[str, dict[str, Any]] = {
        "kafka": {"bootstrap": bootstrap},
        "receiver": {"host": host, "port": port},
    }
    settings = load_settings(overrides)
    setup_logging(
        (log_level or settings.log_level).upper(),
        as_json=as_json or settings.log_format == "json",
    )

    async def main() -> int:
        from connectors.kafka_clients import KafkaAccessError

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(asyncio.CancelledError):
            try:
                return await serve_receiver(settings, stop)
            except KafkaAccessError as exc:  # e.g. an OAUTHBEARER token refused at start
                raise kafka_refusal(exc) from None
        return 0

    return asyncio.run(main())
