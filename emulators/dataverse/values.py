"""Typed column values: checking what clients send, and normalising it for storage."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from .config import is_guid
from .errors import bad_request
from .metadata import ColType, Column

_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def now_iso(moment: datetime) -> str:
    """A UTC timestamp the way Dataverse writes it (second precision, ``Z``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(text: str) -> str | None:
    """Normalise an ISO 8601 timestamp with zone to ``YYYY-MM-DDTHH:MM:SSZ``, else None."""
    if not _DATETIME.match(text):
        return None
    fixed = text.replace("Z", "+00:00")
    frac = re.search(r"\.(\d+)", fixed)
    if frac is not None and len(frac.group(1)) > 6:
        fixed = fixed.replace(frac.group(0), "." + frac.group(1)[:6])
    try:
        moment = datetime.fromisoformat(fixed)
    except ValueError:
        return None
    return now_iso(moment)


def parse_date(text: str) -> str | None:
    """Validate a ``YYYY-MM-DD`` date, else None."""
    if not _DATE.match(text):
        return None
    try:
        date.fromisoformat(text)
    except ValueError:
        return None
    return text


def _mismatch(col: Column, value: Any) -> Exception:
    shown = repr(value) if not isinstance(value, str) else f"'{value[:60]}'"
    return bad_request(
        f"Cannot convert the literal {shown} to the expected type '{col.type.edm}' "
        f"for property '{col.name}'."
    )


def coerce(col: Column, value: Any) -> Any:
    """Check a JSON value for ``col`` and return its stored form (ApiError 400 if wrong)."""
    if value is None:
        return None
    kind = col.type
    if kind in (ColType.STRING, ColType.MEMO):
        if not isinstance(value, str):
            raise _mismatch(col, value)
        if col.max_length is not None and len(value) > col.max_length:
            raise bad_request(
                f"A validation error occurred. The length of the '{col.name}' attribute "
                f"exceeded the maximum allowed length of '{col.max_length}'.",
                code="0x80044331",
            )
        return value
    if kind in (ColType.INT, ColType.BIGINT):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _mismatch(col, value)
        low = col.min_value if col.min_value is not None else -(2**31)
        high = col.max_value if col.max_value is not None else 2**31 - 1
        if not low <= value <= high:
            raise bad_request(
                f"A validation error occurred. The value {value} of '{col.name}' is outside "
                f"the valid range ({low} to {high}).",
                code="0x80044331",
            )
        return value
    if kind == ColType.DECIMAL:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise _mismatch(col, value)
        try:
            return float(Decimal(str(value)))
        except InvalidOperation:
            raise _mismatch(col, value) from None
    if kind == ColType.BOOL:
        if not isinstance(value, bool):
            raise _mismatch(col, value)
        return value
    if kind == ColType.GUID:
        if not isinstance(value, str) or not is_guid(value):
            raise _mismatch(col, value)
        return value.lower()
    if kind == ColType.DATETIME:
        parsed = parse_datetime(value) if isinstance(value, str) else None
        if parsed is None:
            raise _mismatch(col, value)
        return parsed
    if kind == ColType.DATE:
        parsed = parse_date(value) if isinstance(value, str) else None
        if parsed is None:
            raise _mismatch(col, value)
        return parsed
    raise _mismatch(col, value)
