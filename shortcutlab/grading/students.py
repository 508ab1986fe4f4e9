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


def submission_timestamp(path: str | Path) -> str:
    """When the submission was handed in: nbgrader's ``timestamp.txt`` beside it if there is one, else the
    file's modification time (UTC, nbgrader's format ``YYYY-MM-DD HH:MM:SS.ffffff``)."""
    path = Path(path)
    stamp = path.parent / TIMESTAMP_FILE
    if stamp.is_file():
        try:
            text = stamp.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            text = ""
        if text:
            return text
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return ""
    return str(dt.datetime.fromtimestamp(mtime, dt.timezone.utc).replace(tzinfo=None))
