"""``python -m bench``: the engine against a raw pass-through (throughput and latency, one
process), then end to end through both emulators and a ``dynasync run`` worker process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.args import BenchParams, parse
from bench.baseline import passthrough
from bench.e2e.report import plot_svg
from bench.e2e.report import summary as e2e_summary
from bench.e2e.run import run_e2e
from bench.engine_run import EngineRun
from bench.kafka_io import create_topics, produce_all
from bench.report import machine, merged, read_previous, results, summary, write
from bench.stats import latency_summary
from bench.workload import encoded, mailbox_ids
from connectors.kafka_clients import KafkaClients
from pipeline.settings import KafkaSettings, Settings
from pipeline.topics import CHANGES_OUTLOOK, topic_name

NOTES = {
    "baseline": "aiokafka consumer group on changes.outlook -> produce each record (acks=all) "
    "to a bench topic, await acks, commit per fetched batch; first fetch to last commit",
    "engine": "engine stage only (no writer stage), one worker app, in-process; the same "
    "records as the baseline; from the engine's first change to the last CRM create command "
    "arriving on commands.crm",
    "latency": "paced tracked Outlook contact creates on a warm engine; per change, from just "
    "before the producer send to its command arriving on commands.crm (one clock)",
}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _FreshTopicNoise(logging.Filter):
    """aiokafka logs an error per retry while a topic created a moment ago has no leader yet;
    it retries on its own, so these lines are dropped (nothing else is)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "NotLeaderForPartitionError" not in record.getMessage()


async def run(params: BenchParams, data_dir: Path) -> dict[str, object]:
    """One run of the engine section on the broker at ``params.bootstrap``."""
    tag = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(
        bootstrap=params.bootstrap, topic_prefix=f"bench.{tag}.", partitions=params.partitions
    )
    passthrough_topic = f"bench.{tag}.passthrough"
    await create_topics(kafka, [passthrough_topic])
    source = topic_name(CHANGES_OUTLOOK, kafka)
    mailboxes = mailbox_ids(params.mailboxes)
    producer = KafkaClients(kafka).producer(acks="all", linger_ms=0)
    await producer.start()
    try:
        _say(f"producing {params.changes} changes to {source}")
        now = "2030-01-01T00:00:00Z"
        records = (encoded(f"{tag}t", i, mailboxes, now) for i in range(params.changes))
        await produce_all(producer, source, records)
        within = 60 + params.changes / 200

        _say("baseline: raw aiokafka pass-through")
        baseline = await passthrough(
            params.bootstrap,
            source,
            passthrough_topic,
            params.changes,
            f"bench-baseline-{tag}",
            within,
        )
        _say(f"  {baseline:,.0f} records/s")

        settings = Settings(app_id=f"bench-{tag}", kafka=kafka, data_dir=data_dir)
        engine = EngineRun.build(settings, mailboxes)
        await engine.start()
        try:
            _say("engine: the same backlog")
            engine_rate = await engine.throughput(params.changes, within)
            _say(f"  {engine_rate:,.0f} changes/s")
            _say(f"latency: {params.rate}/s for {params.seconds:g} s")
            latencies = await engine.latency(
                producer, source, f"{tag}l", params.rate, params.seconds
            )
        finally:
            await engine.stop()
    finally:
        await producer.stop()
    return results(params, baseline, engine_rate, latency_summary(latencies), NOTES)


async def _sections(params: BenchParams) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    # SIGTERM ends the run like Ctrl-C: the scenarios stop the processes they started
    main_task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if main_task is not None:
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    engine: dict[str, Any] | None = None
    e2e: dict[str, Any] | None = None
    if params.engine:
        _say("== engine vs raw aiokafka ==")
        with tempfile.TemporaryDirectory(prefix="dynasync-bench-") as data_dir:
            engine = await run(params, Path(data_dir))
        engine["ran_at"] = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if params.e2e:
        _say("== end to end ==")
        previous = read_previous(params.out)

        def keep(partial: dict[str, Any]) -> None:  # each scenario's figures, as they come
            write(merged(previous, engine, {**partial, "incomplete": True}), params.out)

        e2e = await run_e2e(params, _say, progress=keep)
        e2e["machine"] = machine()
    return engine, e2e


def main(argv: list[str] | None = None) -> int:
    params = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_FreshTopicNoise())
    started = time.monotonic()
    try:
        engine, e2e = asyncio.run(_sections(params))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted; nothing written", file=sys.stderr)
        return 130
    doc = merged(read_previous(params.out), engine, e2e)
    write(doc, params.out)
    if engine is not None:
        print(summary(doc))
    if e2e is not None:
        params.plot.parent.mkdir(parents=True, exist_ok=True)
        params.plot.write_text(plot_svg(e2e))
        print(e2e_summary(e2e))
        print(f"plot: {params.plot}; logs: {e2e['logs']}")
    print(f"wrote {params.out} in {time.monotonic() - started:.0f} s")
    if e2e is not None and e2e["failures"]:
        print(
            f"bench: {len(e2e['failures'])} end-to-end scenario(s) FAILED (see above)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
