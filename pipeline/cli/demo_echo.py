"""``dynasync demo-echo`` (development, hidden from the help): push messages through an echo
stage on the real broker and show them."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any

import click

from pipeline.cli.clients import admin_client, consumer, producer
from pipeline.cli.common import bootstrap_option, emit, json_option, kafka_settings, run_kafka
from pipeline.cli.params import Checked, whole

if TYPE_CHECKING:
    from pipeline.settings import KafkaSettings


async def demo_echo(
    kafka: KafkaSettings | str, *, messages: int = 5, timeout_s: float = 60.0
) -> list[str]:
    """Push ``messages`` records through an echo stage on the real broker (``kafka``: its
    settings, TLS and SASL included; a plain bootstrap string means PLAINTEXT); return lines."""
    from aiokafka.admin import NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    from pipeline.app import build_app
    from pipeline.settings import KafkaSettings, Settings
    from pipeline.stages.echo import echo_stage

    if isinstance(kafka, str):
        kafka = KafkaSettings(bootstrap=kafka)
    run = uuid.uuid4().hex[:8]
    source, sink = f"demo.{run}.in", f"demo.{run}.out"
    admin = admin_client(kafka)
    try:
        await admin.start()
        await admin.create_topics([NewTopic(source, 1, 1), NewTopic(sink, 1, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()
    settings = Settings(app_id=f"dynasync-demo-{run}", kafka=kafka)
    app = build_app(settings, [echo_stage(source, sink)])
    lines: list[str] = []
    started = time.monotonic()
    await app.start()
    try:
        out = producer(kafka, acks="all")
        try:
            await out.start()
            for i in range(messages):
                await out.send_and_wait(source, f"hello #{i}".encode(), key=b"mailbox-demo")
        finally:
            await out.stop()
        reader = consumer(kafka, sink, auto_offset_reset="earliest")
        try:
            await reader.start()
            while len(lines) < messages:
                remaining = timeout_s - (time.monotonic() - started)
                record: Any = await asyncio.wait_for(reader.getone(), max(remaining, 0.1))
                lines.append(
                    f"{source} -> echo stage -> {sink}: key={record.key.decode()} "
                    f"value={record.value.decode()!r} offset={record.offset}"
                )
        finally:
            await reader.stop()
    finally:
        await app.stop()
    return lines


@click.command(name="demo-echo", hidden=True)
@bootstrap_option
@click.option(
    "--messages", type=Checked("n", whole(1, 1000)), default=5, help="how many (1-1000; 5)"
)
@json_option
def demo_echo_command(bootstrap: str | None, messages: int, as_json: bool) -> int:
    """(development) Send messages through an echo stage and show them."""
    kafka = kafka_settings(bootstrap)
    lines = run_kafka(kafka, lambda: demo_echo(kafka, messages=messages))
    emit(as_json, {"lines": lines}, lines)
    return 0
