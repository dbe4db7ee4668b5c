"""Strict validation of Graph webhook payloads (changeNotificationCollection and lifecycle
notifications) and the record the receiver publishes to ``graph.notifications``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import orjson

ResourceKind: TypeAlias = Literal["messages", "events", "contacts"]
RESOURCE_KINDS: tuple[ResourceKind, ...] = ("messages", "events", "contacts")
LifecycleEvent: TypeAlias = Literal["reauthorizationRequired", "subscriptionRemoved", "missed"]
_LIFECYCLE: dict[str, LifecycleEvent] = {
    "reauthorizationRequired": "reauthorizationRequired",
    "subscriptionRemoved": "subscriptionRemoved",
    "missed": "missed",
}
LIFECYCLE_EVENTS: frozenset[str] = frozenset(_LIFECYCLE)
CHANGE_TYPES: frozenset[str] = frozenset({"created", "updated", "deleted"})
MAX_NOTIFICATIONS = 1000
_ID = re.compile(r"^[A-Za-z0-9._:@=+/\-]{1,512}$")
_TOKEN = re.compile(r"^[\x20-\x7e]{1,1024}$")
_HTTP_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_PARAM = re.compile(
    rf'^[ \t]*({_HTTP_TOKEN})=({_HTTP_TOKEN}|"[\x20\x21\x23-\x5b\x5d-\x7e]*")[ \t]*$'
)
MAX_CONTENT_TYPE = 200


class PayloadError(ValueError):
    """The webhook body is not a valid Graph notification payload."""


@dataclass(frozen=True, slots=True)
class ChangeNotification:
    """One validated change notification (clientState kept only for the check)."""

    subscription_id: str
    client_state: str | None
    change_type: str
    resource: str
    item_id: str | None
    tenant_id: str | None


@dataclass(frozen=True, slots=True)
class LifecycleNotification:
    """One validated lifecycle notification."""

    subscription_id: str
    client_state: str | None
    lifecycle_event: LifecycleEvent
    tenant_id: str | None


def valid_validation_token(token: str) -> bool:
    """Graph validation tokens are printable ASCII (spaces included), at most 1024 chars."""
    return bool(_TOKEN.fullmatch(token))


def json_content_type_error(values: list[str]) -> str | None:
    """Why the Content-Type header values are not ``application/json``, or None if they are.

    Exactly one header, media type ``application/json`` (any case), well-formed parameters;
    a ``charset`` parameter, if any, must be UTF-8 (Graph sends ``charset=utf-8``)."""
    if not values:
        return "Content-Type application/json is required"
    if len(values) > 1:
        return "exactly one Content-Type header is allowed"
    value = values[0]
    if len(value) > MAX_CONTENT_TYPE:
        return "Content-Type is too long"
    media, *params = value.split(";")
    if media.strip(" \t").lower() != "application/json":
        return "Content-Type must be application/json"
    for param in params:
        match = _MEDIA_PARAM.fullmatch(param)
        if match is None:
            return "Content-Type has a malformed parameter"
        name, arg = match.group(1).lower(), match.group(2).strip('"').lower()
        if name == "charset" and arg not in ("utf-8", "utf8"):
            return "Content-Type charset must be utf-8"
    return None


def _str(obj: dict[str, Any], key: str, *, required: bool, where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise PayloadError(f"{where}.{key} is required")
        return None
    if not isinstance(value, str) or not value or len(value) > 2048:
        raise PayloadError(f"{where}.{key} must be a non-empty string of at most 2048 chars")
    return value


def _items(raw: bytes) -> list[dict[str, Any]]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError("body must be a JSON object")
    value = data.get("value")
    if not isinstance(value, list) or not value:
        raise PayloadError("value must be a non-empty array")
    if len(value) > MAX_NOTIFICATIONS:
        raise PayloadError(f"value holds more than {MAX_NOTIFICATIONS} notifications")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise PayloadError(f"value[{i}] must be an object")
    return value


def _subscription_id(item: dict[str, Any], where: str) -> str:
    sid = _str(item, "subscriptionId", required=True, where=where)
    assert sid is not None
    if not _ID.fullmatch(sid):
        raise PayloadError(f"{where}.subscriptionId has an invalid format")
    return sid


def parse_change_notifications(raw: bytes) -> list[ChangeNotification]:
    """Parse a changeNotificationCollection; raise PayloadError naming the bad field."""
    out: list[ChangeNotification] = []
    for i, item in enumerate(_items(raw)):
        where = f"value[{i}]"
        sid = _subscription_id(item, where)
        if "lifecycleEvent" in item:
            raise PayloadError(f"{where} is a lifecycle notification, not a change")
        change = _str(item, "changeType", required=True, where=where)
        if change not in CHANGE_TYPES:
            raise PayloadError(f"{where}.changeType must be one of {sorted(CHANGE_TYPES)}")
        resource = _str(item, "resource", required=True, where=where)
        assert resource is not None
        data = item.get("resourceData")
        item_id: str | None = None
        if data is not None:
            if not isinstance(data, dict):
                raise PayloadError(f"{where}.resourceData must be an object")
            item_id = _str(data, "id", required=False, where=f"{where}.resourceData")
        out.append(
            ChangeNotification(
                subscription_id=sid,
                client_state=_str(item, "clientState", required=False, where=where),
                change_type=change,
                resource=resource,
                item_id=item_id,
                tenant_id=_str(item, "tenantId", required=False, where=where),
            )
        )
    return out


def parse_lifecycle_notifications(raw: bytes) -> list[LifecycleNotification]:
    """Parse a collection of lifecycle notifications; raise PayloadError on anything odd."""
    out: list[LifecycleNotification] = []
    for i, item in enumerate(_items(raw)):
        where = f"value[{i}]"
        sid = _subscription_id(item, where)
        event = _str(item, "lifecycleEvent", required=True, where=where)
        lifecycle = _LIFECYCLE.get(event or "")
        if lifecycle is None:
            raise PayloadError(f"{where}.lifecycleEvent must be one of {sorted(LIFECYCLE_EVENTS)}")
        out.append(
            LifecycleNotification(
                subscription_id=sid,
                client_state=_str(item, "clientState", required=False, where=where),
                lifecycle_event=lifecycle,
                tenant_id=_str(item, "tenantId", required=False, where=where),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """What goes to ``graph.notifications`` (keyed by mailbox): never the clientState."""

    mailbox_id: str
    resource_kind: ResourceKind
    subscription_id: str
    received_at: str
    change_type: str | None = None
    item_id: str | None = None
    lifecycle_event: LifecycleEvent | None = None

    def to_json(self) -> bytes:
        """Serialise for Kafka."""
        return orjson.dumps(
            {
                "mailbox_id": self.mailbox_id,
                "resource_kind": self.resource_kind,
                "subscription_id": self.subscription_id,
                "received_at": self.received_at,
                "change_type": self.change_type,
                "item_id": self.item_id,
                "lifecycle_event": self.lifecycle_event,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> NotificationRecord:
        """Decode a record; PayloadError if it is not one."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise PayloadError(f"notification record is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise PayloadError("notification record must be an object")
        mailbox = _str(data, "mailbox_id", required=True, where="record")
        sid = _str(data, "subscription_id", required=True, where="record")
        received = _str(data, "received_at", required=True, where="record")
        kind = data.get("resource_kind")
        if kind not in RESOURCE_KINDS:
            raise PayloadError(f"record.resource_kind must be one of {RESOURCE_KINDS}")
        event = data.get("lifecycle_event")
        if event is not None and event not in LIFECYCLE_EVENTS:
            raise PayloadError("record.lifecycle_event is not a lifecycle event")
        assert mailbox is not None and sid is not None and received is not None
        return cls(
            mailbox_id=mailbox,
            resource_kind=kind,
            subscription_id=sid,
            received_at=received,
            change_type=_str(data, "change_type", required=False, where="record"),
            item_id=_str(data, "item_id", required=False, where="record"),
            lifecycle_event=event,
        )
