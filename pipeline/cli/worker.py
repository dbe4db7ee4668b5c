"""``dynasync worker`` (development, hidden from the help): run given stages against the
broker until SIGTERM / SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING, Any

import click

from pipeline.cli.common import (
    bootstrap_option,
    check_kafka,
    json_option,
    load_settings,
    setup_logging,
)

if TYPE_CHECKING:
    from pipeline.app import Stage


def parse_stage(text: str) -> Stage:
    """``echo:<source-topic>:<sink-topic>``; ValueError otherwise."""
    kind, _, rest = text.partition(":")
    if kind == "echo":
        source, _, sink = rest.partition(":")
        if not source or not sink:
            raise ValueError("echo stage wants echo:<source-topic>:<sink-topic>")
        from pipeline.stages.echo import echo_stage

        return echo_stage(source, sink)
    raise ValueError(f"unknown stage {text!r} (known: echo:<src>:<dst>)")


def _stages(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[Any]:
    try:
        return [parse_stage(v) for v in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@click.command(name="worker", hidden=True)
@bootstrap_option
@click.option("--stage", "stages", multiple=True, callback=_stages, help="echo:<src>:<dst>")
@json_option
def worker(bootstrap: str | None, stages: list[Stage], as_json: bool) -> int:
    """(development) Run a worker with the given stages (--json: log lines as JSON)."""
    from pipeline.app import build_app

    settings = load_settings({"kafka": {"bootstrap": bootstrap}})
    setup_logging(settings.log_level.upper(), as_json=as_json)
    app = build_app(settings, stages)

    async def serve() -> None:
        await check_kafka(settings.kafka)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with app:
            while not stop.is_set() and not app.crashed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)

    asyncio.run(serve())
    return 1 if app.crashed else 0
