"""Graph subscriptions: one per mailbox per resource, each with its own random clientState,
renewed well before expiry, recreated when removed, reauthorized on demand. Their state lives
in the compacted cursors topic (key ``sub:<mailbox>:<resource>``) so a restart neither loses nor
duplicates a subscription; the receiver's registry reads the same state.

The clientState itself is never stored: it goes to Graph once, in the creating POST, and the
topic holds only ``HMAC-SHA256(key, clientState)`` plus the key's id (see ``ClientStateKey``).
Records written in the old form (plaintext ``client_state``) still load: they are hashed on
load, and the manager rewrites them in the new form on its next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from connectors.errors import ConnectorError, InvalidResponseError, NotFoundError
from connectors.graph.notifications import RESOURCE_KINDS, NotificationRecord, ResourceKind
from connectors.graph.transport import GraphTransport
from connectors.store import CursorStore

log = logging.getLogger(__name__)

MAX_LIFETIME = timedelta(minutes=10_080)
MAX_CLIENT_STATE = 128
MIN_CLIENT_STATE_KEY = 32
_FRACTION = re.compile(r"(\.\d{6})\d+")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_HKDF_SALT = b"dynasync/graph-client-state/salt/v1"
_HKDF_INFO = b"dynasync/graph-client-state/hmac-sha256/v1"
_KEY_ID_LABEL = b"dynasync/graph-client-state/key-id/v1"


class ClientStateKey:
    """The secret key of the clientState HMAC (HMAC-SHA256), shared by every worker.

    Workers and restarts must verify each other's clientStates, so the key comes from
    configuration, never from a per-process random value. ``derive`` turns a configured secret
    into the key with HKDF-SHA256 (RFC 5869: extract with a fixed salt, expand one block with a
    fixed label), which separates it from any other use of the same secret (e.g. the Graph
    client secret as fallback). ``key_id`` names the key (a keyed hash of a label, not the key)
    so records made under another key are recognised and their subscriptions recreated.
    """

    __slots__ = ("_key", "key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_CLIENT_STATE_KEY:
            raise ValueError(f"a clientState key needs at least {MIN_CLIENT_STATE_KEY} bytes")
        self._key = bytes(key)
        self.key_id = hmac.new(self._key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]

    @classmethod
    def derive(cls, secret: str) -> ClientStateKey:
        """The key derived (HKDF-SHA256) from a configured secret; ValueError if it is empty."""
        if not secret:
            raise ValueError("cannot derive a clientState key from an empty secret")
        prk = hmac.new(_HKDF_SALT, secret.encode("utf-8"), hashlib.sha256).digest()
        return cls(hmac.new(prk, _HKDF_INFO + b"\x01", hashlib.sha256).digest())

    def digest(self, client_state: str) -> str:
        """HMAC-SHA256 of ``client_state``, hex: what the cursors topic stores."""
        return hmac.new(self._key, client_state.encode("utf-8"), hashlib.sha256).hexdigest()

    def matches(self, client_state: str | None, stored: str) -> bool:
        """Whether ``client_state`` hashes to ``stored`` (constant-time comparison)."""
        given = self.digest(client_state if client_state is not None else "")
        return hmac.compare_digest(given.encode("ascii"), stored.encode("ascii", "replace"))

    def __repr__(self) -> str:
        return f"ClientStateKey(key_id={self.key_id!r})"


def client_state_key(configured: str | None, *fallbacks: str | None) -> ClientStateKey:
    """The key from the configured secret (at least 32 characters), else derived from the first
    non-empty fallback secret (the Graph client secret); ValueError if there is none."""
    if configured is not None:
        if len(configured) < MIN_CLIENT_STATE_KEY:
            raise ValueError(
                f"the clientState key must have at least {MIN_CLIENT_STATE_KEY} characters"
            )
        return ClientStateKey.derive(configured)
    for secret in fallbacks:
        if secret:
            return ClientStateKey.derive(secret)
    raise ValueError("no clientState key: set graph.client_state_key (or a Graph client secret)")


def parse_time(value: Any, what: str) -> datetime:
    """Parse a Graph ISO-8601 timestamp (7-digit fractions and ``Z`` included), as UTC."""
    if not isinstance(value, str):
        raise InvalidResponseError(f"{what} is not a timestamp string")
    text = _FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidResponseError(f"{what} is not an ISO timestamp: {value[:40]!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def format_time(when: datetime) -> str:
    """UTC ISO-8601 with a ``Z``, seconds precision."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_client_state() -> str:
    """A fresh random clientState (URL-safe, well under Graph's 128 characters)."""
    state = secrets.token_urlsafe(48)
    assert len(state) <= MAX_CLIENT_STATE
    return state


def subscription_key(mailbox_id: str, resource: ResourceKind) -> str:
    """The cursors-topic key of one subscription."""
    return f"sub:{mailbox_id}:{resource}"


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    """One subscription's state. ``subscription_id`` is None while its creation is pending.

    ``client_state_hmac`` is ``ClientStateKey.digest`` of the clientState under the key named
    ``key_id``; ``legacy`` marks a record that was loaded from the old plaintext form.
    """

    mailbox_id: str
    resource: ResourceKind
    client_state_hmac: str
    key_id: str
    subscription_id: str | None = None
    expires_at: str | None = None
    legacy: bool = field(default=False, compare=False)

    def to_json(self) -> str:
        """Serialise for the cursors topic (the hash, never the clientState)."""
        return orjson.dumps(
            {
                "mailbox_id": self.mailbox_id,
                "resource": self.resource,
                "client_state_hmac": self.client_state_hmac,
                "key_id": self.key_id,
                "subscription_id": self.subscription_id,
                "expires_at": self.expires_at,
            }
        ).decode()

    @classmethod
    def from_json(cls, raw: str, key: ClientStateKey) -> SubscriptionRecord:
        """Decode a stored record, hashing an old plaintext clientState with ``key``;
        ValueError if it is not a record."""
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("subscription record must be an object")
        resource = data.get("resource")
        if resource not in RESOURCE_KINDS:
            raise ValueError(f"bad resource {resource!r}")
        mailbox = data.get("mailbox_id")
        sid, expires = data.get("subscription_id"), data.get("expires_at")
        if not isinstance(mailbox, str):
            raise ValueError("mailbox_id must be a string")
        if sid is not None and not isinstance(sid, str):
            raise ValueError("subscription_id must be a string")
        if expires is not None and not isinstance(expires, str):
            raise ValueError("expires_at must be a string")
        digest, key_id = data.get("client_state_hmac"), data.get("key_id")
        if digest is not None or key_id is not None:
            if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
                raise ValueError("client_state_hmac must be 64 lowercase hex digits")
            if not isinstance(key_id, str) or not _HEX16.fullmatch(key_id):
                raise ValueError("key_id must be 16 lowercase hex digits")
            return cls(mailbox, resource, digest, key_id, sid, expires)
        state = data.get("client_state")  # the old form: migrate
        if not isinstance(state, str) or not state:
            raise ValueError("a record needs client_state_hmac (or an old client_state)")
        return cls(mailbox, resource, key.digest(state), key.key_id, sid, expires, legacy=True)

    def expiry(self) -> datetime | None:
        """The expiry as a datetime, if known."""
        return None if self.expires_at is None else parse_time(self.expires_at, "expires_at")


class SubscriptionRegistry:
    """Reads subscription records from the cursor store (the receiver's view) and checks
    clientStates against them with ``key``."""

    def __init__(
        self,
        store: CursorStore,
        key: ClientStateKey,
        *,
        rescan_every_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._key = key
        #: subscription id -> its cursor key: a notification's lookup reads one record, not
        #: all of them (it did, for every notification)
        self._keys: dict[str, str] = {}
        self._rescan_every = rescan_every_s
        self._clock = clock
        self._scanned = -float("inf")

    def records(self) -> list[SubscriptionRecord]:
        """Every stored record (unreadable ones skipped, with a warning)."""
        out: list[SubscriptionRecord] = []
        for key, raw in self._store.items("sub:"):
            try:
                out.append(SubscriptionRecord.from_json(raw, self._key))
            except ValueError as exc:
                log.warning("skipping unreadable subscription record %s: %s", key, exc)
        return out

    def lookup(self, subscription_id: str) -> SubscriptionRecord | None:
        """The record of ``subscription_id``, or None if it is not one of ours. An id not
        indexed yet (a subscription made since) rescans the store, at most every
        ``rescan_every_s``, so unknown ids cannot make every request scan it."""
        found = self._indexed(subscription_id)
        if found is not None:
            return found
        now = self._clock()
        if now - self._scanned < self._rescan_every:
            return None
        self._scanned = now
        self._keys = {}
        for key, raw in self._store.items("sub:"):
            try:
                sid = SubscriptionRecord.from_json(raw, self._key).subscription_id
            except ValueError as exc:
                log.warning("skipping unreadable subscription record %s: %s", key, exc)
                continue
            if sid is not None:  # None: being created, not known to Graph yet
                self._keys[sid] = key
        return self._indexed(subscription_id)

    def _indexed(self, subscription_id: str) -> SubscriptionRecord | None:
        key = self._keys.get(subscription_id)
        raw = self._store.get(key) if key is not None else None
        if raw is None:
            return None
        try:
            rec = SubscriptionRecord.from_json(raw, self._key)
        except ValueError:
            return None
        return rec if rec.subscription_id == subscription_id else None

    def get(self, mailbox_id: str, resource: ResourceKind) -> SubscriptionRecord | None:
        """The record of one mailbox's resource."""
        raw = self._store.get(subscription_key(mailbox_id, resource))
        if raw is None:
            return None
        try:
            return SubscriptionRecord.from_json(raw, self._key)
        except ValueError:
            return None

    def client_state_matches(self, record: SubscriptionRecord, client_state: str | None) -> bool:
        """Whether a notification's ``client_state`` is the one ``record`` was created with
        (HMAC compared in constant time; False for a record made under another key)."""
        same = self._key.matches(client_state, record.client_state_hmac)
        return same and hmac.compare_digest(record.key_id, self._key.key_id)


MissedCallback = Callable[[str, ResourceKind], Awaitable[None]]


class SubscriptionManager:
    """Creates, renews, recreates and reauthorizes the subscriptions of a set of mailboxes."""

    def __init__(
        self,
        transport: GraphTransport,
        store: CursorStore,
        *,
        key: ClientStateKey,
        notification_url: str,
        lifecycle_url: str,
        resources: Sequence[ResourceKind] = RESOURCE_KINDS,
        lifetime: timedelta = timedelta(minutes=4230),
        renew_before: timedelta = timedelta(hours=12),
        jitter: float = 0.1,
        on_missed: MissedCallback | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if lifetime > MAX_LIFETIME or lifetime <= renew_before:
            raise ValueError("lifetime must be <= 10080 minutes and longer than renew_before")
        self._t = transport
        self._store = store
        self._key = key
        self.registry = SubscriptionRegistry(store, key)
        self._url = notification_url
        self._lifecycle_url = lifecycle_url
        self._resources = tuple(resources)
        self._lifetime = lifetime
        self._renew_before = renew_before
        self._jitter = jitter
        self._on_missed = on_missed
        self._now = now
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def _resource_path(self, mailbox_id: str, resource: ResourceKind) -> str:
        return f"users/{mailbox_id}/{resource}"

    def _renew_due(self, rec: SubscriptionRecord) -> bool:
        expiry = rec.expiry()
        if expiry is None:
            return True
        margin = self._renew_before * (1 + random.uniform(0, self._jitter))
        return expiry - margin <= self._now()

    async def ensure(self, mailbox_id: str) -> list[SubscriptionRecord]:
        """Make sure every resource of ``mailbox_id`` has a live subscription; return them."""
        out = []
        for resource in self._resources:
            async with self._lock(subscription_key(mailbox_id, resource)):
                out.append(await self._ensure_one(mailbox_id, resource))
        return out

    async def _ensure_one(self, mailbox_id: str, resource: ResourceKind) -> SubscriptionRecord:
        rec = self.registry.get(mailbox_id, resource)
        if rec is not None and rec.key_id != self._key.key_id:
            # made under another key: its clientState can no longer be verified
            log.warning(
                "subscription of mailbox=%s resource=%s was made under another clientState key;"
                " recreating it",
                mailbox_id,
                resource,
            )
            await self._delete(rec)
            return await self._create(mailbox_id, resource, pending=None)
        if rec is not None and rec.legacy:  # old plaintext form on the topic: replace it
            await self._store.put(subscription_key(mailbox_id, resource), rec.to_json())
        if rec is None or rec.subscription_id is None:
            return await self._create(mailbox_id, resource, pending=rec)
        expiry = rec.expiry()
        if expiry is not None and expiry <= self._now():
            return await self._create(mailbox_id, resource, pending=None)
        if self._renew_due(rec):
            return await self._renew(rec)
        return rec

    async def _create(
        self, mailbox_id: str, resource: ResourceKind, *, pending: SubscriptionRecord | None
    ) -> SubscriptionRecord:
        key = subscription_key(mailbox_id, resource)
        if pending is not None:
            adopted = await self._adopt(pending)
            if adopted is not None:
                await self._store.put(key, adopted.to_json())
                return adopted
        state = new_client_state()
        rec = SubscriptionRecord(mailbox_id, resource, self._key.digest(state), self._key.key_id)
        await self._store.put(key, rec.to_json())  # pending: a crash now is recoverable
        expires = format_time(self._now() + self._lifetime)
        body = {
            "changeType": "created,updated,deleted",
            "notificationUrl": self._url,
            "lifecycleNotificationUrl": self._lifecycle_url,
            "resource": self._resource_path(mailbox_id, resource),
            "expirationDateTime": expires,
            "clientState": state,  # the only place the plaintext goes
        }
        resp = await self._t.request(mailbox_id, "POST", "subscriptions", json=body, safe=False)
        data = resp.body or {}
        sid = data.get("id")
        if not isinstance(sid, str) or not sid:
            raise InvalidResponseError("POST subscriptions: response has no id")
        expiry = parse_time(data.get("expirationDateTime", expires), "expirationDateTime")
        done = replace(rec, subscription_id=sid, expires_at=format_time(expiry))
        await self._store.put(key, done.to_json())
        log.info("subscription created mailbox=%s resource=%s id=%s", mailbox_id, resource, sid)
        return done

    async def _adopt(self, pending: SubscriptionRecord) -> SubscriptionRecord | None:
        """After a crash between POST and store: find the subscription Graph did create."""
        try:
            resp = await self._t.request(pending.mailbox_id, "GET", "subscriptions")
        except ConnectorError as exc:
            log.warning("cannot list subscriptions to adopt a pending one: %s", exc)
            return None
        items = (resp.body or {}).get("value")
        if not isinstance(items, list):
            return None
        path = self._resource_path(pending.mailbox_id, pending.resource).lower()
        for item in items:
            if (
                isinstance(item, dict)
                and str(item.get("resource", "")).lower() == path
                and item.get("notificationUrl") == self._url
                and isinstance(item.get("id"), str)
            ):
                expiry = parse_time(item.get("expirationDateTime"), "expirationDateTime")
                return replace(pending, subscription_id=item["id"], expires_at=format_time(expiry))
        return None

    async def _renew(self, rec: SubscriptionRecord) -> SubscriptionRecord:
        assert rec.subscription_id is not None
        expires = format_time(self._now() + self._lifetime)
        try:
            resp = await self._t.request(
                rec.mailbox_id,
                "PATCH",
                f"subscriptions/{rec.subscription_id}",
                json={"expirationDateTime": expires},
                safe=True,
            )
        except NotFoundError:
            log.info("subscription %s is gone; recreating", rec.subscription_id)
            return await self._create(rec.mailbox_id, rec.resource, pending=None)
        data = resp.body or {}
        expiry = parse_time(data.get("expirationDateTime", expires), "expirationDateTime")
        done = replace(rec, expires_at=format_time(expiry))
        await self._store.put(subscription_key(rec.mailbox_id, rec.resource), done.to_json())
        return done

    async def _delete(self, rec: SubscriptionRecord) -> None:
        if rec.subscription_id is not None:
            with contextlib.suppress(NotFoundError):
                await self._t.request(
                    rec.mailbox_id, "DELETE", f"subscriptions/{rec.subscription_id}"
                )

    async def remove(self, mailbox_id: str) -> None:
        """Delete every subscription of ``mailbox_id`` (mailbox disabled)."""
        for resource in self._resources:
            rec = self.registry.get(mailbox_id, resource)
            if rec is None:
                continue
            await self._delete(rec)
            await self._store.put(subscription_key(mailbox_id, resource), None)

    async def handle_lifecycle(self, record: NotificationRecord) -> None:
        """Act on a lifecycle notification published by the receiver."""
        event = record.lifecycle_event
        rec = self.registry.lookup(record.subscription_id)
        if event is None or rec is None:
            return
        key = subscription_key(rec.mailbox_id, rec.resource)
        if event == "reauthorizationRequired":
            async with self._lock(key):
                await self._renew(rec)
        elif event == "subscriptionRemoved":
            async with self._lock(key):
                await self._create(rec.mailbox_id, rec.resource, pending=None)
        elif event == "missed" and self._on_missed is not None:
            await self._on_missed(rec.mailbox_id, rec.resource)

    def next_due(self) -> datetime | None:
        """When the earliest renewal falls due."""
        times = [e - self._renew_before for r in self.registry.records() if (e := r.expiry())]
        return min(times) if times else None

    async def run(self, mailboxes: Callable[[], Sequence[str]], *, max_sleep: float = 300) -> None:
        """Keep every mailbox's subscriptions alive until cancelled."""
        while True:
            for mailbox in mailboxes():
                try:
                    await self.ensure(mailbox)
                except ConnectorError as exc:
                    log.warning("subscriptions of %s not ensured: %s", mailbox, exc)
            due = self.next_due()
            wait = max_sleep if due is None else (due - self._now()).total_seconds()
            await asyncio.sleep(min(max(wait, 1.0), max_sleep) * random.uniform(0.9, 1.0))
