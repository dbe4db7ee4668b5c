"""Command-line options of ``python -m bench``, validated with clear errors."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

_BOOTSTRAP = re.compile(r"^[\w.\-]+:\d{1,5}(,[\w.\-]+:\d{1,5})*$")


class BenchArgsError(ValueError):
    """An option out of range or malformed."""


@dataclass(frozen=True, slots=True)
class BenchParams:
    """What one benchmark run does."""

    changes: int = 20_000
    mailboxes: int = 100
    rate: int = 200
    seconds: float = 10.0
    partitions: int = 6
    bootstrap: str = "127.0.0.1:9092"
    out: Path = Path("bench/results/latest.json")
    kafka_version: str = "unknown"


def _int_in(name: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise BenchArgsError(f"--{name} must be between {low} and {high}, got {value}")
    return value


def validate(params: BenchParams) -> BenchParams:
    """``params`` if every option is in range, else :class:`BenchArgsError` naming the option."""
    _int_in("changes", params.changes, 100, 5_000_000)
    _int_in("mailboxes", params.mailboxes, 1, 100_000)
    _int_in("rate", params.rate, 1, 100_000)
    _int_in("partitions", params.partitions, 1, 1000)
    if not 0.5 <= params.seconds <= 3600:
        raise BenchArgsError(f"--seconds must be between 0.5 and 3600, got {params.seconds}")
    if params.rate * params.seconds < 10:
        raise BenchArgsError("--rate x --seconds must give at least 10 changes for latency")
    if not _BOOTSTRAP.match(params.bootstrap):
        raise BenchArgsError(
            f"--bootstrap must be host:port[,host:port...], got {params.bootstrap!r}"
        )
    if params.out.suffix != ".json" or params.out.is_dir():
        raise BenchArgsError(f"--out must be a .json file path, got {str(params.out)!r}")
    if not re.fullmatch(r"[\w.\-+]{1,40}", params.kafka_version):
        raise BenchArgsError(f"--kafka-version is malformed: {params.kafka_version!r}")
    return params


def _parser() -> argparse.ArgumentParser:
    d = BenchParams()
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Engine throughput vs a raw aiokafka pass-through, and end-to-end latency.",
    )
    p.add_argument("--changes", type=int, default=d.changes, help="changes for the throughput runs")
    p.add_argument("--mailboxes", type=int, default=d.mailboxes, help="mailboxes the changes span")
    p.add_argument("--rate", type=int, default=d.rate, help="changes/s of the latency run")
    p.add_argument("--seconds", type=float, default=d.seconds, help="length of the latency run")
    p.add_argument("--partitions", type=int, default=d.partitions, help="partitions per topic")
    p.add_argument("--bootstrap", default=d.bootstrap, help="Kafka bootstrap servers")
    p.add_argument("--out", type=Path, default=d.out, help="where to write the JSON results")
    p.add_argument(
        "--kafka-version", default=d.kafka_version, help="broker version, for the record"
    )
    return p


def parse(argv: list[str] | None = None) -> BenchParams:
    """Parse and validate ``argv``; exits with status 2 and a message on bad input."""
    parser = _parser()
    ns = parser.parse_args(argv)
    try:
        return validate(
            BenchParams(
                changes=ns.changes,
                mailboxes=ns.mailboxes,
                rate=ns.rate,
                seconds=ns.seconds,
                partitions=ns.partitions,
                bootstrap=ns.bootstrap,
                out=ns.out,
                kafka_version=ns.kafka_version,
            )
        )
    except BenchArgsError as exc:
        parser.error(str(exc))
