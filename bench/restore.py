"""``python -m bench.restore``: how long a restarted worker's engine takes to recover its link
state from the changelog topics on the broker, before it handles its first change.

Link state is held in memory (``pipeline/stages/stream.py``: one dict per table and partition)
and written to compacted changelog topics (``<app id>-links-changelog``,
``<app id>-link-index-changelog``, ``<app id>-guard-changelog``); a worker that is assigned a
partition reads its changelog partitions from the beginning. This script starts the real engine
stage once (it creates its changelog topics), writes ``--links`` synced contact links of
``--mailboxes`` mailboxes to them as the engine would (each key in the partition of its
mailbox; the link index through the engine's own ``LinkStore``), and then starts the engine
stage ``--runs`` times, each in a new process as a restarted worker, timing each from start to
every key restored and taking its resident memory before and after. Topics are new
per run (a random app id and topic prefix). Prints one JSON object; ``--out`` writes it too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import multiprocessing
import re
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import NewTopic

from connectors.kafka_clients import KafkaClients
from pipeline.app import build_app
from pipeline.ownership import partition_of
from pipeline.settings import KafkaSettings, Settings
from pipeline.stages.engine import LinkStore, StaticRules, engine_stage
from pipeline.stages.stream import StreamProcessor, changelog_topic
from pipeline.state import LinkState, SideState, correlation_id_for
from pipeline.topics import CHANGES_CRM, CHANGES_OUTLOOK, OUTCOMES, topic_name

_BOOTSTRAP = re.compile(r"^[\w.\-]+:\d{1,5}(,[\w.\-]+:\d{1,5})*$")


@dataclass(frozen=True, slots=True)
class RestoreParams:
    """What one run of the script does."""

    links: int = 100_000
    mailboxes: int = 200
    partitions: int = 6
    runs: int = 3
    bootstrap: str = "127.0.0.1:9092"
    out: Path | None = None


def parse(argv: Sequence[str]) -> RestoreParams:
    """The options, validated (``SystemExit(2)`` with one line on garbage)."""
    parser = argparse.ArgumentParser(prog="python -m bench.restore", description=__doc__)
    parser.add_argument("--links", type=int, default=100_000, help="links to restore (100000)")
    parser.add_argument("--mailboxes", type=int, default=200, help="mailboxes they belong to")
    parser.add_argument("--partitions", type=int, default=6, help="topic partitions (6)")
    parser.add_argument("--runs", type=int, default=3, help="timed restarts (3)")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    checks = [
        (1 <= args.links <= 10_000_000, "--links must be 1..10000000"),
        (1 <= args.mailboxes <= min(args.links, 100_000), "--mailboxes must be 1..min(links, 1e5)"),
        (1 <= args.partitions <= 1000, "--partitions must be 1..1000"),
        (1 <= args.runs <= 20, "--runs must be 1..20"),
        (bool(_BOOTSTRAP.match(args.bootstrap)), "--bootstrap must be host:port[,host:port]"),
    ]
    for ok, message in checks:
        if not ok:
            parser.error(message)
    return RestoreParams(
        args.links, args.mailboxes, args.partitions, args.runs, args.bootstrap, args.out
    )


def _outlook_id(n: int) -> str:
    """An immutable-id-sized Outlook item id (Graph's are about 150 characters)."""
    digest = hashlib.sha256(str(n).encode()).hexdigest()
    return ("AAMkAGI2" + digest * 3)[:152]


def synced_contact(mailbox_id: str, n: int) -> LinkState:
    """A contact linked both ways and in step: what most of a worker's links look like."""
    crm_id = str(uuid.UUID(int=n + 1))
    fields = {
        "firstname": f"First{n}",
        "lastname": f"Last{n}",
        "emailaddress1": f"contact{n}@example.com",
        "jobtitle": "Account manager",
        "telephone1": "+44 20 7946 0000",
        "mobilephone": f"+44 7700 9{n % 100000:05d}",
        "company": "Contoso Ltd",
        "address1_line1": f"{n % 999 + 1} High Street",
        "address1_city": "London",
        "address1_postalcode": "SW1A 1AA",
    }
    at = "2030-01-01T00:00:00Z"
    outlook = SideState(
        item_id=_outlook_id(n),
        version=f"EQAAABYAAA{n:08d}",
        recent=(f"EQAAABYAAA{n:08d}",),
        seen=fields,
        seen_at=at,
        written=fields,
        written_version=f"EQAAABYAAA{n:08d}",
    )
    crm = SideState(
        item_id=crm_id, version=str(1000 + n), recent=(str(1000 + n),), seen=fields, seen_at=at
    )
    return LinkState(
        correlation_id=correlation_id_for(mailbox_id, "crm", crm_id),
        mailbox_id=mailbox_id,
        org_id="contoso",
        kind="contact",
        crm_table="contact",
        outlook=outlook,
        crm=crm,
        base=fields,
        origin="crm",
        updated_at=at,
    )


class _Table(dict[bytes, bytes]):
    """A plain table the engine's LinkStore writes into (``get`` and item assignment)."""


async def fill(settings: Settings, params: RestoreParams) -> dict[str, int]:
    """Write the links and their index entries to the changelog topics; counts and bytes."""
    mailboxes = [f"user{m:05d}@contoso.test" for m in range(params.mailboxes)]
    producer = KafkaClients(settings.kafka).producer(
        acks="all", linger_ms=20, max_batch_size=262_144
    )
    links_topic = changelog_topic(settings, "links")
    index_topic = changelog_topic(settings, "link-index")
    counts = {"links": 0, "index": 0, "bytes": 0}
    await producer.start()
    try:
        pending: list[asyncio.Future[object]] = []
        for m, mailbox in enumerate(mailboxes):
            partition = partition_of(mailbox, params.partitions)
            links, index = _Table(), _Table()
            store = LinkStore(links, index)
            share = params.links // params.mailboxes + (m < params.links % params.mailboxes)
            for i in range(share):
                store.put(synced_contact(mailbox, m * 1_000_000 + i))
            for topic, table, name in (
                (links_topic, links, "links"),
                (index_topic, index, "index"),
            ):
                for key, value in table.items():
                    sent = await producer.send(topic, value, key=key, partition=partition)
                    pending.append(sent)
                    counts[name] += 1
                    counts["bytes"] += len(key) + len(value)
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return counts


def _status_mib(field: str) -> float:
    """A field of this process's /proc status (VmRSS, VmHWM) in MiB (0 where it is missing)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def restart(settings: Settings, expected: int, timeout_s: float) -> dict[str, float]:
    """Start the engine stage; seconds until its partitions' state is restored, and memory."""
    rss_before = _status_mib("VmRSS")
    started = time.perf_counter()
    app = build_app(settings, [engine_stage(StaticRules({}))])
    await app.start()
    joined = time.perf_counter() - started
    try:
        while True:
            engine = app.running().get("engine")
            if isinstance(engine, StreamProcessor) and engine.restored_keys >= expected:
                break
            if app.crashed:
                raise RuntimeError(f"engine failed: {app.crash_reason!r}")
            if time.perf_counter() - started > timeout_s:
                raise TimeoutError(f"not restored within {timeout_s:.0f}s")
            await asyncio.sleep(0.01)
        ready = time.perf_counter() - started
        rss = _status_mib("VmRSS")
    finally:
        await app.stop()
    return {
        "start_to_restored_s": ready,
        "start_returned_s": joined,
        "rss_before_mib": rss_before,
        "rss_restored_mib": rss,
        "peak_rss_mib": _status_mib("VmHWM"),
    }


def _restart_in_child(settings_json: str, expected: int, timeout_s: float) -> dict[str, float]:
    """:func:`restart` in a fresh interpreter, as a restarted worker is."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pipeline.stages.stream").setLevel(logging.INFO)
    settings = Settings.model_validate_json(settings_json)
    return asyncio.run(restart(settings, expected, timeout_s))


async def restart_process(settings: Settings, expected: int, timeout_s: float) -> dict[str, float]:
    """:func:`restart` in a new process (spawned: nothing of this one's memory)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            pool, _restart_in_child, settings.model_dump_json(), expected, timeout_s
        )


async def create_sources(settings: Settings) -> None:
    """The engine's source topics (the changelog topics it creates itself)."""
    kafka = settings.kafka
    admin = KafkaClients(kafka).admin()
    await admin.start()
    try:
        names = [topic_name(t, kafka) for t in (CHANGES_OUTLOOK, CHANGES_CRM, OUTCOMES)]
        await admin.create_topics([NewTopic(n, kafka.partitions, 1) for n in names])
    finally:
        await admin.close()


async def run(params: RestoreParams) -> dict[str, object]:
    """Fill, then time ``params.runs`` restarts; the figures."""
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        app_id=f"bench-restore-{tag}",
        kafka=KafkaSettings(
            bootstrap=params.bootstrap,
            partitions=params.partitions,
            topic_prefix=f"bench.{tag}.",
        ),
    )
    await create_sources(settings)
    await restart(settings, 0, 120)  # creates the changelog topics, as a first start does
    filled = time.perf_counter()
    counts = await fill(settings, params)
    fill_s = time.perf_counter() - filled
    expected = counts["links"] + counts["index"]
    timeout = 120 + expected / 1_000
    runs = [await restart_process(settings, expected, timeout) for _ in range(params.runs)]
    median = statistics.median(r["start_to_restored_s"] for r in runs)
    per_link = median / counts["links"]
    rss = statistics.median(r["rss_restored_mib"] - r["rss_before_mib"] for r in runs)
    return {
        "links": counts["links"],
        "index_keys": counts["index"],
        "changelog_bytes": counts["bytes"],
        "mailboxes": params.mailboxes,
        "partitions": params.partitions,
        "fill_s": round(fill_s, 2),
        "restarts": [{k: round(v, 3) for k, v in r.items()} for r in runs],
        "median_start_to_restored_s": round(median, 3),
        "extrapolated_1m_links_s": round(per_link * 1_000_000, 1),
        "median_state_rss_mib": round(rss, 1),
        "extrapolated_1m_links_state_rss_mib": round(rss * 1_000_000 / counts["links"], 0),
        "note": "each restart a fresh process; the engine's in-memory tables from the real "
        "broker; RSS from before the engine starts to its state restored; linear extrapolation",
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run and print the figures as JSON."""
    params = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pipeline.stages.stream").setLevel(logging.INFO)
    figures = asyncio.run(run(params))
    text = json.dumps(figures, indent=2)
    print(text)
    if params.out is not None:
        params.out.parent.mkdir(parents=True, exist_ok=True)
        params.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
