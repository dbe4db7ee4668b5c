"""FetchXML condition operators: value semantics, parse-time argument checks, evaluation.

Comparisons follow Dataverse: strings and GUIDs compare case-insensitively, a lookup compares by
its id, an empty string or empty list counts as null, and a null value satisfies only ``null``
(SQL semantics: ``ne``, ``not-in``, ``not-like`` exclude nulls too). Date operators work on
the calendar of ``now``'s time zone (the user's); naive timestamps are read as UTC.
Evaluation never raises: a value that cannot be compared simply does not match.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Any, Final

#: Operators that take no value.
NO_VALUE_OPS: Final = frozenset({"null", "not-null", "eq-userid", "ne-userid"})
#: Operators that take exactly one value.
ONE_VALUE_OPS: Final = frozenset(
    {
        "eq",
        "ne",
        "like",
        "not-like",
        "begins-with",
        "ends-with",
        "on",
        "on-or-after",
        "on-or-before",
        "last-x-days",
        "next-x-days",
        "gt",
        "ge",
        "lt",
        "le",
    }
)
#: Operators that take one or more ``<value>`` children.
MANY_VALUE_OPS: Final = frozenset({"in", "not-in"})
OPERATORS: Final = NO_VALUE_OPS | ONE_VALUE_OPS | MANY_VALUE_OPS

DATE_OPS: Final = frozenset({"on", "on-or-after", "on-or-before"})
DAYS_OPS: Final = frozenset({"last-x-days", "next-x-days"})
MAX_DAYS: Final = 36_500

_GUID = re.compile(r"^\{?[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\}?$")
_TRUE: Final = frozenset({"1", "true"})
_FALSE: Final = frozenset({"0", "false"})


def check_argument(operator: str, value: str) -> str | None:
    """Why ``value`` is not a valid argument of ``operator`` (None when it is)."""
    if operator in DATE_OPS and _as_date(value, UTC) is None:
        return f"operator {operator!r} needs a date (YYYY-MM-DD), got {value!r}"
    if operator in DAYS_OPS:
        text = value.strip()
        if not text.isdigit() or not 0 <= int(text) <= MAX_DAYS:
            return f"operator {operator!r} needs whole days 0..{MAX_DAYS}, got {value!r}"
    return None


def is_null(value: Any) -> bool:
    """Dataverse null: None, an empty string, or an empty list."""
    return value is None or value == "" or (isinstance(value, list | tuple) and not value)


def _scalar(value: Any) -> Any:
    if isinstance(value, Mapping):
        if "id" in value:
            return value["id"]
        if "email" in value:
            return value["email"]
    return value


def _text(value: Any) -> str:
    text = str(value).strip()
    if _GUID.match(text):
        return text.strip("{}").lower()
    return text.casefold()


def user_key(value: Any) -> str:
    """What ``eq-userid`` compares: two values name the same user iff their keys are equal."""
    return _text(value)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _equals(value: Any, arg: str) -> bool:
    if isinstance(value, bool):
        lowered = arg.strip().lower()
        return (value and lowered in _TRUE) or (not value and lowered in _FALSE)
    if isinstance(value, int | float):
        number = _number(arg)
        return number is not None and float(value) == number
    return _text(value) == _text(arg)


@lru_cache(maxsize=512)
def _like_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for char in pattern:
        if char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _like(value: Any, pattern: str) -> bool:
    return _like_regex(pattern).fullmatch(str(value)) is not None


def _as_moment(value: Any, tz: tzinfo) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tz)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) == 10:
        try:
            return datetime.combine(date.fromisoformat(text), time(), tz)
        except ValueError:
            return None
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _as_date(value: Any, tz: tzinfo) -> date | None:
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return None
    moment = _as_moment(value, tz)
    return None if moment is None else moment.astimezone(tz).date()


def _order(value: Any, arg: str, tz: tzinfo) -> int | None:
    """-1/0/1 comparing ``value`` with ``arg`` (numbers, then timestamps, then text)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = _number(arg)
        if number is None:
            return None
        return (value > number) - (value < number)
    left, right = _as_moment(value, tz), _as_moment(arg, tz)
    if left is not None and right is not None:
        return (left > right) - (left < right)
    if isinstance(value, bool | int | float):
        return None
    a, b = _text(value), _text(arg)
    return (a > b) - (a < b)


def _in_days(value: Any, days: str, now: datetime, *, past: bool) -> bool:
    tz = now.tzinfo or UTC
    moment = _as_moment(value, tz)
    if moment is None:
        return False
    today = now.astimezone(tz).date()
    if past:
        start = datetime.combine(today - timedelta(days=int(days)), time(), tz)
        return start <= moment <= now
    end = datetime.combine(today + timedelta(days=int(days) + 1), time(), tz)
    return now <= moment < end


def _one(operator: str, value: Any, args: Sequence[str], user_id: str, now: datetime) -> bool:
    """``operator`` on a single non-null scalar ``value``."""
    tz = now.tzinfo or UTC
    arg = args[0] if args else ""
    simple: dict[str, Callable[[], bool]] = {
        "eq": lambda: _equals(value, arg),
        "ne": lambda: not _equals(value, arg),
        "in": lambda: any(_equals(value, a) for a in args),
        "not-in": lambda: not any(_equals(value, a) for a in args),
        "like": lambda: _like(value, arg),
        "not-like": lambda: not _like(value, arg),
        "begins-with": lambda: _like(value, arg + "%"),
        "ends-with": lambda: _like(value, "%" + arg),
        "eq-userid": lambda: _text(value) == _text(user_id),
        "ne-userid": lambda: _text(value) != _text(user_id),
        "last-x-days": lambda: _in_days(value, arg, now, past=True),
        "next-x-days": lambda: _in_days(value, arg, now, past=False),
    }
    if operator in simple:
        return simple[operator]()
    if operator in DATE_OPS:
        got, want = _as_date(value, tz), _as_date(arg, tz)
        if got is None or want is None:
            return False
        return {"on": got == want, "on-or-after": got >= want, "on-or-before": got <= want}[
            operator
        ]
    order = _order(value, arg, tz)
    if order is None:
        return False
    return {"gt": order > 0, "ge": order >= 0, "lt": order < 0, "le": order <= 0}.get(
        operator, False
    )


_NEGATIVE: Final = frozenset({"ne", "not-in", "not-like", "ne-userid"})


def evaluate(operator: str, value: Any, args: Sequence[str], user_id: str, now: datetime) -> bool:
    """Whether a record value satisfies ``operator`` with its arguments ``args``."""
    if operator == "null":
        return is_null(value)
    if operator == "not-null":
        return not is_null(value)
    if is_null(value):
        return False
    if isinstance(value, list | tuple):
        items = [_scalar(v) for v in value if not is_null(v)]
        results = [_one(operator, item, args, user_id, now) for item in items]
        return all(results) if operator in _NEGATIVE else any(results)
    return _one(operator, _scalar(value), args, user_id, now)
