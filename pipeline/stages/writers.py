"""The writer stage: ``commands.crm`` / ``commands.outlook`` → a CommandSink → ``outcomes``.

The sink comes from a factory handed to the stage, so tests plug in the in-memory side and
production the Graph / Dataverse writers. A command's offset is committed only once its
outcome is acknowledged by the broker (:class:`pipeline.stages.window.AckWindow`). While a
side is unreachable or throttling, a command to it is retried without limit
(:mod:`pipeline.stages.retry`: its partition waits, order holds, nothing is lost while
offline); each side has its own agent, so writes to the other side go on. Any other error is
retried ``max_attempts`` times, then the command is parked in ``dlq`` for replay.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import faust

from connectors.base import CommandSink
from pipeline.app import Stage
from pipeline.settings import Settings
from pipeline.stages.publish import Publisher, topic
from pipeline.stages.retry import WritePolicy, apply_with_retries
from pipeline.stages.window import AckWindow, WindowSize, manual_acks
from pipeline.topics import COMMANDS_CRM, COMMANDS_OUTLOOK, OUTCOMES, topic_name
from schemas.codec import dumps, loads
from schemas.models import WriteCommand, WriteOutcome
from schemas.types import Side

log = logging.getLogger(__name__)

#: Builds (or looks up) the sink for one side of one mailbox: (target, org_id, mailbox_id).
SinkFactory = Callable[[Side, str, str], CommandSink]


def writers_stage(
    sinks: SinkFactory, policy: WritePolicy | None = None, window: WindowSize | None = None
) -> Stage:
    """The writer stage applying commands through ``sinks`` with ``policy`` (default
    :class:`WritePolicy`)."""
    retries = policy or WritePolicy()
    size = window or WindowSize()

    def register(app: faust.App, settings: Settings) -> None:
        publisher = Publisher.on(app, settings)
        outcomes = topic(app, settings, OUTCOMES)

        async def apply(command: WriteCommand) -> WriteOutcome:
            sink = sinks(command.target, command.org_id, command.mailbox_id)
            return await apply_with_retries(sink, command, retries)

        async def run(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
            manual = manual_acks(stream)
            async with AckWindow(manual, max_events=size.events, max_delay_s=size.delay_s) as held:
                async for event in held.events():
                    try:
                        command = loads(WriteCommand, event.value, check=False)
                        outcome = await apply(command)
                    except Exception as exc:
                        log.warning("command parked on dlq: %s", exc)
                        sent = await publisher.poison(event, f"{type(exc).__name__}: {exc}")
                    else:
                        key = command.mailbox_id.encode()
                        sent = await publisher.send(outcomes, key, dumps(outcome))
                    await held.add(event, [sent])
                    yield None

        # one agent per side: while one side is offline or throttled, the other keeps going
        for name, commands in (
            ("writers-crm", COMMANDS_CRM),
            ("writers-outlook", COMMANDS_OUTLOOK),
        ):
            source = app.topic(
                topic_name(commands, settings.kafka), key_type=bytes, value_type=bytes
            )
            app.agent(source, name=name, concurrency=1)(run)

    return register
