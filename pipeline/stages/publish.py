"""Sending the planner's actions: commands to the writers, change events (CloudEvents binary
mode) to ``events.v1``, conflicts to ``conflicts``, alerts and poison records to ``dlq``.

Sends are not awaited here: each method returns the futures of the records it sent, which the
stage hands back with the record that caused them (:mod:`pipeline.stages.stream`), so that
record's offset is committed only after they are durable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from aiokafka import ConsumerRecord

from pipeline.plan import Action, Alert, ConflictEntry
from pipeline.settings import Settings
from pipeline.topics import (
    COMMANDS_CRM,
    COMMANDS_OUTLOOK,
    CONFLICTS,
    DLQ,
    EVENTS_V1,
    topic_name,
)
from schemas.codec import dumps, event_to_kafka
from schemas.conflicts import ConflictClosed
from schemas.models import ChangeEvent, WriteCommand

log = logging.getLogger(__name__)

#: The projection fields that hold an item's body (mail, appointment, task and contact notes).
BODY_FIELDS = frozenset({"description"})

#: Header names of a dlq record.
DLQ_ERROR = "x-dynasync-error"
DLQ_TOPIC = "x-dynasync-topic"
DLQ_PARTITION = "x-dynasync-partition"
DLQ_OFFSET = "x-dynasync-offset"
DLQ_REASON = "x-dynasync-reason"
#: On a command: when the change that caused it was published (ms since the epoch), so the
#: writer can measure the sync latency.
SOURCE_MS_HEADER = "x-dynasync-source-ms"


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


class Producer(Protocol):
    """What the publisher needs of a producer (aiokafka's ``AIOKafkaProducer``)."""

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]: ...


@dataclass(frozen=True, slots=True)
class Publisher:
    """The output topics of the engine, over one producer."""

    producer: Producer
    commands_crm: str
    commands_outlook: str
    events: str
    conflicts: str
    dlq: str
    omit_from_events: frozenset[str] = frozenset()
    """Fields left out of ``events.v1`` (bodies, when ``privacy.event_bodies`` is off)."""

    @classmethod
    def over(cls, producer: Producer, settings: Settings) -> Publisher:
        """The catalogue's output topics (with the configured prefix) over ``producer``."""
        kafka = settings.kafka
        return cls(
            producer,
            topic_name(COMMANDS_CRM, kafka),
            topic_name(COMMANDS_OUTLOOK, kafka),
            topic_name(EVENTS_V1, kafka),
            topic_name(CONFLICTS, kafka),
            topic_name(DLQ, kafka),
            frozenset() if settings.privacy.event_bodies else BODY_FIELDS,
        )

    def _public(self, event: ChangeEvent) -> ChangeEvent:
        """``event`` without the fields the feed must not carry."""
        fields = event.data.fields
        if not self.omit_from_events or not self.omit_from_events & fields.keys():
            return event
        kept = {k: v for k, v in fields.items() if k not in self.omit_from_events}
        return replace(event, data=replace(event.data, fields=kept))

    async def emit(
        self, actions: Iterable[Action], *, source_ms: int | None = None
    ) -> list[asyncio.Future[Any]]:
        """Send every action of a plan, in order; the futures of their acknowledgements.
        Commands carry ``source_ms`` (when their change was published), if given."""
        sent: list[asyncio.Future[Any]] = []
        stamp = [(SOURCE_MS_HEADER, str(source_ms).encode())] if source_ms else None
        for action in actions:
            if isinstance(action, WriteCommand):
                dst = self.commands_crm if action.target == "crm" else self.commands_outlook
                key = action.mailbox_id.encode()
                sent.append(await self.send(dst, key, dumps(action), stamp))
            elif isinstance(action, ChangeEvent):
                headers, value = event_to_kafka(self._public(action))
                key = action.data.mailbox_id.encode()
                sent.append(await self.send(self.events, key, value, headers))
            elif isinstance(action, ConflictEntry | ConflictClosed):
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
        record: ConsumerRecord[bytes, bytes],
        error: str,
        reason: str = "poison",
        extra: Iterable[tuple[str, bytes]] = (),
    ) -> asyncio.Future[Any]:
        """Park the original record in ``dlq`` with the error and where it came from."""
        headers = [
            *extra,
            *dlq_headers(record.topic, record.partition, record.offset, reason, error),
        ]
        key = record.key if isinstance(record.key, bytes) else None
        value = record.value if isinstance(record.value, bytes) else b""
        return await self.send(self.dlq, key, value, headers)

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        """Hand one record to the producer; the future of its acknowledgement."""
        return await self.producer.send(topic, value, key=key, headers=headers)
