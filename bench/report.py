"""The benchmark's results: the JSON document and the human summary."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from bench.args import BenchParams

#: issue 10 raised the engine target from 5,000 to 10,000 changes/s per worker
TARGETS: dict[str, float] = {"engine_changes_per_s": 10_000, "p99_ms": 1000}


def machine() -> dict[str, Any]:
    """What ran the benchmark."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
    }


def results(
    params: BenchParams,
    baseline_per_s: float,
    engine_per_s: float,
    latency_ms: dict[str, float],
    notes: dict[str, str],
) -> dict[str, Any]:
    """The JSON document of one run of the engine section."""
    p = {
        k: v
        for k, v in asdict(params).items()
        if k in ("changes", "mailboxes", "rate", "seconds", "partitions", "bootstrap")
    }
    p["out"] = str(params.out)
    return {
        "kafka_version": params.kafka_version,
        "partitions": params.partitions,
        "baseline_records_per_s": round(baseline_per_s, 1),
        "engine_changes_per_s": round(engine_per_s, 1),
        "ratio": round(engine_per_s / baseline_per_s, 3),
        "latency_ms": latency_ms,
        "targets": TARGETS,
        "met": {
            "engine_changes_per_s": engine_per_s >= TARGETS["engine_changes_per_s"],
            "p99_ms": latency_ms["p99"] <= TARGETS["p99_ms"],
        },
        "params": p,
        "machine": machine(),
        "notes": notes,
    }


def write(doc: dict[str, Any], out: Path) -> None:
    """Write ``doc`` to ``out`` (parents created)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")


#: The key of the end-to-end section in the results document; the engine's keys are the rest.
E2E_KEY = "e2e"


def merged(
    previous: dict[str, Any], engine: dict[str, Any] | None, e2e: dict[str, Any] | None
) -> dict[str, Any]:
    """The results document after a run: each section that ran replaces its part of
    ``previous`` (the engine's top-level keys, or ``e2e``), the other part is kept."""
    doc = dict(previous)
    if engine is not None:
        doc = {E2E_KEY: doc[E2E_KEY]} if E2E_KEY in doc else {}
        doc.update(engine)
    if e2e is not None:
        doc[E2E_KEY] = e2e
    return doc


def read_previous(out: Path) -> dict[str, Any]:
    """The results document at ``out``, or an empty one if there is none (or it is garbage)."""
    try:
        doc = orjson.loads(out.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def summary(doc: dict[str, Any]) -> str:
    """A few lines for a human."""
    lat = doc["latency_ms"]
    met = doc["met"]
    params = doc["params"]

    def mark(ok: bool) -> str:
        return "met" if ok else "NOT met"

    return "\n".join(
        [
            f"Kafka {doc['kafka_version']}, {doc['partitions']} partitions, "
            f"{params['changes']} changes over {params['mailboxes']} mailboxes",
            f"  raw aiokafka pass-through : {doc['baseline_records_per_s']:>10,.0f} records/s",
            f"  engine (1 worker)         : {doc['engine_changes_per_s']:>10,.0f} changes/s "
            f"(target {TARGETS['engine_changes_per_s']:,.0f}: {mark(met['engine_changes_per_s'])})",
            f"  ratio engine/baseline     : {doc['ratio']:>10.3f}",
            f"  latency @ {params['rate']}/s for {params['seconds']:g} s, "
            f"{params['mailboxes']} mailboxes: p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, "
            f"p99 {lat['p99']:.1f} ms (target p99 <= {TARGETS['p99_ms']:,.0f}: "
            f"{mark(met['p99_ms'])})",
        ]
    )
