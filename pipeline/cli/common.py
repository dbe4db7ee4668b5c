"""What every ``dynasync`` command shares: its errors, settings, the common options, output
(rich tables for people, ``--json`` with stable keys for programs) and running a coroutine
against Kafka with its failures as one line.

Imports only click and orjson at module level, so ``dynasync --help`` starts fast; settings
(pydantic), rich and aiokafka load when a command needs them.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import os
import stat
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from pipeline.cli.params import KAFKA_TIMEOUT, TOPIC_PREFIX

if TYPE_CHECKING:
    from rich.console import Console

    from connectors.kafka_clients import KafkaAccessError, KafkaConnection
    from pipeline.config_store import ConfigStore
    from pipeline.settings import KafkaSettings, Settings

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class UsageError(click.ClickException):
    """Bad command-line input found after parsing; one line, exit status 2, nothing done.
    ``details``: lines printed before it (each bad row of an input file, say)."""

    exit_code = 2

    def __init__(self, message: str, *, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.details = list(details)


class CommandError(click.ClickException):
    """The command could not do its work (Kafka unreachable, a refused write); exit 1."""

    exit_code = 1


def load_settings(overrides: dict[str, dict[str, Any]] | None = None) -> Settings:
    """Settings from the environment, with validated per-group overrides from the CLI
    (``None`` values are left out); :class:`UsageError` naming the bad setting."""
    from pydantic import ValidationError

    from pipeline.settings import Settings

    try:
        base = Settings()
        if not overrides:
            return base
        merged: dict[str, Any] = base.model_dump()
        for group, values in overrides.items():
            merged[group] = {**merged[group], **{k: v for k, v in values.items() if v is not None}}
        return Settings.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"invalid setting {where}: {first['msg']}") from None


def kafka_settings(
    bootstrap: str | None, topic_prefix: str | None = None, **more: Any
) -> KafkaSettings:
    """The Kafka settings of the environment with the command line's overrides (validated):
    ``--bootstrap`` replaces only the servers, the security settings (``DYNASYNC_KAFKA__*``:
    TLS, SASL) stay those of the environment."""
    values = {"bootstrap": bootstrap, "topic_prefix": topic_prefix, **more}
    return load_settings({"kafka": values}).kafka


# -- options ----------------------------------------------------------------------------------


def json_option(func: F) -> F:
    """``--json``: print one JSON document (stable keys) instead of text; passed as
    ``as_json``."""
    return click.option(
        "--json", "as_json", is_flag=True, help="print JSON (stable keys) instead of text"
    )(func)


def bootstrap_option(func: F) -> F:
    """``--bootstrap``."""
    return click.option("--bootstrap", metavar="HOST:PORT[,...]", help="Kafka bootstrap servers")(
        func
    )


def kafka_options(func: F) -> F:
    """``--bootstrap``, ``--topic-prefix`` and ``--timeout`` (seconds to wait for Kafka)."""
    func = click.option(
        "--timeout",
        type=KAFKA_TIMEOUT,
        default=30.0,
        show_default=True,
        help="seconds to wait for Kafka (0.5-600)",
    )(func)
    func = click.option(
        "--topic-prefix",
        type=TOPIC_PREFIX,
        help="prefix of the topic names (DYNASYNC_KAFKA__TOPIC_PREFIX)",
    )(func)
    return bootstrap_option(func)


# -- output -----------------------------------------------------------------------------------


def write_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (dataclasses as objects)."""
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())


def console(*, stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr), wide enough for ids when not a terminal."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # click's CliRunner swaps sys.stdout; look it up when called, not at import
    wide = None if stream.isatty() else int(os.environ.get("COLUMNS", "0") or 0) or 200
    return Console(file=stream, width=wide, highlight=False, soft_wrap=False)


def print_table(columns: Sequence[str], rows: Iterable[Sequence[str]], *, empty: str) -> None:
    """A table on stdout, or the line ``empty`` when there are no rows."""
    from rich.table import Table

    rows = list(rows)
    if not rows:
        click.echo(empty)
        return
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console().print(table)


def emit(as_json: bool, data: Any, lines: Iterable[str]) -> None:
    """``data`` as JSON, or ``lines`` as text."""
    if as_json:
        write_json(data)
    else:
        for line in lines:
            click.echo(line)


def short(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- running ----------------------------------------------------------------------------------


def run_kafka(
    kafka: KafkaConnection, body: Callable[[], Awaitable[T]], *, timeout_s: float = 10.0
) -> T:
    """Check that the cluster takes ``kafka``'s settings (:func:`check_kafka`, waiting at most
    ``timeout_s`` per server), then run ``body()`` to completion; Kafka, network and config
    failures become one :class:`CommandError` line (a setting that cannot be used: a
    :class:`UsageError`)."""
    from aiokafka.errors import KafkaError

    from connectors.kafka_clients import KafkaAccessError
    from pipeline.config_store import ConfigError

    async def checked() -> T:
        await check_kafka(kafka, timeout_s)
        return await body()

    try:
        return asyncio.run(checked())
    except KafkaAccessError as exc:  # from body: e.g. an OAUTHBEARER token refused
        raise kafka_refusal(exc) from None
    except (ConfigError, LookupError) as exc:
        raise CommandError(str(exc)) from None
    except (KafkaError, TimeoutError, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        raise CommandError(f"cannot use Kafka at {kafka.bootstrap}: {reason}") from None


async def check_kafka(kafka: KafkaConnection, timeout_s: float = 10.0) -> None:
    """Connect once with ``kafka``'s settings (TLS, SASL, a metadata request); a refusal is
    the command's one line (:func:`kafka_refusal`)."""
    from connectors.kafka_clients import KafkaAccessError, KafkaClients

    try:
        await KafkaClients(kafka).check(timeout_s)
    except KafkaAccessError as exc:
        raise kafka_refusal(exc) from None


def kafka_refusal(exc: KafkaAccessError) -> click.ClickException:
    """What a command exits with for ``exc``: a setting that cannot be used (an unreadable or
    world-readable secret file, a bad CA file) is a :class:`UsageError` (exit 2); a cluster
    that refused or did not answer a :class:`CommandError` (exit 1). One line either way."""
    if exc.problem == "config":
        return UsageError(f"Kafka settings: {exc}")
    return CommandError(f"Kafka: {exc}")


# -- lazy command groups ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lazy:
    """A command loaded when it is run: ``module:attribute``, with its help line."""

    target: str
    help: str
    hidden: bool = False


_SHOWN = Lazy("", "")


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when one is run or asked for help; the
    listing in ``--help`` comes from :class:`Lazy` lines, so it imports nothing."""

    def __init__(self, *args: Any, lazy: dict[str, Lazy] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        own = super().list_commands(ctx)
        # all lazy (the root): in the order declared; mixed: alphabetical
        return sorted({*self.lazy, *own}) if own else list(self.lazy)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = self.lazy.get(cmd_name)
        if spec is None:
            return super().get_command(ctx, cmd_name)
        return _load(spec.target)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = [n for n in self.list_commands(ctx) if not self.lazy.get(n, _SHOWN).hidden]
        limit = formatter.width - 6 - max((len(n) for n in names), default=0)
        rows = []
        for name in names:
            spec = self.lazy.get(name)
            cmd = None if spec else super().get_command(ctx, name)
            if spec is not None:
                rows.append((name, spec.help))
            elif cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@functools.cache
def _load(target: str) -> click.Command:
    module, _, attr = target.partition(":")
    command = getattr(importlib.import_module(module), attr)
    if not isinstance(command, click.Command):
        raise TypeError(f"{target} is not a click command")
    return command


def with_config(
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    action: Callable[[ConfigStore], Awaitable[T]],
) -> T:
    """Open the config store (its problems as warnings on stderr), run ``action`` on it."""
    from pipeline.config_store import ConfigStore

    kafka = kafka_settings(bootstrap, topic_prefix)

    async def body() -> T:
        async with ConfigStore(kafka, timeout_s=timeout) as store:
            for problem in store.snapshot.problems:
                click.echo(f"dynasync: warning: config {problem}", err=True)
            return await action(store)

    return run_kafka(kafka, body, timeout_s=timeout)


def checked(record: Any) -> None:
    """``record`` as it would travel, against its JSON Schema (:class:`UsageError` if not)."""
    from schemas.codec import validate
    from schemas.errors import SchemaError

    try:
        validate(type(record), orjson.loads(orjson.dumps(record)))
    except SchemaError as exc:
        raise UsageError(str(exc)) from None


# -- long-running commands --------------------------------------------------------------------

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def log_level_option(func: F) -> F:
    """``--log-level`` (any case), passed as ``log_level`` (None: the settings' level)."""
    return click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        help="log level (default DYNASYNC_LOG_LEVEL or INFO); only DEBUG logs every HTTP request",
    )(func)


def setup_logging(level: str, *, as_json: bool) -> None:
    """The process's logging at ``level``; with ``as_json`` one JSON object per line
    (:class:`pipeline.logs.JsonFormatter`)."""
    from pipeline.logs import configure_logging

    configure_logging(level, fmt="json" if as_json else "text")


# -- secrets ----------------------------------------------------------------------------------

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


def refuse_argv_secret(flag: str, value: str | None, env: str) -> None:
    """:class:`UsageError` if a secret came on the command line (``ps`` shows it); the value
    is never printed."""
    if value is not None:
        raise UsageError(
            f"{flag} is refused: a secret on the command line shows in ps; "
            f"set {env} or pass {flag}-file PATH (mode 0600)"
        )
