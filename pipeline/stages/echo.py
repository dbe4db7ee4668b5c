"""A trivial stage: copy every record of one topic to another. Used by the demo and the smoke
test to prove a Faust agent runs end to end through the real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import faust

from pipeline.app import Stage
from pipeline.settings import Settings


def echo_stage(source: str, sink: str) -> Stage:
    """A stage that forwards ``source`` records (key and value) to ``sink``, upper-casing
    nothing and dropping nothing."""

    def register(app: faust.App, settings: Settings) -> None:
        src = app.topic(source, key_type=bytes, value_type=bytes)
        dst = app.topic(sink, key_type=bytes, value_type=bytes)

        async def forward(stream: faust.StreamT[bytes]) -> AsyncIterator[bytes]:
            async for event in stream.events():
                sent = await dst.send(key=event.key, value=event.value)
                await sent  # acked before the source offset may be committed
                yield event.value

        app.agent(src, name=f"echo.{source}")(forward)

    return register
