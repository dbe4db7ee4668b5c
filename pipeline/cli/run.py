"""``dynasync run``: the whole pipeline in one process until SIGTERM / SIGINT.

Creates missing topics, loads the configuration from the ``config`` topic, starts
:class:`pipeline.runtime.Pipeline` and reloads the configuration every ``--config-refresh``
seconds (new mailboxes start syncing, removed or disabled ones stop).

Secrets never come from the command line (``ps`` shows it): they are read from the
``DYNASYNC_*`` settings in the environment (``DYNASYNC_GRAPH__STATIC_TOKEN``,
``DYNASYNC_DATAVERSE__CLIENT_SECRET``, ...) or from a token file only its owner can read
(``--graph-token-file``, ``--dataverse-token-file``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import math
import os
import signal
import stat
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pipeline.cli.main import UsageError
from pipeline.logs import RepeatedFailure, configure_logging
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.runtime import RuntimeOptions

log = logging.getLogger("dynasync.run")

#: Logged once everything runs (the stack script waits for it).
READY_LINE = "dynasync run: ready"


def _seconds_upto(limit: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
        if not math.isfinite(value) or not 0 < value <= limit:
            raise argparse.ArgumentTypeError(
                f"expected seconds within (0, {limit:g}], got {text!r}"
            )
        return value

    return parse


_seconds = _seconds_upto(3600)


def runtime_options(args: argparse.Namespace) -> RuntimeOptions:
    """The readers' options from ``dynasync run``'s arguments; :class:`UsageError` if they
    do not fit together (a ceiling below its floor)."""
    from pipeline.runtime import RuntimeOptions

    try:
        return RuntimeOptions(
            crm_poll_s=args.crm_poll,
            crm_poll_max_s=args.crm_poll_max,
            outlook_poll_s=args.outlook_poll,
            outlook_poll_max_s=args.outlook_poll_max,
            safety_net_s=args.safety_net,
            # a mailbox added meanwhile is read once every worker has reloaded the config
            new_mailbox_settle_s=min(3600.0, 2.5 * args.config_refresh),
        )
    except ValueError as exc:
        raise UsageError(f"invalid poll options: {exc}") from None


#: Longest token file read (a bearer token is a few KB at most).
_MAX_SECRET_BYTES = 64 * 1024


def read_secret_file(path: str, what: str) -> str:
    """The one-line secret in ``path``, which only its owner may read (mode 0600 or stricter);
    otherwise :class:`UsageError` with one line saying why."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"the {what} file {path} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise UsageError(
                f"the {what} file {path} is mode {mode:04o}, readable by others; "
                f"it must be 0600 or stricter (chmod 600 {path})"
            )
        raw = file.read(_MAX_SECRET_BYTES + 1)
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise UsageError(f"the {what} file {path} is not UTF-8 text") from None
    if len(raw) > _MAX_SECRET_BYTES or not text or not text.isprintable() or " " in text:
        raise UsageError(f"the {what} file {path} must hold one token (one line, no spaces)")
    return text


def _refuse_argv_secrets(args: argparse.Namespace) -> None:
    for flag, dest, env in (
        ("--graph-token", "graph_token", "DYNASYNC_GRAPH__STATIC_TOKEN"),
        ("--dataverse-token", "dataverse_token", "DYNASYNC_DATAVERSE__STATIC_TOKEN"),
    ):
        if getattr(args, dest, None) is not None:
            raise UsageError(
                f"{flag} is refused: a secret on the command line shows in ps; "
                f"set {env} or pass {flag}-file PATH (mode 0600)"
            )


def run_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The settings groups the command line overrides (token files are read here)."""
    _refuse_argv_secrets(args)
    graph_file: str | None = args.graph_token_file
    dataverse_file: str | None = args.dataverse_token_file
    return {
        "kafka": {"bootstrap": args.bootstrap},
        "graph": {
            "base_url": args.graph_url,
            "static_token": read_secret_file(graph_file, "Graph token") if graph_file else None,
            "notification_url": args.notification_url,
        },
        "dataverse": {
            "static_token": (
                read_secret_file(dataverse_file, "Dataverse token") if dataverse_file else None
            )
        },
    }


async def run_pipeline(
    settings: Settings,
    *,
    options: RuntimeOptions,
    config_refresh_s: float,
    stop: asyncio.Event,
) -> int:
    """Run until ``stop`` is set (0) or the stream processor crashes (1)."""
    from pipeline.cli.topics import ensure_topics
    from pipeline.config_store import ConfigStore
    from pipeline.runtime import Pipeline

    await ensure_topics(settings.kafka)
    async with ConfigStore(settings.kafka) as store:
        for problem in store.snapshot.problems:
            log.warning("config: %s", problem)
        async with Pipeline(settings, store.snapshot, options) as pipeline:
            names = [m.mailbox_id for m in pipeline.enabled_mailboxes()]
            webhooks = settings.graph.notification_url is not None  # receiver here or apart
            log.info(
                "%s (Kafka %s, %d enabled mailbox(es), webhooks %s; polls back off to %g s "
                "(Outlook) and %g s (CRM) while idle)",
                READY_LINE,
                settings.kafka.bootstrap,
                len(names),
                f"on, every stream read at least every {options.safety_net_s:g} s"
                if webhooks
                else "off (polling)",
                options.outlook_ceiling(webhooks),
                options.crm_poll_max_s,
            )
            next_refresh = time.monotonic() + config_refresh_s
            reload = RepeatedFailure("config reload", log)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=min(config_refresh_s, 1.0))
                if stop.is_set():
                    break
                failure = pipeline.failure()
                if failure is not None:
                    log.error("dynasync run: the stream processor crashed: %s", failure)
                    return 1
                if time.monotonic() < next_refresh:
                    continue
                next_refresh = time.monotonic() + config_refresh_s
                try:
                    await pipeline.refresh(await store.load())
                except Exception as exc:  # keep running on the last good snapshot
                    reload.failed(exc)
                else:
                    reload.succeeded()
    log.info("dynasync run: stopped")
    return 0


def _dump_tasks() -> None:
    """Log where every task of the worker waits (``kill -USR1`` a stuck worker)."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        print(f"--- {task.get_name()}: {task.get_coro()!r}", file=out)
        task.print_stack(limit=12, file=out)
    log.warning("tasks of this worker:\n%s", out.getvalue())


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline.cli.main import load_settings

    settings = load_settings(run_overrides(args))
    options = runtime_options(args)
    configure_logging(args.log_level or settings.log_level)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
        return await run_pipeline(
            settings,
            options=options,
            config_refresh_s=args.config_refresh,
            stop=stop,
        )

    return asyncio.run(main())


def add_pipeline_commands(sub: Any) -> None:
    """Register ``run`` on the ``dynasync`` subparsers."""
    run = sub.add_parser("run", help="run the whole pipeline in this process until SIGTERM")
    run.add_argument("--bootstrap", help="Kafka bootstrap servers host:port[,host:port]")
    run.add_argument("--graph-url", help="Graph API root, e.g. http://127.0.0.1:8081/v1.0")
    run.add_argument(
        "--graph-token-file",
        metavar="PATH",
        help="file (mode 0600) holding the static Graph bearer token (emulator only); "
        "or set DYNASYNC_GRAPH__STATIC_TOKEN",
    )
    run.add_argument(
        "--dataverse-token-file",
        metavar="PATH",
        help="file (mode 0600) holding the static Dataverse bearer token (emulator only); "
        "or set DYNASYNC_DATAVERSE__STATIC_TOKEN",
    )
    # The old argv forms, refused with a pointer to the above (a secret in argv shows in ps).
    run.add_argument("--graph-token", help=argparse.SUPPRESS)
    run.add_argument("--dataverse-token", help=argparse.SUPPRESS)
    run.add_argument(
        "--log-level",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level (default DYNASYNC_LOG_LEVEL or INFO); only DEBUG logs every HTTP request",
    )
    run.add_argument("--notification-url", help="public base URL of the webhook receiver")
    run.add_argument(
        "--crm-poll",
        type=_seconds,
        default=1.0,
        metavar="S",
        help="CRM poll interval while rows change (s; 1)",
    )
    run.add_argument(
        "--crm-poll-max",
        type=_seconds,
        default=60.0,
        metavar="S",
        help="what an idle CRM table's poll interval grows to (s; 60: one request a minute)",
    )
    run.add_argument(
        "--outlook-poll",
        type=_seconds,
        default=1.0,
        metavar="S",
        help="Outlook poll interval while changes come (s; 1)",
    )
    run.add_argument(
        "--outlook-poll-max",
        type=_seconds,
        default=None,
        metavar="S",
        help="what an idle mailbox's poll interval grows to (s; default 60 with webhooks, "
        "where only To Do is polled, 180 without)",
    )
    run.add_argument(
        "--safety-net",
        type=_seconds_upto(86_400),
        default=900.0,
        metavar="S",
        help="with webhooks: read every stream of a mailbox at least this often, in case a "
        "notification was lost (s; 900)",
    )
    run.add_argument(
        "--config-refresh", type=_seconds, default=5.0, help="config reload interval (s)"
    )
    run.set_defaults(func=_cmd_run)
