"""Quota periods in a tenant's timezone: which day and month a moment falls in, and when each resets.

Days and months are keyed by their local date text (`2025-05-03`, `2025-05`), so a counter row belongs to one
period and needs no reset job: a new period is a new row.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: str) -> ZoneInfo:
    """The IANA timezone `name` (e.g. `Europe/Paris`); an unknown one is a ValueError with an example."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r}: use an IANA name such as UTC or Europe/Paris") from None


def day_key(now: datetime, tz: ZoneInfo) -> str:
    return now.astimezone(tz).strftime("%Y-%m-%d")


def month_key(now: datetime, tz: ZoneInfo) -> str:
    return now.astimezone(tz).strftime("%Y-%m")


def next_day(now: datetime, tz: ZoneInfo) -> datetime:
    """Local midnight after `now` in `tz`: when daily limits reset."""
    local = now.astimezone(tz)
    return datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=tz)


def next_month(now: datetime, tz: ZoneInfo) -> datetime:
    """Local midnight of the first of the next month in `tz`: when monthly limits reset."""
    local = now.astimezone(tz)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return datetime(year, month, 1, tzinfo=tz)


def utcnow() -> datetime:
    return datetime.now(UTC)
