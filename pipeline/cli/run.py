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

import asyncio
import contextlib
import io
import logging
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
from click.decorators import FC

from pipeline.cli.common import (
    UsageError,
    bootstrap_option,
    check_kafka,
    json_option,
    kafka_refusal,
    load_settings,
    log_level_option,
    read_secret_file,
    refuse_argv_secret,
    setup_logging,
)
from pipeline.cli.params import Checked, seconds

if TYPE_CHECKING:
    from pipeline.runtime import RuntimeOptions
    from pipeline.settings import Settings

log = logging.getLogger("dynasync.run")

#: Logged once everything runs (the stack script waits for it).
READY_LINE = "dynasync run: ready"

SECONDS = Checked("seconds", seconds(0, 3600))


def runtime_options(
    *,
    crm_poll: float = 1.0,
    crm_poll_max: float = 60.0,
    outlook_poll: float = 1.0,
    outlook_poll_max: float | None = None,
    safety_net: float = 900.0,
    config_refresh: float = 5.0,
) -> RuntimeOptions:
    """The readers' options from ``dynasync run``'s arguments; :class:`UsageError` if they
    do not fit together (a ceiling below its floor)."""
    from pipeline.runtime import RuntimeOptions

    try:
        return RuntimeOptions(
            crm_poll_s=crm_poll,
            crm_poll_max_s=crm_poll_max,
            outlook_poll_s=outlook_poll,
            outlook_poll_max_s=outlook_poll_max,
            safety_net_s=safety_net,
            # a mailbox added meanwhile is read once every worker has reloaded the config
            new_mailbox_settle_s=min(3600.0, 2.5 * config_refresh),
        )
    except ValueError as exc:
        raise UsageError(f"invalid poll options: {exc}") from None


def run_overrides(
    *,
    bootstrap: str | None = None,
    graph_url: str | None = None,
    notification_url: str | None = None,
    graph_token_file: str | None = None,
    dataverse_token_file: str | None = None,
) -> dict[str, dict[str, Any]]:
    """The settings groups the command line overrides (token files are read here)."""
    graph_token = read_secret_file(graph_token_file, "Graph token") if graph_token_file else None
    dataverse_token = (
        read_secret_file(dataverse_token_file, "Dataverse token") if dataverse_token_file else None
    )
    return {
        "kafka": {"bootstrap": bootstrap},
        "graph": {
            "base_url": graph_url,
            "static_token": graph_token,
            "notification_url": notification_url,
        },
        "dataverse": {"static_token": dataverse_token},
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
    from pipeline.logs import RepeatedFailure
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


async def check_credentials(settings: Settings) -> None:
    """Build (and close) the Graph and Dataverse credentials the settings describe, so that a
    missing, contradictory or unreadable one is one line and exit 2 before anything starts."""
    from connectors.credentials import build_credential
    from pipeline.credentials import credential_config

    for service, group in (("graph", settings.graph), ("dataverse", settings.dataverse)):
        try:
            credential = build_credential(credential_config(group, service))
        except ValueError as exc:  # CredentialError, or azure-identity refusing a value
            raise UsageError(f"{service} credential: {exc}") from None
        await credential.close()


def _dump_tasks() -> None:
    """Log where every task of the worker waits (``kill -USR1`` a stuck worker)."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        print(f"--- {task.get_name()}: {task.get_coro()!r}", file=out)
        task.print_stack(limit=12, file=out)
    log.warning("tasks of this worker:\n%s", out.getvalue())


def _token_file_option(name: str, env: str) -> Callable[[FC], FC]:
    return click.option(
        f"--{name}-token-file",
        metavar="PATH",
        help=f"file (mode 0600) holding the static {name.capitalize()} bearer token (emulator "
        f"only); or set {env}",
    )


@click.command(name="run")
@bootstrap_option
@click.option("--graph-url", help="Graph API root, e.g. http://127.0.0.1:8081/v1.0")
@_token_file_option("graph", "DYNASYNC_GRAPH__STATIC_TOKEN")
@_token_file_option("dataverse", "DYNASYNC_DATAVERSE__STATIC_TOKEN")
# The old argv forms, refused with a pointer to the above (a secret in argv shows in ps).
@click.option("--graph-token", hidden=True)
@click.option("--dataverse-token", hidden=True)
@log_level_option
@click.option("--notification-url", help="public base URL of the webhook receiver")
@click.option(
    "--crm-poll",
    type=SECONDS,
    default=1.0,
    metavar="S",
    help="CRM poll interval while rows change (s; 1)",
)
@click.option(
    "--crm-poll-max",
    type=SECONDS,
    default=60.0,
    metavar="S",
    help="what an idle CRM table's poll interval grows to (s; 60: one request a minute)",
)
@click.option(
    "--outlook-poll",
    type=SECONDS,
    default=1.0,
    metavar="S",
    help="Outlook poll interval while changes come (s; 1)",
)
@click.option(
    "--outlook-poll-max",
    type=SECONDS,
    default=None,
    metavar="S",
    help="what an idle mailbox's poll interval grows to (s; default 60 with webhooks, "
    "where only To Do is polled, 180 without)",
)
@click.option(
    "--safety-net",
    type=Checked("seconds", seconds(0, 86_400)),
    default=900.0,
    metavar="S",
    help="with webhooks: read every stream of a mailbox at least this often, in case a "
    "notification was lost (s; 900)",
)
@click.option(
    "--config-refresh",
    type=SECONDS,
    default=5.0,
    metavar="S",
    help="config reload interval (s; 5)",
)
@json_option
def run(
    bootstrap: str | None,
    graph_url: str | None,
    graph_token_file: str | None,
    dataverse_token_file: str | None,
    graph_token: str | None,
    dataverse_token: str | None,
    log_level: str | None,
    notification_url: str | None,
    crm_poll: float,
    crm_poll_max: float,
    outlook_poll: float,
    outlook_poll_max: float | None,
    safety_net: float,
    config_refresh: float,
    as_json: bool,
) -> int:
    """Run the whole pipeline in this process until SIGTERM (--json: log lines as JSON)."""
    refuse_argv_secret("--graph-token", graph_token, "DYNASYNC_GRAPH__STATIC_TOKEN")
    refuse_argv_secret("--dataverse-token", dataverse_token, "DYNASYNC_DATAVERSE__STATIC_TOKEN")
    settings = load_settings(
        run_overrides(
            bootstrap=bootstrap,
            graph_url=graph_url,
            notification_url=notification_url,
            graph_token_file=graph_token_file,
            dataverse_token_file=dataverse_token_file,
        )
    )
    options = runtime_options(
        crm_poll=crm_poll,
        crm_poll_max=crm_poll_max,
        outlook_poll=outlook_poll,
        outlook_poll_max=outlook_poll_max,
        safety_net=safety_net,
        config_refresh=config_refresh,
    )
    setup_logging(
        (log_level or settings.log_level).upper(),
        as_json=as_json or settings.log_format == "json",
    )

    async def main() -> int:
        from connectors.credentials import CredentialError
        from connectors.kafka_clients import KafkaAccessError

        await check_credentials(settings)
        await check_kafka(settings.kafka)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
        try:
            return await run_pipeline(
                settings, options=options, config_refresh_s=config_refresh, stop=stop
            )
        except CredentialError as exc:  # an organisation's credential, made at start
            raise UsageError(f"credential: {exc}") from None
        except KafkaAccessError as exc:  # e.g. an OAUTHBEARER token refused at start
            raise kafka_refusal(exc) from None

    return asyncio.run(main())
