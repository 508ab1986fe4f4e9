"""The class's tables: grades.csv (nbgrader's ``nbgrader export`` columns, a status and the written answers' state)
and a class matrix an LMS gradebook imports (Canvas, Moodle)."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from shortcutlab.grading.outputs.report import MISSING, submission_status
from shortcutlab.grading.results import answers_status
from shortcutlab.grading.store.gradebook import Entry
from shortcutlab.grading.store.students import normalize_timestamp
from shortcutlab.grading.wording import points, rounded

# nbgrader's ``nbgrader export`` columns, then the submission's status (graded, error, timeout, missing)
# and whether its written answers are graded (``written_answers``: awaiting manual grading, graded, or empty for a
# lesson without written answers or not handed in)
CSV_COLUMNS = ("assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email", "raw_score",
               "late_submission_penalty", "score", "max_score", "status", "written_answers")
# The class matrix: Canvas's gradebook-import identity columns, one column per lesson, then the total under a
# name Canvas treats as read-only (ignored on import). Moodle maps "SIS Login ID" to the username and each
# lesson column to a grade item, and ignores the rest.
MATRIX_IDENTITY = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
MATRIX_TOTAL = "Final Points"


def _lesson_order(entries: list[Entry], lessons: Iterable[str]) -> list[str]:
    order = list(dict.fromkeys(lesson for lesson in lessons if any(e.lesson == lesson for e in entries)))
    return order + sorted({e.lesson for e in entries} - set(order))


def grades_csv(entries: Iterable[Entry], lessons: Iterable[str] = ()) -> str:
    """nbgrader's ``nbgrader export`` CSV plus ``status`` and ``written_answers`` columns: one row per lesson and
    student, 0 and status ``missing`` for a lesson not handed in. Scores include the written answers' points
    (0 until the instructor's are imported).

    Lessons come in the order of ``lessons`` (then any others, sorted), students sorted by id; names, emails
    and due dates are empty (the gradebook does not know them) and there is no late penalty. Timestamps are
    UTC in one format, ``YYYY-MM-DD HH:MM:SS.ffffff`` (nbgrader's). ``status`` is ``graded``, ``error`` (could
    not be graded normally), ``timeout`` (cut off by a time limit) or ``missing``.
    """
    entries = list(entries)
    by_key = {(e.lesson, e.student_id): e for e in entries}
    students = sorted({e.student_id for e in entries})
    max_scores = {e.lesson: e.max_score for e in entries}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for lesson in _lesson_order(entries, lessons):
        for student in students:
            entry = by_key.get((lesson, student))
            raw = rounded(entry.score) if entry else 0.0
            writer.writerow([lesson, "", normalize_timestamp(entry.timestamp) if entry else "", student, "", "", "",
                             raw, 0.0, max(0.0, raw), rounded(max_scores[lesson]),
                             submission_status(entry.result) if entry else MISSING,
                             answers_status(entry.answers) if entry else ""])
    return buffer.getvalue()


def matrix_header(title: str, lesson: str, max_score: float) -> str:
    """A lesson's column in the class matrix: 'Adding and scaling [90_toy, 5 pts]'."""
    return f"{title or lesson} [{lesson}, {points(max_score)} pts]"


def class_matrix_csv(entries: Iterable[Entry], lessons: Iterable[str] = (),
                     titles: dict[str, str] | None = None) -> str:
    """The class at a glance, in a layout the gradebook imports of Canvas and Moodle accept: one row per student,
    ``Student, ID, SIS User ID, SIS Login ID, Section`` (the student id in ``Student`` and ``SIS Login ID``;
    the others empty), one column per lesson (its score, empty if not handed in) headed by its title, id and
    points possible, and ``Final Points`` (the sum; Canvas ignores it on import, Moodle lets it be ignored)."""
    entries = list(entries)
    titles = titles or {}
    order = _lesson_order(entries, lessons)
    max_scores = {e.lesson: e.max_score for e in entries}
    by_key = {(e.student_id, e.lesson): e for e in entries}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*MATRIX_IDENTITY, *(matrix_header(titles.get(l, ""), l, max_scores[l]) for l in order),
                     MATRIX_TOTAL])
    for student in sorted({e.student_id for e in entries}):
        mine = [by_key.get((student, lesson)) for lesson in order]
        total = sum(e.score for e in mine if e is not None)
        writer.writerow([student, "", "", student, "", *(points(e.score) if e else "" for e in mine),
                         points(total)])
    return buffer.getvalue()
