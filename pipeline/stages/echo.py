"""A trivial stage: copy every record of one topic to another. Used by the demo and the smoke
test to prove a stream processor runs end to end through the real broker."""

from __future__ import annotations

import asyncio
from typing import Any

from connectors.kafka_clients import KafkaClients
from pipeline.app import App, Stage
from pipeline.settings import Settings
from pipeline.stages.stream import LINGER_MS, Record, StreamProcessor


def echo_stage(source: str, sink: str) -> Stage:
    """A stage that forwards ``source`` records (key and value) to ``sink``, changing and
    dropping nothing; a source offset is committed once its copy is acknowledged."""

    def register(app: App, settings: Settings) -> None:
        def make() -> StreamProcessor:
            producer = KafkaClients(settings.kafka).producer(acks="all", linger_ms=LINGER_MS)

            async def forward(record: Record, sends: list[asyncio.Future[Any]]) -> None:
                sends.append(await producer.send(sink, record.value, key=record.key))

            return StreamProcessor(
                settings,
                name=f"echo.{source}",
                sources=[source],
                tables=[],
                handler=forward,
                producer=producer,
            )

        app.run(f"echo.{source}", make)

    return register
