"""Command-line options of ``python -m bench``, validated with clear errors."""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

_BOOTSTRAP = re.compile(r"^[\w.\-]+:\d{1,5}(,[\w.\-]+:\d{1,5})*$")

#: The sections of a run: the engine against a raw pass-through, and end to end.
SECTIONS: tuple[str, ...] = ("engine", "e2e")
#: The end-to-end scenarios run by default.
E2E_SCENARIOS: tuple[str, ...] = ("first-sync", "reverse", "idle")
#: Scenarios run only when named: one worker's RSS with many registered mailboxes.
E2E_OPTIONAL: tuple[str, ...] = ("rss",)
#: The most workers per scenario: the harness's topics have the default 6 partitions and a
#: worker beyond that would own none.
MAX_WORKERS = 6
#: ``dynasync run`` options the harness sets itself (per scenario) or that would show a secret.
_HARNESS_OWNED = (
    "--bootstrap",
    "--graph-url",
    "--notification-url",
    "--graph-token",
    "--dataverse-token",
)


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
    only: tuple[str, ...] = SECTIONS
    e2e_mailboxes: tuple[int, ...] = (1, 10, 50)
    e2e_reverse_mailboxes: tuple[int, ...] = (1, 10)
    e2e_items: int = 200
    e2e_scenarios: tuple[str, ...] = E2E_SCENARIOS
    e2e_idle_mailboxes: int = 10
    e2e_idle_settle: float = 60.0
    e2e_idle_window: float = 120.0
    e2e_workers: tuple[int, ...] = (1,)
    e2e_rss_mailboxes: int = 10_000
    e2e_rss_active: int = 1_000
    e2e_rss_items: int = 2
    e2e_rss_settle: float = 60.0
    e2e_timeout: float = 180.0
    e2e_worker_args: tuple[str, ...] = ()
    e2e_polling: bool = False
    e2e_count_paths: bool = False
    e2e_keep_topics: bool = False
    e2e_logs: Path = Path(".run/bench")
    plot: Path = Path("bench/results/e2e.svg")

    @property
    def engine(self) -> bool:
        return "engine" in self.only

    @property
    def e2e(self) -> bool:
        return "e2e" in self.only


def _int_in(name: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise BenchArgsError(f"--{name} must be between {low} and {high}, got {value}")
    return value


def _float_in(name: str, value: float, low: float, high: float) -> float:
    if not low <= value <= high:  # NaN fails too
        raise BenchArgsError(f"--{name} must be between {low:g} and {high:g} seconds, got {value}")
    return value


def _sizes(name: str, values: tuple[int, ...], high: int) -> None:
    for v in values:
        _int_in(name, v, 1, high)
    if len(set(values)) != len(values):
        raise BenchArgsError(f"--{name} lists a size twice: {','.join(map(str, values))}")


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
    _validate_e2e(params)
    return params


def _validate_e2e(params: BenchParams) -> None:
    if not params.only or set(params.only) - set(SECTIONS):
        raise BenchArgsError(
            f"--only takes {' and/or '.join(SECTIONS)} (comma-separated), "
            f"got {','.join(params.only) or 'nothing'}"
        )
    if not params.e2e_scenarios or set(params.e2e_scenarios) - {*E2E_SCENARIOS, *E2E_OPTIONAL}:
        raise BenchArgsError(
            f"--e2e-scenarios takes {', '.join((*E2E_SCENARIOS, *E2E_OPTIONAL))} "
            "(comma-separated), "
            f"got {','.join(params.e2e_scenarios) or 'nothing'}"
        )
    _sizes("e2e-mailboxes", params.e2e_mailboxes, 500)
    _sizes("e2e-reverse-mailboxes", params.e2e_reverse_mailboxes, 500)
    if "first-sync" in params.e2e_scenarios and not params.e2e_mailboxes:
        raise BenchArgsError("--e2e-mailboxes needs at least one size for the first-sync scenario")
    if "reverse" in params.e2e_scenarios and not params.e2e_reverse_mailboxes:
        raise BenchArgsError("--e2e-reverse-mailboxes needs at least one size for reverse")
    _int_in("e2e-items", params.e2e_items, 1, 10_000)
    _int_in("e2e-idle-mailboxes", params.e2e_idle_mailboxes, 1, 500)
    _float_in("e2e-idle-settle", params.e2e_idle_settle, 0, 3600)
    _float_in("e2e-idle-window", params.e2e_idle_window, 10, 3600)
    _float_in("e2e-timeout", params.e2e_timeout, 10, 7200)
    if not params.e2e_workers:
        raise BenchArgsError("--e2e-workers needs at least one worker count")
    _sizes("e2e-workers", params.e2e_workers, MAX_WORKERS)
    _int_in("e2e-rss-mailboxes", params.e2e_rss_mailboxes, 1, 50_000)
    _int_in("e2e-rss-active", params.e2e_rss_active, 0, params.e2e_rss_mailboxes)
    _int_in("e2e-rss-items", params.e2e_rss_items, 1, 1_000)
    _float_in("e2e-rss-settle", params.e2e_rss_settle, 0, 3600)
    for arg in params.e2e_worker_args:
        flag = arg.split("=", 1)[0]
        if flag in _HARNESS_OWNED:
            raise BenchArgsError(
                f"--e2e-worker-args must not set {flag}: the harness sets the broker and the "
                "emulators' URLs per scenario and passes tokens through the environment"
            )
    if params.plot.suffix != ".svg" or params.plot.is_dir():
        raise BenchArgsError(f"--plot must be an .svg file path, got {str(params.plot)!r}")


def _int_list(text: str) -> tuple[int, ...]:
    """``1,10,50`` -> (1, 10, 50)."""
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated whole numbers like 1,10,50, got {text!r}"
        )
    return tuple(int(p) for p in parts)


def _name_list(text: str) -> tuple[str, ...]:
    """``engine,e2e`` -> ("engine", "e2e") (checked by :func:`validate`)."""
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _argv(text: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"cannot split {text!r}: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    d = BenchParams()
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Engine throughput vs a raw aiokafka pass-through and end-to-end latency; "
        "then end to end through both emulators (real throttle figures) and a dynasync run "
        "worker process: first sync both ways and the idle cost.",
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
    p.add_argument(
        "--only",
        type=_name_list,
        default=d.only,
        help="sections to run: engine, e2e or engine,e2e (default both); the JSON keeps "
        "the other section's last figures",
    )
    e = p.add_argument_group("end to end (--only e2e)")
    e.add_argument(
        "--e2e-mailboxes",
        type=_int_list,
        default=d.e2e_mailboxes,
        help="mailbox counts of the CRM -> Outlook first sync (default 1,10,50)",
    )
    e.add_argument(
        "--e2e-reverse-mailboxes",
        type=_int_list,
        default=d.e2e_reverse_mailboxes,
        help="mailbox counts of the Outlook -> CRM first sync (default 1,10)",
    )
    e.add_argument(
        "--e2e-items", type=int, default=d.e2e_items, help="contacts per mailbox (default 200)"
    )
    e.add_argument(
        "--e2e-scenarios",
        type=_name_list,
        default=d.e2e_scenarios,
        help="first-sync, reverse, idle (comma-separated; default these three) and rss "
        "(only when named: one worker's memory with many registered mailboxes)",
    )
    e.add_argument(
        "--e2e-idle-mailboxes",
        type=int,
        default=d.e2e_idle_mailboxes,
        help="mailboxes registered for the idle cost (default 10)",
    )
    e.add_argument(
        "--e2e-idle-settle",
        type=float,
        default=d.e2e_idle_settle,
        help="seconds between enabling them and measuring (default 60)",
    )
    e.add_argument(
        "--e2e-idle-window",
        type=float,
        default=d.e2e_idle_window,
        help="seconds measured (default 120)",
    )
    e.add_argument(
        "--e2e-workers",
        type=_int_list,
        default=d.e2e_workers,
        help="worker counts, each scenario run with each (default 1; e.g. 1,2,3: N "
        "dynasync run processes sharing one dynasync receiver, as make up WORKERS=N; at most "
        f"{MAX_WORKERS}, the topics' partitions)",
    )
    e.add_argument(
        "--e2e-rss-mailboxes",
        type=int,
        default=d.e2e_rss_mailboxes,
        help="rss scenario: mailboxes registered before the worker starts (default 10000)",
    )
    e.add_argument(
        "--e2e-rss-active",
        type=int,
        default=d.e2e_rss_active,
        help="rss scenario: how many of them have CRM contacts to sync (default 1000)",
    )
    e.add_argument(
        "--e2e-rss-items",
        type=int,
        default=d.e2e_rss_items,
        help="rss scenario: contacts per active mailbox (default 2)",
    )
    e.add_argument(
        "--e2e-rss-settle",
        type=float,
        default=d.e2e_rss_settle,
        help="rss scenario: seconds after the last contact is applied until the settled RSS "
        "is read (default 60)",
    )
    e.add_argument(
        "--e2e-timeout",
        type=float,
        default=d.e2e_timeout,
        help="longest wait for one first sync, in seconds (default 180)",
    )
    e.add_argument(
        "--e2e-worker-args",
        type=_argv,
        default=d.e2e_worker_args,
        help="extra arguments of each worker's dynasync run, e.g. '--config-refresh 2'",
    )
    e.add_argument(
        "--e2e-polling",
        action="store_true",
        help="run the workers without webhooks, every Outlook stream polled (make up runs "
        "them with webhooks)",
    )
    e.add_argument(
        "--e2e-count-paths",
        action="store_true",
        help="also count the worker's requests per Graph stream / Dataverse table in the "
        "first syncs (a proxy hop; the idle scenario always counts)",
    )
    e.add_argument(
        "--e2e-keep-topics",
        action="store_true",
        help="leave each scenario's topics on the broker to look into",
    )
    e.add_argument(
        "--e2e-logs",
        type=Path,
        default=d.e2e_logs,
        help="where the emulators' and workers' logs go (default .run/bench)",
    )
    e.add_argument("--plot", type=Path, default=d.plot, help="items/s against mailboxes, SVG")
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
                only=ns.only,
                e2e_mailboxes=ns.e2e_mailboxes,
                e2e_reverse_mailboxes=ns.e2e_reverse_mailboxes,
                e2e_items=ns.e2e_items,
                e2e_scenarios=ns.e2e_scenarios,
                e2e_idle_mailboxes=ns.e2e_idle_mailboxes,
                e2e_idle_settle=ns.e2e_idle_settle,
                e2e_idle_window=ns.e2e_idle_window,
                e2e_workers=ns.e2e_workers,
                e2e_rss_mailboxes=ns.e2e_rss_mailboxes,
                e2e_rss_active=ns.e2e_rss_active,
                e2e_rss_items=ns.e2e_rss_items,
                e2e_rss_settle=ns.e2e_rss_settle,
                e2e_timeout=ns.e2e_timeout,
                e2e_worker_args=ns.e2e_worker_args,
                e2e_polling=ns.e2e_polling,
                e2e_count_paths=ns.e2e_count_paths,
                e2e_keep_topics=ns.e2e_keep_topics,
                e2e_logs=ns.e2e_logs,
                plot=ns.plot,
            )
        )
    except BenchArgsError as exc:
        parser.error(str(exc))
