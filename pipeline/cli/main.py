"""The ``dynasync`` command: one click group whose command groups live in files named after
them (``org.py``, ``mailbox.py``, ...) and are imported only when run, so every command starts
without loading the others (nor aiokafka, httpx or the connectors until it needs them).

Errors are one line on stderr: a bad argument exits 2 before anything is written, a command
that cannot do its work exits 1.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from pipeline.cli.common import Lazy, LazyGroup, UsageError, load_settings

__all__ = ["COMMANDS", "UsageError", "build_cli", "load_settings", "main"]

#: The commands of ``dynasync``: where each lives and its line in ``--help``. Development
#: commands are hidden from the help but run as any other.
COMMANDS = {
    "org": Lazy("pipeline.cli.org:org", "Dataverse organisations: add, list, edit, remove"),
    "mailbox": Lazy(
        "pipeline.cli.mailbox:mailbox",
        "synchronizing mailboxes: add, import, approve, enable, status, ...",
    ),
    "dlq": Lazy("pipeline.cli.dlq:dlq", "records the pipeline parked: list, replay"),
    "filters": Lazy(
        "pipeline.cli.filters:filters", "sync filters (FetchXML): import, list, show, set, remove"
    ),
    "conflicts": Lazy(
        "pipeline.cli.conflicts:conflicts", "recorded conflicts: list the open ones, resolve"
    ),
    "fields": Lazy("pipeline.cli.fields:fields", "per-field sync directions and policies"),
    "replay": Lazy("pipeline.cli.replay:replay", "publish a topic's records again from a point"),
    "topics": Lazy("pipeline.cli.topics:topics", "the Kafka topics of the catalogue"),
    "resync": Lazy("pipeline.cli.resync:resync", "reconcile a mailbox's two sides, or replay it"),
    "run": Lazy("pipeline.cli.run:run", "run the whole pipeline in this process until SIGTERM"),
    "receiver": Lazy("pipeline.cli.receiver:receiver", "run the Graph webhook receiver on its own"),
    "demo": Lazy(
        "pipeline.cli.demo:demo", "show mailboxes syncing against the emulators and pipeline"
    ),
    "worker": Lazy("pipeline.cli.worker:worker", "(development) run given stages", hidden=True),
    "demo-echo": Lazy(
        "pipeline.cli.demo_echo:demo_echo_command",
        "(development) messages through an echo stage",
        hidden=True,
    ),
}


def build_cli() -> click.Group:
    """The ``dynasync`` group (a new one per call)."""

    @click.group(
        name="dynasync",
        cls=LazyGroup,
        lazy=COMMANDS,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    )
    @click.version_option(
        package_name="dynasync", prog_name="dynasync", message="%(prog)s %(version)s"
    )
    def dynasync() -> None:
        """Outlook <-> Dynamics 365 sync on Apache Kafka.

        Every command takes --json for output a program can read; secrets come from the
        environment (DYNASYNC_*) or from files, never from the command line.
        """

    return dynasync


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dynasync`` console script and ``python -m pipeline.cli``: the
    command's exit status (2: bad arguments, one line on stderr)."""
    cli = build_cli()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(args=args, prog_name="dynasync", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else "", err=True)
        return 2
    except click.UsageError as exc:  # parsing: say where, in one line
        where = exc.ctx.command_path if exc.ctx is not None else "dynasync"
        click.echo(f"{where}: {_one_line(exc.format_message())}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        for line in getattr(exc, "details", ()):
            click.echo(_one_line(line), err=True)
        click.echo(f"dynasync: {_one_line(exc.format_message())}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("dynasync: aborted", err=True)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
