"""Opaque identifiers, change keys and timestamps."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from datetime import UTC, datetime


def new_item_id() -> str:
    """An opaque immutable id in the style of Exchange ids (URL-safe base64)."""
    raw = base64.urlsafe_b64encode(os.urandom(39)).decode().rstrip("=")
    return "AAMkA" + raw


def derived_id(*parts: str) -> str:
    """A deterministic opaque id from ``parts`` (for occurrences of a series)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return "AAMkO" + base64.urlsafe_b64encode(digest + digest[:9]).decode().rstrip("=")


def new_guid() -> str:
    """A random GUID string."""
    return str(uuid.uuid4())


def new_change_key() -> str:
    """A fresh change key (standard base64, as Exchange sends)."""
    return base64.b64encode(os.urandom(15)).decode()


def etag_of(change_key: str) -> str:
    """The weak etag Graph derives from a change key."""
    return f'W/"{change_key}"'


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def iso_z(moment: datetime) -> str:
    """``2024-01-01T10:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime | None:
    """Parse an ISO 8601 date-time (naive means UTC); ``None`` if it is not one."""
    candidate = text.strip()
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    if "." in candidate:
        head, _, tail = candidate.partition(".")
        digits = ""
        rest = tail
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        candidate = head + ("." + digits[:6] if digits else "") + rest
    try:
        moment = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment
