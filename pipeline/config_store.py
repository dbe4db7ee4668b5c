"""The configuration store: organisations, mailboxes, filters and directions on the compacted
``config`` topic, read into an in-memory snapshot and written with invariant checks.

Keys: ``organisation:<org_id>``, ``mailbox:<mailbox_id>``, ``filter:<filter_id>``,
``directions:<org_id>:<kind>``. A ``None`` value (tombstone) deletes a key.

Invariants checked on write: one mailbox ↔ one CRM user ↔ one organisation, on normalised
identities: no two mailboxes name one Graph mailbox (UPN, SMTP address or an address-shaped
mailbox id compared case-insensitively; Graph user object ids as GUIDs) and no two share one
CRM user (systemuserid as a GUID, in one organisation: one Dataverse URL); and every record's
organisation (and a filter's mailbox) exists. Concurrency: the check runs against this
process's snapshot, so two writers racing can both pass it. ``load()`` therefore re-checks the
whole topic and reports every clash in ``ConfigSnapshot.problems``; the engine must refuse a
mailbox named in a clash, and the runtime does not read it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from connectors.kafka_clients import KafkaClients, stop_consumer
from pipeline.settings import KafkaSettings
from pipeline.topics import CONFIG, topic_name
from schemas.codec import dumps, loads
from schemas.errors import SchemaError
from schemas.models import ConfigRecord, FieldDirections, FilterRecord, Mailbox, Organisation

_MODELS: dict[str, type[Any]] = {
    "organisation": Organisation,
    "mailbox": Mailbox,
    "filter": FilterRecord,
    "field_directions": FieldDirections,
}


class ConfigError(Exception):
    """A configuration write that would break an invariant, or an unusable config topic."""


def config_key(record: ConfigRecord) -> str:
    """The compaction key of ``record`` on the config topic."""
    if isinstance(record, Organisation):
        return f"organisation:{record.org_id}"
    if isinstance(record, Mailbox):
        return f"mailbox:{record.mailbox_id}"
    if isinstance(record, FilterRecord):
        return f"filter:{record.filter_id}"
    return f"directions:{record.org_id}:{record.kind}"


def decode_record(key: str, raw: bytes) -> ConfigRecord:
    """Decode and validate one config value; its ``record_type`` picks the model and the
    record must belong under ``key``. Raises SchemaError otherwise."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SchemaError("ConfigRecord", "", f"not valid JSON: {exc}") from None
    kind = data.get("record_type") if isinstance(data, dict) else None
    model = _MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise SchemaError("ConfigRecord", "record_type", f"unknown record_type {kind!r}")
    record: ConfigRecord = loads(model, raw)
    if config_key(record) != key:
        raise SchemaError(
            model.__name__, "", f"record belongs under key {config_key(record)!r}, not {key!r}"
        )
    return record


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """A record of the config topic that could not be used, or an invariant clash."""

    key: str
    reason: str
    partition: int | None = None
    offset: int | None = None

    def __str__(self) -> str:
        if self.offset is None:
            return f"{self.key}: {self.reason}"
        where = f" (partition {self.partition}, offset {self.offset})"
        return f"{self.key}{where}: {self.reason}"


@dataclass(slots=True)
class ConfigSnapshot:
    """Every live config record by kind, plus what was wrong with the topic."""

    organisations: dict[str, Organisation] = field(default_factory=dict)
    mailboxes: dict[str, Mailbox] = field(default_factory=dict)
    filters: dict[str, FilterRecord] = field(default_factory=dict)
    directions: dict[tuple[str, str], FieldDirections] = field(default_factory=dict)
    problems: list[ConfigProblem] = field(default_factory=list)
    revision: int = field(default=0, compare=False)
    """Bumped by every ``apply`` and ``remove``: views built from the snapshot tell by it
    whether they are stale."""
    _claims: dict[str, dict[str, Mailbox]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    """Identity key (:func:`claim_keys`) → the mailboxes claiming it, by id: built on the
    first :meth:`check` and kept up to date by ``apply``/``remove``, so checking one more
    mailbox of an organisation of thousands costs a few lookups, not a pass over all."""

    def apply(self, record: ConfigRecord) -> None:
        """Insert or replace ``record``."""
        self.revision += 1
        if isinstance(record, Organisation):
            self.organisations[record.org_id] = record
            self._claims = None  # an organisation's URL is part of its users' identities
        elif isinstance(record, Mailbox):
            self._unclaim(self.mailboxes.get(record.mailbox_id))
            self.mailboxes[record.mailbox_id] = record
            self._claim(record)
        elif isinstance(record, FilterRecord):
            self.filters[record.filter_id] = record
        else:
            self.directions[(record.org_id, record.kind)] = record

    def remove(self, key: str) -> bool:
        """Drop the record under ``key``; False if there was none."""
        self.revision += 1
        kind, _, rest = key.partition(":")
        if kind == "organisation":
            self._claims = None
            return self.organisations.pop(rest, None) is not None
        if kind == "mailbox":
            gone = self.mailboxes.pop(rest, None)
            self._unclaim(gone)
            return gone is not None
        if kind == "filter":
            return self.filters.pop(rest, None) is not None
        if kind == "directions":
            org, _, what = rest.rpartition(":")
            return self.directions.pop((org, what), None) is not None
        return False

    def _claim_index(self) -> dict[str, dict[str, Mailbox]]:
        if self._claims is None:
            self._claims = {}
            for mailbox in self.mailboxes.values():
                self._claim(mailbox)
        return self._claims

    def _claim(self, mailbox: Mailbox) -> None:
        if self._claims is not None:
            for key in claim_keys(mailbox, org_identity(self.organisations)):
                self._claims.setdefault(key, {})[mailbox.mailbox_id] = mailbox

    def _unclaim(self, mailbox: Mailbox | None) -> None:
        if self._claims is None or mailbox is None:
            return
        for key in claim_keys(mailbox, org_identity(self.organisations)):
            holders = self._claims.get(key)
            if holders is not None:
                holders.pop(mailbox.mailbox_id, None)
                if not holders:
                    del self._claims[key]

    def copy(self, *, problems: int | None = None) -> ConfigSnapshot:
        """A new snapshot with the same records (and the first ``problems`` problems, or all)."""
        kept = self.problems if problems is None else self.problems[:problems]
        return ConfigSnapshot(
            dict(self.organisations),
            dict(self.mailboxes),
            dict(self.filters),
            dict(self.directions),
            list(kept),
            self.revision,
        )

    def get(self, key: str) -> ConfigRecord | None:
        """The record under ``key``, if any."""
        kind, _, rest = key.partition(":")
        if kind == "organisation":
            return self.organisations.get(rest)
        if kind == "mailbox":
            return self.mailboxes.get(rest)
        if kind == "filter":
            return self.filters.get(rest)
        if kind == "directions":
            org, _, what = rest.rpartition(":")
            return self.directions.get((org, what))
        return None

    def check(self, record: ConfigRecord) -> None:
        """Raise ConfigError if writing ``record`` would break an invariant."""
        if isinstance(record, Organisation):
            return
        if record.org_id not in self.organisations:
            raise ConfigError(
                f"organisation {record.org_id!r} does not exist (add it with: dynasync org add)"
            )
        if (
            isinstance(record, FilterRecord)
            and record.mailbox_id is not None
            and record.mailbox_id not in self.mailboxes
        ):
            raise ConfigError(f"mailbox {record.mailbox_id!r} does not exist")
        if isinstance(record, Mailbox):
            org_key = org_identity(self.organisations)
            claims = self._claim_index()
            holders = {
                m.mailbox_id: m
                for key in claim_keys(record, org_key)
                for m in claims.get(key, {}).values()
            }
            clash = mailbox_clash(record, holders.values(), org_key) if holders else None
            if clash:
                raise ConfigError(clash)

    def check_delete(self, key: str) -> None:
        """Raise ConfigError if deleting ``key`` would orphan other records."""
        kind, _, org = key.partition(":")
        if kind != "organisation":
            return
        users = sorted(m.mailbox_id for m in self.mailboxes.values() if m.org_id == org)
        if users:
            raise ConfigError(f"organisation {org!r} still has mailboxes: {', '.join(users)}")

    def clashes(self) -> list[ConfigProblem]:
        """Invariant violations among the loaded mailboxes (left by racing writers, or by
        records written before identities were normalised): the first of two mailboxes in id
        order keeps its identities, the other is named."""
        org_key = org_identity(self.organisations)
        found: list[ConfigProblem] = []
        claimed: dict[str, Mailbox] = {}
        for mailbox in sorted(self.mailboxes.values(), key=lambda m: m.mailbox_id):
            keys = claim_keys(mailbox, org_key)
            holders = [claimed[k] for k in keys if k in claimed]
            clash = mailbox_clash(mailbox, holders, org_key) if holders else None
            if clash:
                found.append(ConfigProblem(f"mailbox:{mailbox.mailbox_id}", clash))
                continue
            claimed.update(dict.fromkeys(keys, mailbox))
        return found


_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _guid(value: str | None) -> str | None:
    """``value`` as a lowercase GUID (braces and case ignored), or None if it is not one."""
    if value is None:
        return None
    text = value.strip().removeprefix("{").removesuffix("}").lower()
    return text if _GUID.fullmatch(text) else None


def mailbox_identities(mailbox: Mailbox) -> dict[str, str]:
    """The normalised names of the Graph mailbox ``mailbox`` stands for, each with how to say
    it: its UPN and SMTP address (and a mailbox id that is an address) case-insensitively, its
    Graph user object id (``aad_object_id``, or a mailbox id that is a GUID) as a GUID."""
    out: dict[str, str] = {}
    for label, value in (
        ("UPN", mailbox.upn),
        ("SMTP address", mailbox.smtp_address),
        ("mailbox id", mailbox.mailbox_id),
    ):
        if value is not None and "@" in value:
            out.setdefault(f"address:{value.strip().casefold()}", f"{label} {value}")
    for label, value in (("mailbox id", mailbox.mailbox_id), ("object id", mailbox.aad_object_id)):
        guid = _guid(value)
        if guid is not None:
            out.setdefault(f"object:{guid}", f"Graph user {label} {value}")
    mailbox_id = mailbox.mailbox_id
    if "@" not in mailbox_id and _guid(mailbox_id) is None:  # some other key Graph resolves
        out[f"id:{mailbox_id.strip().casefold()}"] = f"mailbox id {mailbox_id}"
    return out


OrgKey = Callable[[str], str]
"""Which Dataverse organisation an ``org_id`` is (two records for one URL are one org)."""


def _same_org(org_id: str) -> str:
    return org_id


def org_identity(organisations: Mapping[str, Organisation]) -> OrgKey:
    """An :data:`OrgKey` over ``organisations``: their URL (host case-insensitive, no
    trailing slash) when known, else the org id."""

    def key(org_id: str) -> str:
        org = organisations.get(org_id)
        if org is None:
            return f"id:{org_id}"
        parts = urlsplit(org.url.strip())
        return (
            f"url:{parts.scheme.lower()}://{(parts.netloc or '').lower()}{parts.path.rstrip('/')}"
        )

    return key


def claim_keys(mailbox: Mailbox, org_key: OrgKey) -> list[str]:
    """Every identity ``mailbox`` claims: its Graph names (:func:`mailbox_identities`) and
    its CRM user in its organisation; two mailboxes sharing one clash."""
    org, user = _crm_identity(mailbox, org_key)
    return [*mailbox_identities(mailbox), f"crm:{org}:{user}"]


def _crm_identity(mailbox: Mailbox, org_key: OrgKey) -> tuple[str, str]:
    user = _guid(mailbox.systemuser_id) or mailbox.systemuser_id.strip().lower()
    return org_key(mailbox.org_id), user


def mailbox_clash(
    mailbox: Mailbox, others: Iterable[Mailbox], org_key: OrgKey = _same_org
) -> str | None:
    """Why ``mailbox`` may not coexist with ``others`` (ignoring its own id), or None: one
    Graph mailbox (any of :func:`mailbox_identities`) ↔ one CRM user ↔ one organisation."""
    mine = mailbox_identities(mailbox)
    user = _crm_identity(mailbox, org_key)
    for other in others:
        if other.mailbox_id == mailbox.mailbox_id:
            continue
        clash = _clash(mailbox, mine, user, other, org_key)
        if clash:
            return clash
    return None


def _clash(
    mailbox: Mailbox,
    mine: Mapping[str, str],
    user: tuple[str, str],
    other: Mailbox,
    org_key: OrgKey,
) -> str | None:
    theirs = mailbox_identities(other)
    same = next((key for key in mine if key in theirs), None)
    if same is not None:
        return (
            f"{mine[same]} is already registered as mailbox {other.mailbox_id!r} "
            f"({theirs[same]}, organisation {other.org_id!r})"
        )
    if _crm_identity(other, org_key) == user:
        return (
            f"CRM user {mailbox.systemuser_id} of organisation {mailbox.org_id!r} is "
            f"already linked to mailbox {other.mailbox_id!r} ({other.upn})"
        )
    return None


class ConfigStore:
    """Read and write the config topic. Use ``async with ConfigStore(kafka):`` or
    ``start()``/``stop()``; ``start`` loads the snapshot."""

    def __init__(self, kafka: KafkaSettings, *, timeout_s: float = 30.0) -> None:
        self._kafka = kafka
        self._clients = KafkaClients(kafka)
        self._topic = topic_name(CONFIG, kafka)
        self._timeout_s = timeout_s
        self._producer: AIOKafkaProducer | None = None
        self.snapshot = ConfigSnapshot()
        #: what the last load read: each partition's end offset, the snapshot, and how many of
        #: its problems were undecodable records (the rest are clashes, worked out per load)
        self._loaded: tuple[dict[TopicPartition, int], ConfigSnapshot, int] | None = None

    @property
    def topic(self) -> str:
        """The full name of the config topic."""
        return self._topic

    async def start(self) -> None:
        """Connect the producer and load the snapshot."""
        producer = self._clients.producer(
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=int(self._timeout_s * 1000),
            client_id="dynasync-config",
        )
        self._producer = producer
        try:
            await producer.start()
            await self.load()
        except BaseException:  # a producer that failed to start is closed too
            await self.stop()
            raise

    async def stop(self) -> None:
        """Flush and close the producer."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def load(self) -> ConfigSnapshot:
        """The topic's records up to its current end offsets, as a snapshot.

        The first load reads from the beginning; later ones read only what was added since
        the previous load, onto a copy of its snapshot (a worker reloads every few seconds,
        and decoding 10,000 mailbox records each time took a third of its CPU). Nothing added:
        the previous snapshot itself. A partition that shrank (the topic was recreated): read
        from the beginning again. Undecodable records and invariant clashes land in
        ``snapshot.problems``.
        """
        consumer = self._clients.consumer(
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=int(self._timeout_s * 1000),
            client_id="dynasync-config-reader",
        )
        try:
            await consumer.start()
            parts = await self._partitions()
            tps = [TopicPartition(self._topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
            loaded = self._loaded
            if (
                loaded is not None
                and set(loaded[0]) == set(tps)
                and all(ends[tp] >= loaded[0][tp] for tp in tps)
            ):
                if ends == loaded[0]:
                    self.snapshot = loaded[1]
                    return loaded[1]
                snapshot = loaded[1].copy(problems=loaded[2])
                for tp in tps:
                    consumer.seek(tp, loaded[0][tp])
            else:
                snapshot = ConfigSnapshot()
                await consumer.seek_to_beginning(*tps)
            deadline = time.monotonic() + self._timeout_s
            pending = {tp for tp in tps if ends[tp] > await consumer.position(tp)}
            while pending:
                if time.monotonic() > deadline:
                    raise ConfigError(f"timed out reading {self._topic}")
                batch = await consumer.getmany(*pending, timeout_ms=500)
                for records in batch.values():
                    for rec in records:
                        _ingest(snapshot, rec.key, rec.value, rec.partition, rec.offset)
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
        finally:
            await stop_consumer(consumer)
        undecodable = len(snapshot.problems)
        snapshot.problems.extend(snapshot.clashes())
        self._loaded = (ends, snapshot, undecodable)
        self.snapshot = snapshot
        return snapshot

    async def _partitions(self) -> list[int]:
        admin = self._clients.admin(
            request_timeout_ms=int(self._timeout_s * 1000),
            client_id="dynasync-config-admin",
        )
        try:
            await admin.start()
            (meta,) = await admin.describe_topics([self._topic])
        finally:
            await admin.close()
        if meta.get("error_code", 0) != 0 or not meta.get("partitions"):
            raise ConfigError(
                f"config topic {self._topic} does not exist (run: dynasync topics create)"
            )
        return [int(p["partition"]) for p in meta["partitions"]]

    async def put(self, record: ConfigRecord, *, create: bool = False) -> None:
        """Write ``record`` (acks=all) after checking the invariants; with ``create`` an
        existing record under the same key is refused."""
        key = config_key(record)
        if create and self.snapshot.get(key) is not None:
            raise ConfigError(f"{key.replace(':', ' ', 1)} already exists")
        self.snapshot.check(record)
        await self._send(key, dumps(record))
        self.snapshot.apply(record)

    async def delete(self, key: str) -> None:
        """Write a tombstone for ``key``; refused if it would orphan other records."""
        if self.snapshot.get(key) is None:
            raise ConfigError(f"{key.replace(':', ' ', 1)} does not exist")
        self.snapshot.check_delete(key)
        await self._send(key, None)
        self.snapshot.remove(key)

    async def put_raw(self, key: str, value: bytes | None) -> None:
        """Write a value without any check (repair and tests); the snapshot is not touched."""
        await self._send(key, value)

    async def _send(self, key: str, value: bytes | None) -> None:
        if self._producer is None:
            raise ConfigError("the config store is not started")
        await asyncio.wait_for(
            self._producer.send_and_wait(self._topic, value, key=key.encode()), self._timeout_s
        )


def _ingest(
    snapshot: ConfigSnapshot, raw_key: bytes | None, value: bytes | None, part: int, offset: int
) -> None:
    key = raw_key.decode("utf-8", errors="replace") if raw_key is not None else ""
    if not key:
        snapshot.problems.append(ConfigProblem("<no key>", "record without a key", part, offset))
        return
    if value is None:
        snapshot.remove(key)
        return
    try:
        record = decode_record(key, value)
    except SchemaError as exc:
        snapshot.problems.append(ConfigProblem(key, str(exc), part, offset))
        return
    snapshot.apply(record)
