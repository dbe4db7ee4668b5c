"""A worker for ``test_ack_window``: one agent on ``<in>`` sending to ``<out>`` through an
:class:`AckWindow` with the production ``on_fatal`` (the process exits). Arguments:
bootstrap, input topic, output topic, app id, data dir."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import faust

from pipeline.app import build_app
from pipeline.settings import KafkaSettings, Settings
from pipeline.stages.window import AckWindow, manual_acks


def main(bootstrap: str, source: str, sink: str, app_id: str, data_dir: str) -> None:
    settings = Settings(
        app_id=app_id,
        kafka=KafkaSettings(bootstrap=bootstrap, partitions=1),
        data_dir=Path(data_dir),
    )

    def stage(app: faust.App, _: Settings) -> None:
        out = app.topic(sink, key_type=bytes, value_type=bytes)

        async def run(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
            manual = manual_acks(stream)
            async with AckWindow(manual, max_events=3, max_delay_s=0.01) as held:
                async for event in manual.events():
                    size = 5000 if event.value == b"big" else 10
                    await held.add(event, [await out.send(key=b"k", value=b"x" * size)])
                    yield None

        app.agent(app.topic(source, key_type=bytes, value_type=bytes), name="win")(run)

    async def serve() -> None:
        app = build_app(settings, [stage])
        await app.start()
        print("child: started", flush=True)
        await asyncio.sleep(120)

    asyncio.run(serve())


if __name__ == "__main__":
    main(*sys.argv[1:6])
