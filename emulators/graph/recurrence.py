"""Expansion of Graph ``patternedRecurrence`` into occurrence dates, and time zone handling."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import GraphError

_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_INDEX = {"first": 0, "second": 1, "third": 2, "fourth": 3}
#: Windows zone names (as Outlook keeps them; Graph accepts them and IANA names alike) and the
#: IANA zone each one follows
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
    "greenwich standard time": "Atlantic/Reykjavik",
    "central european standard time": "Europe/Warsaw",
    "e. europe standard time": "Europe/Chisinau",
    "fle standard time": "Europe/Kyiv",
    "gtb standard time": "Europe/Bucharest",
    "russian standard time": "Europe/Moscow",
    "turkey standard time": "Europe/Istanbul",
    "israel standard time": "Asia/Jerusalem",
    "jordan standard time": "Asia/Amman",
    "syria standard time": "Asia/Damascus",
    "middle east standard time": "Asia/Beirut",
    "egypt standard time": "Africa/Cairo",
    "south africa standard time": "Africa/Johannesburg",
    "morocco standard time": "Africa/Casablanca",
    "w. central africa standard time": "Africa/Lagos",
    "e. africa standard time": "Africa/Nairobi",
    "arab standard time": "Asia/Riyadh",
    "arabian standard time": "Asia/Dubai",
    "iran standard time": "Asia/Tehran",
    "afghanistan standard time": "Asia/Kabul",
    "georgian standard time": "Asia/Tbilisi",
    "caucasus standard time": "Asia/Yerevan",
    "azerbaijan standard time": "Asia/Baku",
    "pakistan standard time": "Asia/Karachi",
    "west asia standard time": "Asia/Tashkent",
    "ekaterinburg standard time": "Asia/Yekaterinburg",
    "sri lanka standard time": "Asia/Colombo",
    "nepal standard time": "Asia/Kathmandu",
    "central asia standard time": "Asia/Almaty",
    "bangladesh standard time": "Asia/Dhaka",
    "n. central asia standard time": "Asia/Novosibirsk",
    "myanmar standard time": "Asia/Yangon",
    "se asia standard time": "Asia/Bangkok",
    "north asia standard time": "Asia/Krasnoyarsk",
    "china standard time": "Asia/Shanghai",
    "singapore standard time": "Asia/Singapore",
    "taipei standard time": "Asia/Taipei",
    "w. australia standard time": "Australia/Perth",
    "korea standard time": "Asia/Seoul",
    "yakutsk standard time": "Asia/Yakutsk",
    "cen. australia standard time": "Australia/Adelaide",
    "aus central standard time": "Australia/Darwin",
    "e. australia standard time": "Australia/Brisbane",
    "tasmania standard time": "Australia/Hobart",
    "west pacific standard time": "Pacific/Port_Moresby",
    "vladivostok standard time": "Asia/Vladivostok",
    "new zealand standard time": "Pacific/Auckland",
    "fiji standard time": "Pacific/Fiji",
    "chatham islands standard time": "Pacific/Chatham",
    "tonga standard time": "Pacific/Tongatapu",
    "line islands standard time": "Pacific/Kiritimati",
    "dateline standard time": "Etc/GMT+12",
    "utc-11": "Etc/GMT+11",
    "utc-02": "Etc/GMT+2",
    "utc+12": "Etc/GMT-12",
    "hawaiian standard time": "Pacific/Honolulu",
    "marquesas standard time": "Pacific/Marquesas",
    "alaskan standard time": "America/Anchorage",
    "pacific standard time (mexico)": "America/Tijuana",
    "us mountain standard time": "America/Phoenix",
    "mountain standard time (mexico)": "America/Mazatlan",
    "central america standard time": "America/Guatemala",
    "central standard time (mexico)": "America/Mexico_City",
    "canada central standard time": "America/Regina",
    "sa pacific standard time": "America/Bogota",
    "us eastern standard time": "America/Indiana/Indianapolis",
    "venezuela standard time": "America/Caracas",
    "atlantic standard time": "America/Halifax",
    "sa western standard time": "America/La_Paz",
    "pacific sa standard time": "America/Santiago",
    "newfoundland standard time": "America/St_Johns",
    "e. south america standard time": "America/Sao_Paulo",
    "argentina standard time": "America/Argentina/Buenos_Aires",
    "sa eastern standard time": "America/Cayenne",
    "azores standard time": "Atlantic/Azores",
    "cape verde standard time": "Atlantic/Cape_Verde",
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


_PREFER_ZONE = re.compile(r'outlook\.timezone\s*=\s*"([^"]*)"', re.IGNORECASE)


def preferred_zone(prefer: str | None) -> str:
    """The zone of ``Prefer: outlook.timezone="..."``; Graph answers in UTC without it."""
    found = _PREFER_ZONE.search(prefer or "")
    return found.group(1).strip() if found and found.group(1).strip() else "UTC"


def present_times(body: Any, name: str) -> None:
    """Express the ``start``/``end`` of every event in ``body`` (an item or a collection) in
    the zone ``name``, as Graph does for ``Prefer: outlook.timezone`` (UTC without it).
    All-day events keep their own times; an unknown zone is Graph's 400."""
    target = UTC if name.upper() == "UTC" else zone(name)
    items = body.get("value") if isinstance(body, dict) and "value" in body else [body]
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or item.get("isAllDay"):
            continue
        for key in ("start", "end"):
            dtz = item.get(key)
            if not isinstance(dtz, dict) or not isinstance(dtz.get("dateTime"), str):
                continue
            local = to_utc(dtz).astimezone(target)
            item[key] = {"dateTime": local.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": name}


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
