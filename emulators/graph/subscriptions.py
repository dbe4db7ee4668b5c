"""Change-notification subscriptions: validation handshake, limits, delivery with retries."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from .config import EmulatorConfig
from .errors import GraphError
from .ids import iso_z, new_guid, parse_iso, utc_now
from .store import ChangeEvent, Store

MAX_MINUTES = 10_080
MAX_MINUTES_WITH_DATA = 1_440
CHANGE_TYPES = frozenset({"created", "updated", "deleted"})
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})
_FIELDS = frozenset(
    {
        "resource",
        "changeType",
        "notificationUrl",
        "lifecycleNotificationUrl",
        "expirationDateTime",
        "clientState",
        "includeResourceData",
        "encryptionCertificate",
        "encryptionCertificateId",
        "latestSupportedTlsVersion",
    }
)
_RESOURCE = re.compile(
    r"^/?users/(?P<u>[^/]+)/(?:(?P<kind>messages|events|contacts)|"
    r"mailfolders/(?P<f>[^/]+)/messages)$",
    re.IGNORECASE,
)
_KINDS = {"messages": "message", "events": "event", "contacts": "contact"}
_TYPES = {"message": "Message", "event": "Event", "contact": "Contact"}


def _invalid(message: str) -> GraphError:
    return GraphError(400, "InvalidRequest", message)


@dataclass
class Subscription:
    """One subscription and what it matches."""

    id: str
    resource: str
    change_types: list[str]
    notification_url: str
    lifecycle_url: str | None
    expiration: str
    client_state: str | None
    include_resource_data: bool
    application_id: str
    mailbox_id: str
    kind: str
    folder_id: str | None
    immutable_ids: bool = False

    def as_json(self) -> dict[str, Any]:
        """The subscription resource."""
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": ",".join(self.change_types),
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": self.expiration,
            "creatorId": self.application_id,
            "includeResourceData": self.include_resource_data,
            "latestSupportedTlsVersion": "v1_2",
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        }


def _url(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise _invalid(f"{name} is required and must be a string.")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _invalid(f"Invalid {name} '{value}': an absolute http(s) URL is required.")
    return value


def _expiration(value: Any, with_data: bool) -> str:
    moment = parse_iso(value) if isinstance(value, str) else None
    if moment is None:
        raise _invalid("expirationDateTime is required and must be an ISO 8601 date-time.")
    now = utc_now()
    if moment <= now:
        raise _invalid("Subscription expiration must be in the future.")
    limit = MAX_MINUTES_WITH_DATA if with_data else MAX_MINUTES
    if moment > now + timedelta(minutes=limit):
        raise GraphError(
            400,
            "ExtensionError",
            f"Subscription expiration can only be {limit} minutes in the future.",
        )
    return iso_z(moment).replace("Z", ".0000000Z")


class SubscriptionManager:
    """Holds subscriptions, performs handshakes and delivers notifications."""

    def __init__(self, config: EmulatorConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.items: dict[str, Subscription] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self.delivered: list[dict[str, Any]] = []
        self.failed_deliveries = 0
        store.listeners.append(self.on_change)

    async def start(self) -> None:
        """Open the outgoing HTTP session."""
        self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        """Cancel pending deliveries and close the session."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    def reset(self) -> None:
        """Drop every subscription and pending delivery."""
        self.items.clear()
        for task in list(self._tasks):
            task.cancel()
        self.delivered.clear()
        self.failed_deliveries = 0

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise GraphError(503, "ServiceNotAvailable", "The emulator is not started.")
        return self._session

    async def _handshake(self, url: str) -> None:
        token = (
            "Validation: Testing client application reachability for subscription "
            f"Request-Id: {new_guid()}"
        )
        try:
            async with self._http().post(
                url,
                params={"validationToken": token},
                headers={"Content-Type": "text/plain; charset=utf-8"},
                data=b"",
                timeout=aiohttp.ClientTimeout(total=self.config.validation_timeout_seconds),
            ) as response:
                text = await response.text()
                ok = response.status == 200 and text == token
                ok = ok and response.content_type.lower() == "text/plain"
        except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError):
            ok = False
        if not ok:
            raise GraphError(
                400,
                "InvalidRequest",
                "Subscription validation request failed. Notification endpoint must respond "
                "with 200 OK to validation request.",
            )

    def _resolve_resource(self, resource: Any) -> tuple[str, str, str | None]:
        if not isinstance(resource, str):
            raise _invalid("resource is required and must be a string.")
        normalized = re.sub(r"\(\s*'([^']*)'\s*\)", r"/\1", resource.strip())
        found = _RESOURCE.match(normalized)
        if not found:
            raise GraphError(
                400, "ExtensionError", f"Resource '{resource}' is not supported for subscriptions."
            )
        mailbox = self.store.user(found.group("u"))
        if found.group("f"):
            return mailbox.id, "message", mailbox.mail_folder(found.group("f")).id
        return mailbox.id, _KINDS[found.group("kind").lower()], None

    async def create(self, body: Any, app_id: str, immutable_ids: bool = False) -> Subscription:
        """Validate a creation body, run the handshake(s), store the subscription.

        ``immutable_ids``: created with ``Prefer: IdType="ImmutableId"``, so its notifications
        name items by their immutable ids (else by their REST ids, which a move changes)."""
        if not isinstance(body, dict):
            raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
        unknown = set(body) - _FIELDS - {"@odata.type"}
        if unknown:
            raise GraphError(
                400,
                "BadRequest",
                f"The property '{sorted(unknown)[0]}' does not exist on type "
                "'microsoft.graph.subscription'.",
            )
        change = body.get("changeType")
        if not isinstance(change, str) or not change:
            raise _invalid("changeType is required.")
        types = [t.strip() for t in change.split(",")]
        if any(t not in CHANGE_TYPES for t in types) or len(set(types)) != len(types):
            raise _invalid(f"Invalid changeType '{change}'.")
        state = body.get("clientState")
        if state is not None and (not isinstance(state, str) or len(state) > 128):
            raise _invalid("clientState must be a string of at most 128 characters.")
        with_data = body.get("includeResourceData", False)
        if not isinstance(with_data, bool):
            raise _invalid("includeResourceData must be a boolean.")
        if with_data and not (
            body.get("encryptionCertificate") and body.get("encryptionCertificateId")
        ):
            raise _invalid("includeResourceData needs encryptionCertificate and its id.")
        expiration = _expiration(body.get("expirationDateTime"), with_data)
        url = _url(body.get("notificationUrl"), "notificationUrl")
        lifecycle = body.get("lifecycleNotificationUrl")
        if lifecycle is not None:
            lifecycle = _url(lifecycle, "lifecycleNotificationUrl")
        mailbox_id, kind, folder = self._resolve_resource(body.get("resource"))
        await self._handshake(url)
        if lifecycle is not None and lifecycle != url:
            await self._handshake(lifecycle)
        sub = Subscription(
            id=new_guid(),
            resource=str(body["resource"]),
            change_types=types,
            notification_url=url,
            lifecycle_url=lifecycle,
            expiration=expiration,
            client_state=state,
            include_resource_data=with_data,
            application_id=app_id,
            mailbox_id=mailbox_id,
            kind=kind,
            folder_id=folder,
            immutable_ids=immutable_ids,
        )
        self.items[sub.id] = sub
        return sub

    def get(self, sub_id: str) -> Subscription:
        """A subscription by id, else 404."""
        sub = self.items.get(sub_id)
        if sub is None:
            raise GraphError(404, "ResourceNotFound", f"The object '{sub_id}' doesn't exist.")
        return sub

    def renew(self, sub_id: str, body: Any) -> Subscription:
        """PATCH: a new expirationDateTime (within limits)."""
        sub = self.get(sub_id)
        if not isinstance(body, dict) or set(body) - {"expirationDateTime"}:
            raise _invalid("Only expirationDateTime can be updated.")
        sub.expiration = _expiration(body.get("expirationDateTime"), sub.include_resource_data)
        return sub

    def delete(self, sub_id: str) -> None:
        """DELETE."""
        self.get(sub_id)
        del self.items[sub_id]

    def drop_mailbox(self, mailbox_id: str) -> list[str]:
        """Forget every subscription to a mailbox that is gone; their ids."""
        gone = [sid for sid, sub in self.items.items() if sub.mailbox_id == mailbox_id]
        for sid in gone:
            del self.items[sid]
        return gone

    def on_change(self, event: ChangeEvent) -> None:
        """Queue one notification per matching subscription."""
        if event.kind not in _TYPES:
            return
        now = utc_now()
        for sub in list(self.items.values()):
            expired = (parse_iso(sub.expiration) or now) <= now
            if (
                expired
                or sub.mailbox_id != event.mailbox_id
                or sub.kind != event.kind
                or event.change_type not in sub.change_types
                or (sub.folder_id is not None and sub.folder_id != event.parent)
            ):
                continue
            plural = _TYPES[event.kind] + "s"
            item_id = event.item_id if sub.immutable_ids else event.default_id
            path = f"Users/{event.mailbox_id}/{plural}/{item_id}"
            note = {
                "subscriptionId": sub.id,
                "subscriptionExpirationDateTime": sub.expiration,
                "changeType": event.change_type,
                "resource": path,
                "resourceData": {
                    "@odata.type": f"#Microsoft.Graph.{_TYPES[event.kind]}",
                    "@odata.id": path,
                    "@odata.etag": event.etag,
                    "id": item_id,
                },
                "clientState": sub.client_state,
                "tenantId": self.config.tenant_id,
            }
            self._spawn(sub.notification_url, {"value": [note]})

    def lifecycle(self, sub_id: str, event: str) -> None:
        """Fire a lifecycle notification (``subscriptionRemoved`` also drops the subscription)."""
        if event not in LIFECYCLE_EVENTS:
            raise ValueError(f"lifecycleEvent must be one of {', '.join(sorted(LIFECYCLE_EVENTS))}")
        sub = self.items.get(sub_id)
        if sub is None:
            raise LookupError(f"no subscription {sub_id!r}")
        if sub.lifecycle_url is None:
            raise ValueError("the subscription has no lifecycleNotificationUrl")
        note = {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": sub.expiration,
            "tenantId": self.config.tenant_id,
            "clientState": sub.client_state,
            "lifecycleEvent": event,
        }
        if event == "subscriptionRemoved":
            del self.items[sub_id]
        self._spawn(sub.lifecycle_url, {"value": [note]})

    def _spawn(self, url: str, payload: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(url, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, payload: dict[str, Any]) -> None:
        data = orjson.dumps(payload)
        for attempt in range(self.config.notify_max_attempts):
            try:
                async with self._http().post(
                    url,
                    data=data,
                    headers={"Content-Type": "application/json; charset=utf-8"},
                    timeout=aiohttp.ClientTimeout(total=self.config.notify_timeout_seconds),
                ) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        self.delivered.append(payload)
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            self.failed_deliveries += 1
            delay = 60.0 * (2**attempt) * self.config.notify_time_scale
            await asyncio.sleep(
                delay + secrets.randbelow(100) / 1000 * self.config.notify_time_scale
            )
