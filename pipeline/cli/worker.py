"""``dynasync worker`` and ``dynasync demo-echo``: run stages against the broker."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from pipeline.app import Stage, build_app
from pipeline.stages.echo import echo_stage


def _parse_stage(text: str) -> Stage:
    kind, _, rest = text.partition(":")
    if kind == "echo":
        source, _, sink = rest.partition(":")
        if not source or not sink:
            raise argparse.ArgumentTypeError("echo stage wants echo:<source-topic>:<sink-topic>")
        return echo_stage(source, sink)
    raise argparse.ArgumentTypeError(f"unknown stage {text!r} (known: echo:<src>:<dst>)")


def _cmd_worker(args: argparse.Namespace) -> int:
    from pipeline.cli.main import _kafka_overrides, load_settings

    settings = load_settings(_kafka_overrides(args))
    app = build_app(settings, args.stage)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with app:
            while not stop.is_set() and not app.crashed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)

    asyncio.run(serve())
    return 1 if app.crashed else 0


async def demo_echo(bootstrap: str, *, messages: int = 5, timeout_s: float = 60.0) -> list[str]:
    """Push ``messages`` records through an echo stage on the real broker; return lines."""
    from pipeline.settings import KafkaSettings, Settings

    run = uuid.uuid4().hex[:8]
    source, sink = f"demo.{run}.in", f"demo.{run}.out"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        await admin.create_topics([NewTopic(source, 1, 1), NewTopic(sink, 1, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()
    settings = Settings(app_id=f"dynasync-demo-{run}", kafka=KafkaSettings(bootstrap=bootstrap))
    app = build_app(settings, [echo_stage(source, sink)])
    lines: list[str] = []
    started = time.monotonic()
    await app.start()
    try:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        try:
            await producer.start()
            for i in range(messages):
                await producer.send_and_wait(source, f"hello #{i}".encode(), key=b"mailbox-demo")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(sink, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        try:
            await consumer.start()
            while len(lines) < messages:
                remaining = timeout_s - (time.monotonic() - started)
                record: Any = await asyncio.wait_for(consumer.getone(), max(remaining, 0.1))
                lines.append(
                    f"{source} -> echo stage -> {sink}: key={record.key.decode()} "
                    f"value={record.value.decode()!r} offset={record.offset}"
                )
        finally:
            await consumer.stop()
    finally:
        await app.stop()
    return lines


def _cmd_demo_echo(args: argparse.Namespace) -> int:
    from pipeline.cli.main import _kafka_overrides, load_settings

    settings = load_settings(_kafka_overrides(args))
    for line in asyncio.run(demo_echo(settings.kafka.bootstrap, messages=args.messages)):
        print(line)
    return 0


def add_run_commands(sub: Any) -> None:
    """Register ``worker`` and ``demo-echo`` on the ``dynasync`` subparsers."""
    worker = sub.add_parser("worker", help="run a worker with the given stages")
    worker.add_argument("--bootstrap", help="Kafka bootstrap servers host:port[,host:port]")
    worker.add_argument(
        "--stage", type=_parse_stage, action="append", default=[], help="echo:<src>:<dst>"
    )
    worker.set_defaults(func=_cmd_worker)

    demo = sub.add_parser("demo-echo", help="send messages through an echo stage and show them")
    demo.add_argument("--bootstrap", help="Kafka bootstrap servers host:port[,host:port]")
    demo.add_argument("--messages", type=int, default=5, choices=range(1, 1001), metavar="N")
    demo.set_defaults(func=_cmd_demo_echo)
