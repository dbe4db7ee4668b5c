"""Validators of ``dynasync`` arguments, as plain functions (``ValueError`` with the reason,
also used on CSV rows by ``mailbox import``) and as click parameter types (one clear line).

Imports nothing heavy: every command's module imports this before it parses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import click

T = TypeVar("T")

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_IDENT = re.compile(r"^[A-Za-z0-9._@\-]{1,512}$")
_UPN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_FOLDER = re.compile(r"^[A-Za-z0-9=_\-]{1,512}$")
_TABLE = re.compile(r"^[a-z_]{1,64}$")
_REASON = re.compile(r"^[a-z_]{1,32}$")
_PREFIX = re.compile(r"^[A-Za-z0-9._-]{0,64}$")


def guid(text: str) -> str:
    """A GUID, braces and case as Dynamics shows them accepted, in lower case."""
    bare = text.strip()
    if bare.startswith("{") and bare.endswith("}"):
        bare = bare[1:-1]
    if not GUID_RE.match(bare):
        raise ValueError(f"expected a GUID like 0000…-…-…-…-000000000000, got {text!r}")
    return bare.lower()


def ident(text: str) -> str:
    """An organisation or mailbox id: 1-512 of letters, digits and ``. _ @ -``."""
    if not _IDENT.match(text):
        raise ValueError(f"expected 1-512 characters of letters, digits and . _ @ -, got {text!r}")
    return text


def upn(text: str) -> str:
    """A user principal name or SMTP address (``name@domain.tld``)."""
    if len(text) > 320 or not _UPN.match(text):
        raise ValueError(f"expected a user principal name like ann@contoso.com, got {text!r}")
    return text


def folder(text: str) -> str:
    """A Graph mail folder id."""
    if not _FOLDER.match(text):
        raise ValueError(
            f"expected a Graph mail folder id (letters, digits and = _ -), got {text!r}"
        )
    return text


def regarding(text: str) -> tuple[str, str]:
    """``TABLE:GUID`` of a CRM record."""
    table, sep, row_id = text.partition(":")
    if not sep or not _TABLE.match(table):
        raise ValueError(
            f"expected TABLE:GUID of the record, like account:0000…-000000000000, got {text!r}"
        )
    return table, guid(row_id)


def org_url(text: str) -> str:
    """An organisation's http(s) URL, without a trailing slash."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s) URL of the organisation, got {text!r}")
    if len(text) > 2048 or any(c.isspace() for c in text):
        raise ValueError(f"expected an http(s) URL without spaces, got {text!r}")
    return text.rstrip("/")


def display_name(text: str) -> str:
    """A display name of 1-256 characters."""
    if not text.strip() or len(text) > 256 or not text.isprintable():
        raise ValueError("a display name needs 1-256 printable characters")
    return text


def token_prefix(text: str) -> str:
    """A tracking token prefix (``schemas.token`` decides)."""
    from schemas.token import TokenPrefixError, TrackingTokenFormat

    try:
        return TrackingTokenFormat(text).prefix
    except TokenPrefixError as exc:
        raise ValueError(str(exc)) from None


def reason(text: str) -> str:
    """A dlq reason word."""
    if not _REASON.match(text):
        raise ValueError(f"expected a reason like poison, refused, paused or alert, got {text!r}")
    return text


def topic_prefix(text: str) -> str:
    """A topic name prefix."""
    if not _PREFIX.match(text):
        raise ValueError(f"expected up to 64 of letters, digits and . _ -, got {text!r}")
    return text


def seconds(low: float, high: float, *, low_open: bool = True) -> Callable[[str], float]:
    """Seconds within (low, high] (or [low, high])."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected seconds, got {text!r}") from None
        above = value > low if low_open else value >= low
        if not math.isfinite(value) or not above or value > high:
            lo = "(" if low_open else "["
            raise ValueError(f"expected seconds within {lo}{low:g}, {high:g}], got {text!r}")
        return value

    return parse


def whole(low: int, high: int) -> Callable[[str], int]:
    """A whole number within [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"expected a number within {low}-{high}, got {value}")
        return value

    return parse


class Checked(click.ParamType[T, Any]):
    """A click type over a validator function: its ``ValueError`` is the one-line error."""

    def __init__(self, name: str, check: Callable[[str], T]) -> None:
        self.name = name
        self._check = check

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> T:
        if not isinstance(value, str):
            return cast(T, value)  # a default given already converted
        try:
            return self._check(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


GUID = Checked("guid", guid)
IDENT = Checked("id", ident)
UPN = Checked("upn", upn)
FOLDER = Checked("folder", folder)
REGARDING = Checked("table:guid", regarding)
ORG_URL = Checked("url", org_url)
NAME = Checked("name", display_name)
TOKEN_PREFIX = Checked("prefix", token_prefix)
REASON = Checked("reason", reason)
TOPIC_PREFIX = Checked("prefix", topic_prefix)
KAFKA_TIMEOUT = Checked("seconds", seconds(0.5, 600, low_open=False))
POSITIVE = Checked("n", whole(1, 1_000_000))
PORT = Checked("port", whole(1, 65535))
