"""Who handed a submission in, and when: student ids from file and folder names, timestamps.

Layouts understood (``<lesson>`` is a lesson id of the course):

- ``submitted/<student>/<lesson>.ipynb`` and nbgrader's ``submitted/<student>/<lesson>/<lesson>.ipynb``
- ``<lesson>/<student>.ipynb`` (a folder per lesson)
- ``<student>_<lesson>.ipynb``, ``<lesson>-<student>.py`` (the lesson id inside the file name)
"""
from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable
from pathlib import Path

_SEPARATORS = "_-. "
_UNSAFE = re.compile(r"[^A-Za-z0-9_.@+-]+")
TIMESTAMP_FILE = "timestamp.txt"  # nbgrader's submitted/<student>/<assignment>/timestamp.txt


def clean_id(text: str) -> str:
    """A student id usable as a file name: runs of other characters become '_', no leading dots."""
    parts = [part for part in _UNSAFE.sub("_", text.strip()).split("_") if part.strip(".")]
    return "_".join(parts).lstrip(".") or "unknown"


def student_id(path: str | Path, lesson: str | None, lesson_ids: Iterable[str] = ()) -> str:
    """The student a submission belongs to: its file name without the lesson id (``alice_03_gradcam.ipynb``,
    ``03_gradcam/alice.py``), or, for a file named after its lesson, the nearest folder not named after a
    lesson (``submitted/alice/03_gradcam.ipynb``, ``submitted/alice/03_gradcam/03_gradcam.ipynb``)."""
    path = Path(os.path.normpath(Path(path).absolute()))
    lessons = set(lesson_ids) | ({lesson} if lesson else set())
    stem = path.stem
    if lesson and lesson in stem:
        rest = stem.replace(lesson, " ", 1).strip(_SEPARATORS)
        if rest:
            return clean_id(rest)
        for folder in path.parents:
            if folder.name and folder.name not in lessons:
                return clean_id(folder.name)
    return clean_id(stem)


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


def submission_timestamp(path: str | Path) -> str:
    """When the submission was handed in, in UTC and nbgrader's format (``YYYY-MM-DD HH:MM:SS.ffffff``):
    nbgrader's ``timestamp.txt`` beside it if there is one that can be read, else the file's modification time."""
    path = Path(path)
    stamp = path.parent / TIMESTAMP_FILE
    if stamp.is_file():
        try:
            text = normalize_timestamp(stamp.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            text = ""
        if text:
            return text
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return ""
    return dt.datetime.fromtimestamp(mtime, dt.timezone.utc).replace(tzinfo=None).strftime(TIMESTAMP_FORMAT)
