"""The class roster: who should hand something in, with names and emails for the grade files.

A roster is a CSV file (``--roster FILE`` or course.yml's ``grading.roster``) with a ``student_id`` column and,
optionally, ``name`` (or ``first_name`` and ``last_name``) and ``email``. Every student on it gets a row per lesson in
grades.csv and the class matrix, ``missing`` where nothing was handed in; a hand-in is matched to a roster student by
its id, else its email, else its name (an LMS download's ``smithjohn`` or ``John Smith`` matches John Smith), and
hand-ins that match no one are listed for the instructor.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from shortcutlab.errors import ShortcutlabError
from shortcutlab.grading.store.students import Handin

_ID_COLUMNS = ("student_id", "id", "sis login id", "login id", "username")
_LETTERS = re.compile(r"[^a-z0-9]+")


class RosterError(ShortcutlabError):
    """The roster file cannot be read or has no student_id column."""


@dataclass(frozen=True)
class Student:
    """One student of the roster."""

    student_id: str
    first_name: str = ""
    last_name: str = ""
    name: str = ""  # the full name as given, or first and last name joined
    email: str = ""


def _key(text: str) -> str:
    """A name or email compared without case, spaces and punctuation."""
    return _LETTERS.sub("", text.lower())


@dataclass(frozen=True)
class Roster:
    """The students of a class, in the roster's order."""

    students: tuple[Student, ...] = ()

    @property
    def ids(self) -> list[str]:
        return [s.student_id for s in self.students]

    def __bool__(self) -> bool:
        return bool(self.students)

    def get(self, student_id: str) -> Student | None:
        return next((s for s in self.students if s.student_id == student_id), None)

    def match(self, handin: Handin) -> Student | None:
        """The roster student a hand-in belongs to: by id, then email, then name (first-last or last-first, any case
        and punctuation); None if no one, or more than one student, matches."""
        for student in self.students:
            if student.student_id == handin.student:
                return student
        if handin.email:
            found = [s for s in self.students if s.email and s.email.lower() == handin.email.lower()]
            if len(found) == 1:
                return found[0]
        wanted = _key(handin.name)
        if wanted:
            found = [s for s in self.students if wanted in _name_keys(s)]
            if len(found) == 1:
                return found[0]
        return None


def _name_keys(student: Student) -> set[str]:
    keys = {_key(student.name)} if student.name else set()
    if student.first_name or student.last_name:
        keys |= {_key(student.first_name + student.last_name), _key(student.last_name + student.first_name)}
    if student.name and " " in student.name.strip():  # "John Smith" is also Canvas's sortable "smithjohn"
        first, _, last = student.name.strip().rpartition(" ")
        keys.add(_key(last + first))
    return keys - {""}


def parse_roster(text: str, where: str = "the roster") -> Roster:
    """A roster from CSV text; RosterError if it has no student id column, a row without an id, or an id twice."""
    reader = csv.DictReader(io.StringIO(text))
    columns = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
    id_column = next((columns[c] for c in _ID_COLUMNS if c in columns), None)
    if id_column is None:
        raise RosterError(f"{where} has no student_id column (its columns: {', '.join(columns) or 'none'}); write a "
                          "CSV with a header row: student_id, and optionally name (or first_name, last_name) and email")

    def value(row: dict, name: str) -> str:
        column = columns.get(name)
        return (row.get(column) or "").strip() if column else ""

    students: list[Student] = []
    seen: set[str] = set()
    for row in reader:
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        student_id = (row.get(id_column) or "").strip()
        if not student_id:
            raise RosterError(f"{where}, line {reader.line_num}: no student id; every row needs one")
        if student_id in seen:
            raise RosterError(f"{where}, line {reader.line_num}: student {student_id!r} is listed twice")
        seen.add(student_id)
        first, last = value(row, "first_name"), value(row, "last_name")
        name = value(row, "name") or " ".join(part for part in (first, last) if part)
        students.append(Student(student_id, first, last, name, value(row, "email")))
    return Roster(tuple(students))


def read_roster(path: str | Path) -> Roster:
    """The roster in the CSV file ``path`` (see ``parse_roster``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RosterError(f"cannot read the roster {path}: {exc}") from None
    return parse_roster(text, str(path))


def roster_from_rows(rows: Iterable[tuple[str, str, str, str, str]]) -> Roster:
    """A roster from (student_id, first_name, last_name, name, email) rows, as the gradebook keeps it."""
    return Roster(tuple(Student(*row) for row in rows))
