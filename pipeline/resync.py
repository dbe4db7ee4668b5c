"""``dynasync resync``: run a mailbox's resync from the command line. The I/O around
:mod:`pipeline.reconcile`.

``--full`` lists both sides with the readers' own full passes (every Outlook stream of the
mailbox; every CRM table of its organisation, kept to the rows its filters hold, as the fan-out
would), matches them (:func:`pipeline.reconcile.match`) and hands the result to the engine on
the mailbox's own partition, so it lands in the engine's link table in order with the mailbox's
changes: a matched pair as a ``link`` control record on ``changes.crm``; an item of a known pair
or without a counterpart as a change again (``origin: replay``) on its side's topic, which the
engine drops if it has seen it and plans as any change if not. A mailbox that is not enabled
yet (a takeover before ``mailbox enable``) gets its links only: its first sync does the rest.

``--since TIME`` replays the mailbox's records on ``changes.outlook`` and ``changes.crm`` from
``TIME`` (the broker's offsets for that time): what the engine has seen it drops.

Either way the command then waits until the engine's consumer group has committed past every
record it sent (the records' effects are durable by then), reporting progress as it goes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata

from connectors.base import ChangeSource
from connectors.dataverse.reader import DataverseChangeSource
from connectors.graph.reader import GraphDeltaSource, mailbox_streams
from connectors.kafka_clients import KafkaClients
from pipeline.config_store import ConfigSnapshot
from pipeline.fanout_rules import MailboxFilters, fan_out
from pipeline.reconcile import Create, Leave, Link, Update, key_text, match
from pipeline.settings import Settings
from pipeline.sinks import Connections
from pipeline.stages.fanout import StaticDirectory
from pipeline.stages.guard import CONTROL_HEADER
from pipeline.topics import CHANGES_CRM, CHANGES_OUTLOOK, topic_name
from schemas.codec import dumps
from schemas.models import ItemChange, Mailbox
from schemas.resync import LINK_CONTROL, LinkProposal, encode_proposal
from schemas.token import TrackingTokenFormat
from schemas.types import CRM_TABLES

Progress = Callable[[str, int, int | None], None]
"""``(phase, done, total)``: listing outlook / listing crm / sending / engine."""

Mode = Literal["full", "since"]


class ResyncError(RuntimeError):
    """The resync could not finish (the engine did not catch up in time)."""


@dataclass(frozen=True, slots=True)
class ResyncReport:
    """What one resync did."""

    mailbox_id: str
    mode: Mode
    resync_id: str
    enabled: bool
    outlook_items: int = 0
    crm_items: int = 0
    links: int = 0
    updates: int = 0
    creates: int = 0
    left: int = 0
    sent: int = 0
    handled: int = 0
    seconds: float = 0.0


def _quiet(phase: str, done: int, total: int | None) -> None:
    return None


async def _drain(
    source: ChangeSource, into: list[ItemChange], progress: Progress, phase: str
) -> None:
    async for batch in source.read(None):
        into.extend(c for c in batch.changes if c.op == "upsert")
        progress(phase, len(into), None)


async def list_outlook(
    connections: Connections, mailbox: Mailbox, snapshot: ConfigSnapshot, progress: Progress
) -> list[ItemChange]:
    """Every item of the mailbox's synced streams, as its reader's full pass sees them."""
    transport = connections.transport
    org = snapshot.organisations.get(mailbox.org_id)
    token = TrackingTokenFormat(org.token_prefix) if org is not None else TrackingTokenFormat()
    streams = await mailbox_streams(
        transport,
        mailbox.mailbox_id,
        tracked_folders=tuple(f.folder_id for f in mailbox.tracked_folders),
    )
    items: list[ItemChange] = []
    for stream in streams:
        source = GraphDeltaSource(
            transport,
            stream,
            org_id=mailbox.org_id,
            groups=frozenset(mailbox.field_groups),
            owner_address=mailbox.upn,
            token_format=token,
        )
        await _drain(source, items, progress, "listing outlook")
    return items


async def list_crm(
    connections: Connections, mailbox: Mailbox, snapshot: ConfigSnapshot, progress: Progress
) -> list[ItemChange]:
    """The rows of the mailbox's organisation its filters hold (as the fan-out routes them,
    whether or not the mailbox is enabled yet)."""
    client = await connections.dataverse(mailbox.org_id)
    target = replace(mailbox, status="enabled")
    directory = StaticDirectory((target,), tuple(snapshot.filters.values()))
    now = datetime.now(UTC)
    held: list[ItemChange] = []
    seen = 0
    for table in CRM_TABLES:
        rows: list[ItemChange] = []
        source = DataverseChangeSource(client, org_id=mailbox.org_id, table=table)
        await _drain(source, rows, _quiet, "listing crm")
        filters = MailboxFilters(target, tuple(directory.filters_for(mailbox.mailbox_id, table)))
        for row in rows:
            routed = fan_out(row, (filters,), frozenset(), now)
            held.extend(d.change for d in routed.deliveries if not d.left_filter)
        seen += len(rows)
        progress("listing crm", seen, None)
    return held


class _Sender:
    """Sends records keyed by the mailbox and remembers the last offset per partition."""

    def __init__(self, producer: AIOKafkaProducer, mailbox_id: str) -> None:
        self._producer = producer
        self._key = mailbox_id.encode()
        self._futures: list[asyncio.Future[RecordMetadata]] = []
        self.last: dict[TopicPartition, int] = {}
        self.first: dict[TopicPartition, int] = {}

    async def send(
        self, topic: str, value: bytes, headers: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        future = await self._producer.send(topic, value, key=self._key, headers=list(headers))
        self._futures.append(future)

    async def flush(self) -> int:
        for metadata in await asyncio.gather(*self._futures):
            tp = TopicPartition(metadata.topic, metadata.partition)
            offset = metadata.offset
            self.last[tp] = max(self.last.get(tp, -1), offset)
            self.first[tp] = min(self.first.get(tp, offset), offset)
        sent = len(self._futures)
        self._futures = []
        return sent


async def wait_for_engine(
    clients: KafkaClients,
    group: str,
    sender: _Sender,
    progress: Progress,
    *,
    timeout_s: float,
    poll_s: float = 0.5,
) -> int:
    """Wait until ``group`` has committed past every record ``sender`` sent; how many it has."""
    total = sum(sender.last[tp] - sender.first[tp] + 1 for tp in sender.last)
    if not total:
        return 0
    admin = clients.admin()
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            offsets = await admin.list_consumer_group_offsets(group, partitions=list(sender.last))
            done = 0
            for tp, last in sender.last.items():
                meta = offsets.get(tp)
                committed = meta.offset if meta is not None else -1
                done += max(0, min(committed, last + 1) - sender.first[tp])
            progress("engine", done, total)
            if done >= total:
                return done
            if time.monotonic() > deadline:
                raise ResyncError(
                    f"the engine handled {done} of the {total} records sent in {timeout_s:g} s "
                    "(is `dynasync run` running?)"
                )
            await asyncio.sleep(poll_s)
    finally:
        await admin.close()


async def full_resync(
    settings: Settings,
    snapshot: ConfigSnapshot,
    mailbox: Mailbox,
    *,
    progress: Progress = _quiet,
    wait_s: float = 600.0,
) -> ResyncReport:
    """List, match, hand over, wait (module docstring)."""
    started = time.monotonic()
    resync_id = uuid.uuid4().hex
    enabled = mailbox.status == "enabled"
    async with Connections(settings.graph, settings.dataverse, snapshot.organisations) as conn:
        outlook = await list_outlook(conn, mailbox, snapshot, progress)
        crm = await list_crm(conn, mailbox, snapshot, progress)
    kafka = settings.kafka
    clients = KafkaClients(kafka)
    topics = {"outlook": topic_name(CHANGES_OUTLOOK, kafka), "crm": topic_name(CHANGES_CRM, kafka)}
    counts = {"links": 0, "updates": 0, "creates": 0, "left": 0}
    producer = clients.producer(acks="all", linger_ms=20)
    await producer.start()
    try:
        sender = _Sender(producer, mailbox.mailbox_id)
        actions = list(match(outlook, crm, mailbox_id=mailbox.mailbox_id, org_id=mailbox.org_id))
        for n, action in enumerate(actions, 1):
            if isinstance(action, Link):
                counts["links"] += 1
                proposal = LinkProposal(
                    mailbox.mailbox_id, resync_id, key_text(action.key), action.outlook, action.crm
                )
                await sender.send(
                    topics["crm"], encode_proposal(proposal), [(CONTROL_HEADER, LINK_CONTROL)]
                )
            elif isinstance(action, Leave) or not enabled:
                counts["left"] += 1
            else:
                counts["updates" if isinstance(action, Update) else "creates"] += 1
                assert isinstance(action, (Update, Create))
                change = replace(action.change, origin="replay")
                await sender.send(topics[change.side], dumps(change))
            if n % 500 == 0:
                progress("sending", n, len(actions))
        sent = await sender.flush()
        progress("sending", len(actions), len(actions))
    finally:
        await producer.stop()
    handled = await wait_for_engine(
        clients, f"{settings.app_id}-engine", sender, progress, timeout_s=wait_s
    )
    return ResyncReport(
        mailbox_id=mailbox.mailbox_id,
        mode="full",
        resync_id=resync_id,
        enabled=enabled,
        outlook_items=len(outlook),
        crm_items=len(crm),
        sent=sent,
        handled=handled,
        seconds=round(time.monotonic() - started, 2),
        **counts,
    )


async def replay_since(
    settings: Settings,
    mailbox: Mailbox,
    since: datetime,
    *,
    progress: Progress = _quiet,
    wait_s: float = 600.0,
) -> ResyncReport:
    """Send the mailbox's change records since ``since`` again (control records excepted)."""
    started = time.monotonic()
    kafka = settings.kafka
    clients = KafkaClients(kafka)
    key = mailbox.mailbox_id.encode()
    at_ms = int(since.timestamp() * 1000)
    consumer = clients.consumer(enable_auto_commit=False, auto_offset_reset="earliest")
    producer = clients.producer(acks="all", linger_ms=20)
    await consumer.start()
    await producer.start()
    sender = _Sender(producer, mailbox.mailbox_id)
    counts = {"outlook": 0, "crm": 0}
    try:
        for side, base in (("outlook", CHANGES_OUTLOOK), ("crm", CHANGES_CRM)):
            name = topic_name(base, kafka)
            parts = [TopicPartition(name, p) for p in consumer.partitions_for_topic(name) or ()]
            if not parts:
                await consumer.topics()
                parts = [TopicPartition(name, p) for p in consumer.partitions_for_topic(name) or ()]
            consumer.assign(parts)
            starts = await consumer.offsets_for_times(dict.fromkeys(parts, at_ms))
            ends = await consumer.end_offsets(parts)
            for tp in parts:
                found = starts.get(tp)
                if found is None or found.offset >= ends[tp]:
                    continue
                consumer.seek(tp, found.offset)
                while await consumer.position(tp) < ends[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    for record in batch.get(tp, ()):
                        if record.offset >= ends[tp]:
                            break
                        headers = dict(record.headers or ())
                        if record.key != key or CONTROL_HEADER in headers:
                            continue
                        await sender.send(name, record.value or b"")
                        counts[side] += 1
                    progress("sending", counts["outlook"] + counts["crm"], None)
        sent = await sender.flush()
    finally:
        await producer.stop()
        await consumer.stop()
    handled = await wait_for_engine(
        clients, f"{settings.app_id}-engine", sender, progress, timeout_s=wait_s
    )
    return ResyncReport(
        mailbox_id=mailbox.mailbox_id,
        mode="since",
        resync_id=uuid.uuid4().hex,
        enabled=mailbox.status == "enabled",
        outlook_items=counts["outlook"],
        crm_items=counts["crm"],
        updates=sent,
        sent=sent,
        handled=handled,
        seconds=round(time.monotonic() - started, 2),
    )
