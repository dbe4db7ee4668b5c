"""Expansion of Graph ``patternedRecurrence`` into occurrence dates, and time zone handling."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import GraphError

_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_INDEX = {"first": 0, "second": 1, "third": 2, "fourth": 3}
_WINDOWS_ZONES = {
    "utc": "UTC",
    "coordinated universal time": "UTC",
    "gmt standard time": "Europe/London",
    "w. europe standard time": "Europe/Berlin",
    "central europe standard time": "Europe/Budapest",
    "romance standard time": "Europe/Paris",
    "eastern standard time": "America/New_York",
    "central standard time": "America/Chicago",
    "mountain standard time": "America/Denver",
    "pacific standard time": "America/Los_Angeles",
    "tokyo standard time": "Asia/Tokyo",
    "india standard time": "Asia/Kolkata",
    "aus eastern standard time": "Australia/Sydney",
}
_MAX_DAYS = 366 * 20


def zone(name: str) -> ZoneInfo:
    """A zone from an IANA or common Windows name; 400 for an unknown one."""
    key = _WINDOWS_ZONES.get(name.strip().lower(), name.strip())
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        raise GraphError(
            400,
            "TimeZoneNotSupportedException",
            f"A valid TimeZone value must be specified. "
            f"The following TimeZone value is not supported: '{name}'.",
        ) from None


def to_utc(dtz: Any) -> datetime:
    """``{"dateTime", "timeZone"}`` → aware UTC datetime; 400 when malformed."""
    if not isinstance(dtz, dict) or not isinstance(dtz.get("dateTime"), str):
        raise GraphError(400, "ErrorInvalidRequest", "start and end need dateTime and timeZone.")
    text = dtz["dateTime"].rstrip("Z")
    if "." in text:
        text = text.split(".")[0]
    try:
        local = datetime.fromisoformat(text)
    except ValueError:
        raise GraphError(
            400, "ErrorInvalidRequest", f"Invalid dateTime '{dtz['dateTime']}'."
        ) from None
    tz = zone(str(dtz.get("timeZone") or "UTC"))
    return local.replace(tzinfo=tz).astimezone(UTC)


def local_start(dtz: dict[str, Any]) -> tuple[datetime, ZoneInfo]:
    """The naive local start and its zone."""
    text = str(dtz["dateTime"]).rstrip("Z").split(".")[0]
    return datetime.fromisoformat(text), zone(str(dtz.get("timeZone") or "UTC"))


def graph_utc(moment: datetime) -> dict[str, str]:
    """A UTC ``dateTimeTimeZone`` as Graph writes it."""
    return {
        "dateTime": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000"),
        "timeZone": "UTC",
    }


def _months(a: date, b: date) -> int:
    return (b.year - a.year) * 12 + b.month - a.month


def _nth_weekday(day: date) -> tuple[int, bool]:
    index = (day.day - 1) // 7
    last = (day + timedelta(days=7)).month != day.month
    return index, last


def _relative_ok(pattern: dict[str, Any], day: date) -> bool:
    if _DAYS[day.weekday()] not in (pattern.get("daysOfWeek") or []):
        return False
    index, last = _nth_weekday(day)
    wanted = pattern.get("index") or "first"
    return last if wanted == "last" else index == _INDEX[wanted]


def validate(recurrence: Any) -> None:
    """400 unless ``recurrence`` has a usable pattern and range."""
    if recurrence is None:
        return
    pattern, rng = recurrence.get("pattern"), recurrence.get("range")
    if not isinstance(pattern, dict) or not isinstance(rng, dict):
        raise GraphError(400, "ErrorInvalidRecurrence", "Recurrence needs pattern and range.")
    if (pattern.get("interval") or 1) < 1:
        raise GraphError(400, "ErrorInvalidRecurrence", "interval must be at least 1.")
    kind = pattern.get("type")
    if kind in ("weekly", "relativeMonthly", "relativeYearly") and not pattern.get("daysOfWeek"):
        raise GraphError(400, "ErrorInvalidRecurrence", f"A {kind} pattern needs daysOfWeek.")
    if kind in ("absoluteMonthly", "absoluteYearly") and not pattern.get("dayOfMonth"):
        raise GraphError(400, "ErrorInvalidRecurrence", f"A {kind} pattern needs dayOfMonth.")
    try:
        date.fromisoformat(str(rng.get("startDate")))
        if rng.get("type") == "endDate":
            date.fromisoformat(str(rng.get("endDate")))
    except ValueError:
        raise GraphError(400, "ErrorInvalidRecurrence", "Invalid startDate or endDate.") from None
    if rng.get("type") == "numbered" and (rng.get("numberOfOccurrences") or 0) < 1:
        raise GraphError(400, "ErrorInvalidRecurrence", "numberOfOccurrences must be positive.")


def occurrence_dates(recurrence: dict[str, Any], until: date) -> Iterator[date]:
    """Dates of the series' occurrences, in order, up to ``until`` (inclusive)."""
    pattern, rng = recurrence["pattern"], recurrence["range"]
    start = date.fromisoformat(rng["startDate"])
    end = date.fromisoformat(rng["endDate"]) if rng.get("type") == "endDate" else until
    remaining = rng.get("numberOfOccurrences") if rng.get("type") == "numbered" else None
    interval = pattern.get("interval") or 1
    kind = pattern.get("type")
    first_day = _DAYS.index(pattern.get("firstDayOfWeek") or "sunday")
    week0 = start - timedelta(days=(start.weekday() - first_day) % 7)
    day = start
    for _ in range(_MAX_DAYS):
        if day > min(end, until) or remaining == 0:
            return
        if kind == "daily":
            ok = (day - start).days % interval == 0
        elif kind == "weekly":
            weeks = (day - week0).days // 7
            ok = _DAYS[day.weekday()] in pattern.get("daysOfWeek", []) and weeks % interval == 0
        elif kind == "absoluteMonthly":
            ok = day.day == pattern.get("dayOfMonth") and _months(start, day) % interval == 0
        elif kind == "relativeMonthly":
            ok = _relative_ok(pattern, day) and _months(start, day) % interval == 0
        elif kind == "absoluteYearly":
            ok = (
                day.month == pattern.get("month")
                and day.day == pattern.get("dayOfMonth")
                and (day.year - start.year) % interval == 0
            )
        else:
            ok = (
                day.month == pattern.get("month")
                and _relative_ok(pattern, day)
                and (day.year - start.year) % interval == 0
            )
        if ok:
            yield day
            if remaining is not None:
                remaining -= 1
        day += timedelta(days=1)
