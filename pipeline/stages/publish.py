"""Sending the planner's actions: commands to the writers, change events (CloudEvents binary
mode) to ``events.v1``, conflicts to ``conflicts``, alerts and poison records to ``dlq``.

Sends are not awaited here: each method returns the futures of the records it sent, which the
stage hands to its :class:`pipeline.stages.window.AckWindow` with the event that caused them, so
that event's offset is committed only after they are durable.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import faust
import orjson
from faust.types import ProducerT

from pipeline.plan import Action, Alert, ConflictEntry
from pipeline.settings import Settings
from pipeline.topics import (
    COMMANDS_CRM,
    COMMANDS_OUTLOOK,
    CONFLICTS,
    DLQ,
    EVENTS_V1,
    TopicSpec,
    topic_name,
)
from schemas.codec import dumps, event_to_kafka
from schemas.models import ChangeEvent, WriteCommand

log = logging.getLogger(__name__)

#: Header names of a dlq record.
DLQ_ERROR = "x-dynasync-error"
DLQ_TOPIC = "x-dynasync-topic"
DLQ_PARTITION = "x-dynasync-partition"
DLQ_OFFSET = "x-dynasync-offset"
DLQ_REASON = "x-dynasync-reason"


def dlq_headers(
    topic: str, partition: int, offset: int, reason: str, error: str
) -> list[tuple[str, bytes]]:
    """The headers of a record parked in ``dlq``: why, the error, and where it came from."""
    return [
        (DLQ_REASON, reason.encode()),
        (DLQ_ERROR, error.encode("utf-8", errors="replace")[:4096]),
        (DLQ_TOPIC, topic.encode()),
        (DLQ_PARTITION, str(partition).encode()),
        (DLQ_OFFSET, str(offset).encode()),
    ]


def utc_now() -> str:
    """Now, UTC, seconds precision, as the contracts want it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def topic(app: faust.App, settings: Settings, spec: TopicSpec) -> faust.TopicT:
    """The Faust topic of a catalogue entry, raw bytes both ways."""
    return app.topic(topic_name(spec, settings.kafka), key_type=bytes, value_type=bytes)


@dataclass(frozen=True, slots=True)
class Publisher:
    """The output topics of the engine."""

    commands_crm: faust.TopicT
    commands_outlook: faust.TopicT
    events: faust.TopicT
    conflicts: faust.TopicT
    dlq: faust.TopicT

    @classmethod
    def on(cls, app: faust.App, settings: Settings) -> Publisher:
        """Declare the output topics on ``app``."""
        return cls(
            topic(app, settings, COMMANDS_CRM),
            topic(app, settings, COMMANDS_OUTLOOK),
            topic(app, settings, EVENTS_V1),
            topic(app, settings, CONFLICTS),
            topic(app, settings, DLQ),
        )

    async def emit(self, actions: Iterable[Action]) -> list[Awaitable[object]]:
        """Send every action of a plan, in order; the futures of their acknowledgements."""
        sent: list[Awaitable[object]] = []
        for action in actions:
            if isinstance(action, WriteCommand):
                dst = self.commands_crm if action.target == "crm" else self.commands_outlook
                sent.append(await self.send(dst, action.mailbox_id.encode(), dumps(action)))
            elif isinstance(action, ChangeEvent):
                headers, value = event_to_kafka(action)
                key = action.data.mailbox_id.encode()
                sent.append(await self.send(self.events, key, value, headers))
            elif isinstance(action, ConflictEntry):
                key = action.mailbox_id.encode()
                sent.append(await self.send(self.conflicts, key, action.to_json()))
            elif isinstance(action, Alert):
                log.warning("alert for mailbox %s: %s", action.mailbox_id, action.reason)
                sent.append(
                    await self.send(
                        self.dlq,
                        action.mailbox_id.encode(),
                        orjson.dumps(action),
                        [(DLQ_REASON, b"alert"), (DLQ_ERROR, action.reason.encode()[:4096])],
                    )
                )
        return sent

    async def poison(
        self,
        event: faust.EventT[bytes],
        error: str,
        reason: str = "poison",
        extra: Iterable[tuple[str, bytes]] = (),
    ) -> Awaitable[object]:
        """Park the original record in ``dlq`` with the error and where it came from."""
        msg = event.message
        headers = [*extra, *dlq_headers(str(msg.topic), msg.partition, msg.offset, reason, error)]
        key = msg.key if isinstance(msg.key, bytes) else None
        value = msg.value if isinstance(msg.value, bytes) else b""
        return await self.send(self.dlq, key, value, headers)

    async def send(
        self,
        dst: faust.TopicT,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Awaitable[object]:
        """Hand one record to the app's producer; the future of its acknowledgement.

        Straight to the producer: Faust's ``Topic.send`` path costs several event-loop turns
        per record, more than the send itself.
        """
        producer: ProducerT = await dst.app.maybe_start_producer()
        return await producer.send(dst.get_topic_name(), key, value, None, None, headers)
