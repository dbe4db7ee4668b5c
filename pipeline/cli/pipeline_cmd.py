"""``dynasync run``: the whole pipeline in one process until SIGTERM / SIGINT.

Creates missing topics, loads the configuration from the ``config`` topic, starts
:class:`pipeline.runtime.Pipeline` and reloads the configuration every ``--config-refresh``
seconds (new mailboxes start syncing, removed or disabled ones stop).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import math
import signal
import time
from typing import Any

from pipeline.settings import Settings

log = logging.getLogger("dynasync.run")

#: Logged once everything runs (the stack script waits for it).
READY_LINE = "dynasync run: ready"


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds within (0, 3600], got {text!r}")
    return value


def run_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The settings groups the command line overrides."""
    return {
        "kafka": {"bootstrap": args.bootstrap},
        "graph": {
            "base_url": args.graph_url,
            "static_token": args.graph_token,
            "notification_url": args.notification_url,
        },
        "dataverse": {"static_token": args.dataverse_token},
    }


async def run_pipeline(
    settings: Settings,
    *,
    crm_poll_s: float,
    outlook_poll_s: float,
    config_refresh_s: float,
    stop: asyncio.Event,
) -> int:
    """Run until ``stop`` is set (0) or the stream processor crashes (1)."""
    from pipeline.cli.topics import ensure_topics
    from pipeline.config_store import ConfigStore
    from pipeline.runtime import Pipeline, RuntimeOptions

    await ensure_topics(settings.kafka)
    options = RuntimeOptions(crm_poll_s=crm_poll_s, outlook_poll_s=outlook_poll_s)
    async with ConfigStore(settings.kafka) as store:
        for problem in store.snapshot.problems:
            log.warning("config: %s", problem)
        async with Pipeline(settings, store.snapshot, options) as pipeline:
            names = [m.mailbox_id for m in pipeline.enabled_mailboxes()]
            log.info(
                "%s (Kafka %s, %d enabled mailbox(es), webhooks %s)",
                READY_LINE,
                settings.kafka.bootstrap,
                len(names),
                "on" if pipeline.receiver_url else "off (polling)",
            )
            next_refresh = time.monotonic() + config_refresh_s
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
                    log.warning("config reload failed: %s", exc)
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
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
        return await run_pipeline(
            settings,
            crm_poll_s=args.crm_poll,
            outlook_poll_s=args.outlook_poll,
            config_refresh_s=args.config_refresh,
            stop=stop,
        )

    return asyncio.run(main())


def add_pipeline_commands(sub: Any) -> None:
    """Register ``run`` on the ``dynasync`` subparsers."""
    run = sub.add_parser("run", help="run the whole pipeline in this process until SIGTERM")
    run.add_argument("--bootstrap", help="Kafka bootstrap servers host:port[,host:port]")
    run.add_argument("--graph-url", help="Graph API root, e.g. http://127.0.0.1:8081/v1.0")
    run.add_argument("--graph-token", help="static bearer token for Graph (emulator only)")
    run.add_argument("--dataverse-token", help="static bearer token for Dataverse (emulator only)")
    run.add_argument("--notification-url", help="public base URL of the webhook receiver")
    run.add_argument("--crm-poll", type=_seconds, default=1.0, help="CRM poll interval (s)")
    run.add_argument("--outlook-poll", type=_seconds, default=1.0, help="Outlook poll (s)")
    run.add_argument(
        "--config-refresh", type=_seconds, default=5.0, help="config reload interval (s)"
    )
    run.set_defaults(func=_cmd_run)
