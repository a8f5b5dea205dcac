"""Timestamps leave the service as ISO 8601 UTC with a Z; people read and type them in
Japan time."""

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

JAPAN = ZoneInfo("Asia/Tokyo")


def japan_today() -> date:
    """Today's date where the care happens (the server's clock may run on UTC)."""
    return datetime.now(JAPAN).date()


EARLIEST_DAY = date(1900, 1, 1)
DAYS_AHEAD = 366  # a date in a record is at most a year ahead (a planned meeting); 2099 is a typo


def latest_day() -> date:
    return japan_today() + timedelta(days=DAYS_AHEAD)


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def parse_iso(text: str) -> datetime:
    """Naive UTC; ValueError for anything that is not a time, or no time in UTC
    (0001-01-01T00:00+01:00 would be in year 0)."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is not None:
        try:
            dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
        except OverflowError:
            raise ValueError("out of range in UTC")
    return dt
