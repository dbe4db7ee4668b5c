"""``python -m bench``: engine vs raw pass-through throughput and end-to-end latency, one run."""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer

from bench.args import BenchParams, parse
from bench.baseline import passthrough
from bench.engine_run import EngineRun
from bench.kafka_io import create_topics, produce_all
from bench.report import results, summary, write
from bench.stats import latency_summary
from bench.workload import encoded, mailbox_ids
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


async def run(params: BenchParams, data_dir: Path) -> dict[str, object]:
    """One benchmark run on the broker at ``params.bootstrap``."""
    tag = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(
        bootstrap=params.bootstrap, topic_prefix=f"bench.{tag}.", partitions=params.partitions
    )
    passthrough_topic = f"bench.{tag}.passthrough"
    await create_topics(kafka, [passthrough_topic])
    source = topic_name(CHANGES_OUTLOOK, kafka)
    mailboxes = mailbox_ids(params.mailboxes)
    producer = AIOKafkaProducer(bootstrap_servers=params.bootstrap, acks="all", linger_ms=0)
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


def main(argv: list[str] | None = None) -> int:
    params = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dynasync-bench-") as data_dir:
        doc = asyncio.run(run(params, Path(data_dir)))
    write(doc, params.out)
    print(summary(doc))
    print(f"wrote {params.out} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
