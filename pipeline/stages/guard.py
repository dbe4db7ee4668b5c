"""The mass-delete guard: a mailbox whose side suddenly reports most of its linked items
deleted is paused (its changes parked, not applied) with an alert, until an operator resumes it.

The check is pure: the engine keeps one :class:`GuardState` per mailbox (with the mailbox's
live linked pairs per side) and asks :func:`check` per change. Parked changes go to ``dlq``
with reason ``paused`` and the pause's id; :func:`resume_mailbox` lifts the pause and replays
them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, TypeAlias

import orjson
from aiokafka import TopicPartition

from connectors.kafka_clients import KafkaClients, stop_consumer
from pipeline.settings import KafkaSettings
from pipeline.stages.publish import DLQ_REASON, DLQ_TOPIC
from pipeline.topics import CHANGES_CRM, CHANGES_OUTLOOK, DLQ, topic_name
from schemas.types import Side

#: Header of a control record on ``changes.*`` (value: the command, e.g. ``resume``).
CONTROL_HEADER: Final = "x-dynasync-control"
#: Header of a parked record: the id of the pause that parked it.
PAUSE_HEADER: Final = "x-dynasync-pause"

Verdict: TypeAlias = Literal["apply", "pause", "parked"]


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    """Pause when more than ``ratio`` of the linked items (and at least ``min_count``) of one
    side are deleted within ``window_s`` seconds."""

    ratio: float = 0.5
    min_count: int = 10
    window_s: float = 300.0

    def __post_init__(self) -> None:
        if not 0 < self.ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {self.ratio}")
        if self.min_count < 1 or self.window_s <= 0:
            raise ValueError("min_count must be >= 1 and window_s > 0")


@dataclass(frozen=True, slots=True)
class GuardState:
    """Deletes counted per side in the current window, and whether the mailbox is paused."""

    paused: bool = False
    window_start: float = 0.0
    outlook_deletes: int = 0
    crm_deletes: int = 0
    linked_outlook: int = 0
    linked_crm: int = 0
    pause_id: str = ""

    def linked(self, side: Side) -> int:
        """Live linked pairs with an item on ``side``."""
        return self.linked_outlook if side == "outlook" else self.linked_crm

    def deletes(self, side: Side) -> int:
        """Deletes of ``side`` counted in the current window."""
        return self.outlook_deletes if side == "outlook" else self.crm_deletes

    def count_links(self, outlook: int, crm: int) -> GuardState:
        """A copy with the linked counts moved by ``outlook`` / ``crm``."""
        return replace(
            self,
            linked_outlook=max(0, self.linked_outlook + outlook),
            linked_crm=max(0, self.linked_crm + crm),
        )

    def encode(self) -> bytes:
        """orjson bytes of the state."""
        return orjson.dumps(self)

    @classmethod
    def decode(cls, raw: bytes | None) -> GuardState:
        """The state from :meth:`encode` bytes (None: a fresh state); ValueError if garbage."""
        if raw is None:
            return cls()
        try:
            data: Any = orjson.loads(raw)
            return cls(**data)
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"not a guard state: {exc}") from None


def check(
    policy: GuardPolicy, state: GuardState, side: Side, is_delete: bool, linked: int, now_s: float
) -> tuple[GuardState, Verdict]:
    """Count a change of ``side`` against a mailbox with ``linked`` live pairs (the population
    the window's deletes come from)."""
    if state.paused:
        return state, "parked"
    if not is_delete:
        return state, "apply"
    if now_s - state.window_start > policy.window_s:
        state = replace(state, window_start=now_s, outlook_deletes=0, crm_deletes=0)
    if side == "outlook":
        state = replace(state, outlook_deletes=state.outlook_deletes + 1)
        count = state.outlook_deletes
    else:
        state = replace(state, crm_deletes=state.crm_deletes + 1)
        count = state.crm_deletes
    if count >= policy.min_count and count > policy.ratio * max(linked, 1):
        return replace(state, paused=True), "pause"
    return state, "apply"


def resume(state: GuardState) -> GuardState:
    """Lift a pause (the operator's decision); the window starts afresh, links stay counted."""
    return GuardState(linked_outlook=state.linked_outlook, linked_crm=state.linked_crm)


@dataclass(frozen=True, slots=True)
class Parked:
    """A record parked by a pause, as read back from ``dlq``."""

    topic: str
    key: bytes
    value: bytes
    pause_id: str


async def read_parked(
    kafka: KafkaSettings, mailbox_id: str, *, timeout_s: float = 30.0
) -> list[Parked]:
    """The records parked by ``mailbox_id``'s latest pause, in the order they were parked."""
    dlq = topic_name(DLQ, kafka)
    consumer = KafkaClients(kafka).consumer(enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    parked: list[Parked] = []
    try:
        parts = await _partitions(kafka, dlq)
        tps = [TopicPartition(dlq, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        deadline = asyncio.get_running_loop().time() + timeout_s
        pending = {tp for tp in tps if ends[tp] > await consumer.position(tp)}
        while pending:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"timed out reading {dlq}")
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    headers = dict(rec.headers or ())
                    if rec.key != mailbox_id.encode() or headers.get(DLQ_REASON) != b"paused":
                        continue
                    parked.append(
                        Parked(
                            headers.get(DLQ_TOPIC, b"").decode(),
                            rec.key,
                            rec.value or b"",
                            headers.get(PAUSE_HEADER, b"").decode(),
                        )
                    )
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await stop_consumer(consumer)
    if not parked:
        return []
    latest = parked[-1].pause_id
    return [p for p in parked if p.pause_id == latest]


async def resume_mailbox(kafka: KafkaSettings, mailbox_id: str, *, timeout_s: float = 30.0) -> int:
    """Lift ``mailbox_id``'s pause and replay what it parked; returns how many were replayed.

    A ``resume`` control record goes to both change topics (so each topic's replays are read
    after it), then every parked record of the latest pause goes back to its original topic.
    """
    parked = await read_parked(kafka, mailbox_id, timeout_s=timeout_s)
    changes = (topic_name(CHANGES_OUTLOOK, kafka), topic_name(CHANGES_CRM, kafka))
    producer = KafkaClients(kafka).producer(acks="all")
    await producer.start()
    try:
        for name in changes:
            await producer.send_and_wait(
                name, b"", key=mailbox_id.encode(), headers=[(CONTROL_HEADER, b"resume")]
            )
        for record in parked:
            if record.topic not in changes:
                continue
            await producer.send_and_wait(record.topic, record.value, key=record.key)
    finally:
        await producer.stop()
    return sum(1 for p in parked if p.topic in changes)


async def _partitions(kafka: KafkaSettings, name: str) -> list[int]:
    admin = KafkaClients(kafka).admin()
    await admin.start()
    try:
        (meta,) = await admin.describe_topics([name])
    finally:
        await admin.close()
    if meta.get("error_code", 0) != 0 or not meta.get("partitions"):
        raise LookupError(f"topic {name} does not exist")
    return sorted(int(p["partition"]) for p in meta["partitions"])
