"""The recent tail of ``conflicts`` and of the alerts on ``dlq``, for the status page, and
how many records each topic holds, for the metrics.

Every worker follows both topics whole (no consumer group), starting ``keep`` records before
their ends, so any worker's page shows every mailbox's recent conflicts and alerts. Records are
validated here: one that does not parse is counted in ``unreadable`` and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.kafka_clients import KafkaClients, KafkaConnection, stop_consumer
from pipeline.dlq import parse_record, topic_partitions

log = logging.getLogger(__name__)

#: Longest text kept of one field of a record (a reason, an error).
MAX_TEXT = 500


@dataclass(frozen=True, slots=True)
class ConflictView:
    """One recorded conflict, without the field values (they may be mail bodies)."""

    mailbox_id: str
    kind: str
    field: str
    policy: str
    winner: str
    decided_at: str


@dataclass(frozen=True, slots=True)
class AlertView:
    """One alert (``dlq`` record with reason ``alert``)."""

    mailbox_id: str
    reason: str
    at: str


def _text(value: object, limit: int = MAX_TEXT) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def parse_conflict(raw: bytes | None) -> ConflictView | None:
    """A conflict from its ``conflicts`` record (None: not one)."""
    try:
        data: Any = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    texts = [_text(data.get(k)) for k in ("mailbox_id", "kind", "field", "policy", "decided_at")]
    mailbox_id, kind, field, policy, decided_at = texts
    if mailbox_id is None or kind is None or field is None or policy is None:
        return None
    winner = data.get("winner")
    return ConflictView(
        mailbox_id,
        kind,
        field,
        policy,
        _text(winner) or ("none" if winner is None else "?"),
        decided_at or "",
    )


def _stamp(ms: object) -> str:
    if not isinstance(ms, int) or not 0 < ms < 2**53:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RecentFeed:
    """Follows ``conflicts`` and ``dlq``; ``start()``/``stop()``."""

    def __init__(
        self,
        kafka: KafkaConnection | str,
        conflicts_topic: str,
        dlq_topic: str,
        *,
        keep: int = 50,
    ) -> None:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        self._kafka = kafka
        self._clients = KafkaClients(kafka)
        self._conflicts_topic = conflicts_topic
        self._dlq_topic = dlq_topic
        self._keep = keep
        self.conflicts: deque[ConflictView] = deque(maxlen=keep)
        self.alerts: deque[AlertView] = deque(maxlen=keep)
        self.parked: Counter[str] = Counter()
        """Records parked on ``dlq`` per mailbox, among those read (alerts not counted)."""
        self.unreadable = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Assign every partition of both topics, from ``keep`` records before their ends."""
        consumer = self._clients.consumer(enable_auto_commit=False, group_id=None)
        await consumer.start()
        self._consumer = consumer
        try:
            tps = [
                TopicPartition(topic, p)
                for topic in (self._conflicts_topic, self._dlq_topic)
                for p in await topic_partitions(self._kafka, topic)
            ]
            consumer.assign(tps)
            begins = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                consumer.seek(tp, max(begins[tp], ends[tp] - self._keep))
        except BaseException:
            await self.stop()
            raise
        self._task = asyncio.create_task(self._follow(consumer), name="recent-feed")

    async def stop(self) -> None:
        """Stop following."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await stop_consumer(consumer)

    async def sizes(self) -> dict[str, int]:
        """Records held by each topic (``conflicts``, ``dlq``): end minus beginning offsets
        over its partitions; empty when not started."""
        consumer = self._consumer
        if consumer is None:
            return {}
        tps = list(consumer.assignment())
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        out = {"conflicts": 0, "dlq": 0}
        for tp in tps:
            name = "conflicts" if tp.topic == self._conflicts_topic else "dlq"
            out[name] += max(0, ends[tp] - begins[tp])
        return out

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker away: try again, the page shows what it has
                log.warning("recent feed: %s", exc)
                await asyncio.sleep(5)
                continue
            for tp, records in batch.items():
                for record in records:
                    self.take(tp.topic, record)

    def take(self, topic: str, record: Any) -> None:
        """One record of either topic (anything else is ignored)."""
        if topic == self._conflicts_topic:
            conflict = parse_conflict(record.value)
            if conflict is None:
                self.unreadable += 1
            else:
                self.conflicts.append(conflict)
        elif topic == self._dlq_topic:
            try:
                parked = parse_record(
                    record.partition, record.offset, record.key, record.value, record.headers
                )
            except Exception:
                self.unreadable += 1
                return
            if parked.reason == "alert":
                self.alerts.append(
                    AlertView(
                        parked.mailbox_id[:MAX_TEXT],
                        parked.error[:MAX_TEXT],
                        _stamp(record.timestamp),
                    )
                )
            else:
                self.parked[parked.mailbox_id[:MAX_TEXT]] += 1
