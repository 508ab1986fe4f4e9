"""Times as nbgrader writes them: UTC, ``YYYY-MM-DD HH:MM:SS.ffffff`` (hand-in times, due dates, grade files)."""
from __future__ import annotations

import datetime as dt
import re

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # nbgrader's (its timestamp.txt without the zone; its export's column)
_STAMP = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?\s*(.*)$")
_OFFSET = re.compile(r"^(?:UTC|GMT)?([+-])(\d{2}):?(\d{2})?$")


def normalize_timestamp(text: str) -> str:
    """A timestamp in UTC as nbgrader writes it, ``YYYY-MM-DD HH:MM:SS.ffffff``; '' if ``text`` is not one.

    Reads what nbgrader's ``timestamp.txt`` holds (``2024-05-02 09:30:00.000000 UTC``, another zone name such as
    ``Europe/Berlin`` or an offset ``+0200``), ISO 8601 (``2024-05-02T09:30:00Z``) and naive times (taken as UTC,
    as nbgrader does)."""
    match = _STAMP.match(text.strip())
    if not match:
        return ""
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        stamp = dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0),
                            int((fraction or "0")[:6].ljust(6, "0")))
    except ValueError:
        return ""
    zone = zone.strip()
    if zone and zone.upper() not in ("Z", "UTC", "GMT"):
        offset = _OFFSET.match(zone.upper())
        if offset:
            sign, hours, minutes = offset.groups()
            delta = dt.timedelta(hours=int(hours), minutes=int(minutes or 0))
            stamp -= delta if sign == "+" else -delta
        else:
            try:
                from zoneinfo import ZoneInfo

                stamp = stamp.replace(tzinfo=ZoneInfo(zone)).astimezone(dt.timezone.utc).replace(tzinfo=None)
            except (ValueError, KeyError, OSError, ImportError):  # zoneinfo raises ZoneInfoNotFoundError (a KeyError)
                return ""
    return stamp.strftime(TIMESTAMP_FORMAT)
