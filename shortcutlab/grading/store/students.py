"""Who handed a submission in, and when: student ids, names and hand-in times from file and folder names, and from
what learning management systems put beside their downloads.

Layouts understood (``<lesson>`` is a lesson id of the course; ``identify`` says which one a file matched):

- ``canvas``: Canvas's "Download Submissions", ``smithjohn[_LATE]_<user id>_<submission id>_<file>`` (the user id is
  the student id, the name part the display name, ``LATE`` marks a late hand-in, ``<file>-1`` a resubmission)
- ``moodle``: Moodle's "Download all submissions", ``<Full Name>_<participant id>_assignsubmission_file_<file>`` or the
  same name as a folder holding the file (the participant id differs between assignments, so the full name is the
  student id unless a roster matches it)
- ``gradescope``: Gradescope's "Export Submissions", ``submission_<id>/<file>`` beside ``submission_metadata.yml``
  (each submitter's name, student id ``sid`` and email; ``created_at`` is the hand-in time)
- ``nbgrader``: ``submitted/<student>/<lesson>/<lesson>.ipynb`` with ``timestamp.txt`` (the hand-in time)
- ``folder``: ``submitted/<student>/<lesson>.ipynb``
- ``file name``: ``<student>_<lesson>.ipynb``, ``<lesson>-<student>.py`` (the lesson id inside the file name), and
  ``<lesson>/<student>.ipynb`` or any file not named after its lesson (the file name is the student)

A browser's duplicate download ``<name> (1).ipynb`` is a resubmission of ``<name>.ipynb``. Hand-in times come only from
the LMS (nbgrader's ``timestamp.txt``, Gradescope's metadata), never from a file's modification time, which a copy or an
unzip resets.
"""
from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from shortcutlab.timestamps import TIMESTAMP_FORMAT, normalize_timestamp

_SEPARATORS = "_-. "
_UNSAFE = re.compile(r"[^A-Za-z0-9_.@+-]+")
_PLAIN = re.compile(r"^[\w.@+-]+(?: [\w.@+-]+)*$")  # what a student id or name written in a file name looks like
TIMESTAMP_FILE = "timestamp.txt"  # nbgrader's submitted/<student>/<assignment>/timestamp.txt
GRADESCOPE_METADATA = "submission_metadata.yml"
_CANVAS = re.compile(r"^(?P<name>[A-Za-z0-9]+?)(?P<late>_LATE)?_(?P<user>\d+)_(?P<submission>\d+)_(?P<file>.+)$")
_MOODLE = re.compile(r"^(?P<name>.+?)_(?P<participant>\d+)_assignsubmission_(?:file|onlinetext)_(?P<file>.*)$")
_GRADESCOPE_FOLDER = re.compile(r"^submission_(?P<id>\d+)$")
_DUPLICATE = re.compile(r"^(?P<stem>.*?) \((?P<number>\d+)\)$")  # a browser's "name (1)"
_RESUBMISSION = re.compile(r"^(?P<stem>.*?)-(?P<number>\d+)$")  # Canvas's "name-1"
CANVAS, MOODLE, GRADESCOPE, NBGRADER, FOLDER, FILE_NAME = "canvas", "moodle", "gradescope", "nbgrader", "folder", \
    "file name"


def clean_id(text: str) -> str:
    """A student id usable as a file name: runs of other characters become '_', no leading dots."""
    parts = [part for part in _UNSAFE.sub("_", text.strip()).split("_") if part.strip(".")]
    return "_".join(parts).lstrip(".") or "unknown"


@dataclass(frozen=True)
class Handin:
    """Who handed a file in and how, as its name, its folders and the LMS's files beside it say.

    ``layout`` is the layout recognised (``CANVAS`` ... ``FILE_NAME``), '' if none was (the id is then the file name,
    cleaned, and worth a warning); ``attempt`` numbers resubmissions (0 for the first); ``late`` is the LMS's own mark
    (Canvas's ``LATE``); ``timestamp`` the hand-in time the LMS recorded (UTC, nbgrader's format) or ''.
    """

    student: str
    layout: str = ""
    name: str = ""
    email: str = ""
    attempt: int = 0
    late: bool = False
    timestamp: str = ""


def _split_attempt(stem: str, canvas: bool = False) -> tuple[str, int]:
    """A file stem without its duplicate marker, and the resubmission number it gave (0 without one)."""
    match = _DUPLICATE.match(stem) or (_RESUBMISSION.match(stem) if canvas else None)
    return (match["stem"], int(match["number"])) if match else (stem, 0)


def _without_lesson(stem: str, lesson: str) -> tuple[str, int] | None:
    """What a file stem holds besides ``lesson`` (None if it does not hold it) and a resubmission number."""
    stem, attempt = _split_attempt(stem)
    if lesson not in stem:
        return None
    rest = stem.replace(lesson, " ", 1).strip(_SEPARATORS)
    trailing = re.match(r"^(?:\(?(\d+)\)?)$", rest)  # "03_gradcam-1" or "03_gradcam (2)": a resubmission
    if trailing:
        return "", attempt or int(trailing[1])
    return rest, attempt


def _folder_student(path: Path, lessons: set[str]) -> str | None:
    for folder in path.parents:
        if folder.name and folder.name not in lessons and not _GRADESCOPE_FOLDER.match(folder.name):
            return folder.name
    return None


def identify(path: str | Path, lesson: str | None, lesson_ids: Iterable[str] = ()) -> Handin:
    """Who handed ``path`` in (see the module's doc for the layouts), for the lesson ``lesson``."""
    path = Path(path).absolute()
    lessons = set(lesson_ids) | ({lesson} if lesson else set())
    gradescope = _gradescope_submitter(path)
    if gradescope is not None:
        return gradescope
    canvas = _CANVAS.match(path.name)
    if canvas:
        _, attempt = _split_attempt(Path(canvas["file"]).stem, canvas=True)
        return Handin(canvas["user"], CANVAS, name=canvas["name"], attempt=attempt, late=bool(canvas["late"]))
    for name in (path.name, path.parent.name):
        moodle = _MOODLE.match(name)
        if moodle:  # the file's own name, after the prefix (or whole, in a folder per submission)
            _, attempt = _split_attempt(Path(moodle["file"]).stem if name == path.name else path.stem)
            return Handin(clean_id(moodle["name"]), MOODLE, name=moodle["name"].strip(), attempt=attempt)
    stamp = _nbgrader_timestamp(path)
    split = _without_lesson(path.stem, lesson) if lesson else None
    if split is not None and not split[0]:  # named after its lesson: the student is a folder above
        student = _folder_student(path, lessons)
        if student is not None:
            layout = NBGRADER if path.parent.name == lesson else FOLDER
            return Handin(clean_id(student), layout, attempt=split[1], timestamp=stamp)
        return Handin(clean_id(path.stem), "", attempt=split[1], timestamp=stamp)
    rest, attempt = split if split is not None else _split_attempt(path.stem)
    layout = FILE_NAME if rest and _PLAIN.match(rest) else ""
    return Handin(clean_id(rest or path.stem), layout, attempt=attempt, timestamp=stamp)


def student_id(path: str | Path, lesson: str | None, lesson_ids: Iterable[str] = ()) -> str:
    """The student a submission belongs to (``identify(...).student``)."""
    return identify(path, lesson, lesson_ids).student


# ----------------------------------------------------------------------------- what LMS exports put beside files


def _nbgrader_timestamp(path: Path) -> str:
    """nbgrader's ``timestamp.txt`` beside the file, normalised; '' if there is none that can be read."""
    stamp = path.parent / TIMESTAMP_FILE
    if not stamp.is_file():
        return ""
    try:
        return normalize_timestamp(stamp.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return ""


def _gradescope_submitter(path: Path) -> Handin | None:
    """The submitter of a file in a Gradescope export's ``submission_<id>/`` folder, from the export's
    ``submission_metadata.yml`` (its first submitter: a group's hand-in counts for its first member)."""
    for folder in list(path.parents)[:3]:
        match = _GRADESCOPE_FOLDER.match(folder.name)
        if not match:
            continue
        for root in list(folder.parents)[:2]:
            metadata = _gradescope_metadata(str(root / GRADESCOPE_METADATA))
            entry = metadata.get(folder.name)
            if entry is not None:
                submitters = _field(entry, "submitters") or []
                first = submitters[0] if isinstance(submitters, list) and submitters else {}
                first = first if isinstance(first, dict) else {}
                sid, email, name = (str(_field(first, key) or "").strip() for key in ("sid", "email", "name"))
                student = clean_id(sid or email or name or folder.name)
                return Handin(student, GRADESCOPE, name=name, email=email,
                              timestamp=_as_timestamp(_field(entry, "created_at")))
    return None


def _field(entry: dict, key: str) -> object:
    """A field of Gradescope's metadata, written with Ruby's symbol colon (``:sid:``) or without."""
    return entry.get(f":{key}", entry.get(key)) if isinstance(entry, dict) else None


@functools.lru_cache(maxsize=32)
def _gradescope_metadata(path: str) -> dict:
    """Gradescope's submission_metadata.yml by submission folder name; {} if absent or unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _as_timestamp(value: object) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.strftime(TIMESTAMP_FORMAT)
    return normalize_timestamp(str(value)) if value else ""
