"""The class's tables: grades.csv (nbgrader's ``nbgrader export`` columns, a status and the written answers' state)
and a class matrix an LMS gradebook imports (Canvas, Moodle)."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shortcutlab.course import Course
from shortcutlab.grading.lateness import late_penalty
from shortcutlab.grading.outputs.report import MISSING
from shortcutlab.grading.results import AnswerTotals, answers_status
from shortcutlab.grading.store.gradebook import Entry
from shortcutlab.grading.store.roster import Roster
from shortcutlab.timestamps import normalize_timestamp
from shortcutlab.grading.wording import points, rounded

# nbgrader's ``nbgrader export`` columns, then the submission's status (graded, error, timeout, missing), whether its
# written answers are graded (``written_answers``: awaiting manual grading, graded, no answer, or empty for a lesson
# without written answers or not handed in), and the checks' and the written answers' points apart (raw_score is their
# sum, score that less the late penalty, as in nbgrader), and whom its graded code is similar to (similarity.py: other
# students, ``reference``, ``outside:<file>``; ';'-separated, empty if no one)
CSV_COLUMNS = ("assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email", "raw_score",
               "late_submission_penalty", "score", "max_score", "status", "written_answers", "code_score",
               "code_max_score", "answers_score", "answers_max_score", "similar_to")
# The class matrix: Canvas's gradebook-import identity columns, one column per lesson, then the total under a
# name Canvas treats as read-only (ignored on import). Moodle maps "SIS Login ID" to the username and each
# lesson column to a grade item, and ignores the rest.
MATRIX_IDENTITY = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
MATRIX_TOTAL = "Final Points"


@dataclass(frozen=True)
class Row:
    """A student's lesson as the class's tables show it: the entry (None: nothing handed in), its late penalty and
    the student's names and email (the roster's, else what the LMS download gave)."""

    lesson: str
    student: str
    entry: Entry | None
    penalty: float = 0.0
    first_name: str = ""
    last_name: str = ""
    name: str = ""
    email: str = ""

    @property
    def raw(self) -> float:
        return self.entry.score if self.entry is not None else 0.0

    @property
    def score(self) -> float:
        return max(0.0, self.raw - self.penalty)


def class_rows(entries: Iterable[Entry], course: Course, roster: Roster = Roster()) -> list[Row]:
    """One ``Row`` per lesson and student: every lesson someone handed in (course order), every student of the
    roster and every student who handed something in (sorted by id); late penalties from course.yml's due times."""
    entries = list(entries)
    by_key = {(e.lesson, e.student_id): e for e in entries}
    students = sorted(set(roster.ids) | {e.student_id for e in entries})
    rows = []
    for lesson in _lesson_order(entries, course.lesson_ids):
        for student in students:
            entry = by_key.get((lesson, student))
            known = roster.get(student)
            penalty = late_penalty(course, lesson, entry.timestamp, entry.late, entry.max_score) if entry else 0.0
            rows.append(Row(lesson, student, entry, penalty,
                            known.first_name if known else "", known.last_name if known else "",
                            known.name if known and known.name else entry.name if entry else "",
                            known.email if known and known.email else entry.email if entry else ""))
    return rows


def _lesson_order(entries: list[Entry], lessons: Iterable[str]) -> list[str]:
    order = list(dict.fromkeys(lesson for lesson in lessons if any(e.lesson == lesson for e in entries)))
    return order + sorted({e.lesson for e in entries} - set(order))


def grades_csv(rows: Iterable[Row], course: Course,
               similar: Mapping[tuple[str, str], tuple[str, ...]] | None = None) -> str:
    """nbgrader's ``nbgrader export`` CSV plus a status, the written answers' state and the checks' and written answers'
    points apart: one row per lesson and student (``class_rows``), 0 and status ``missing`` for a lesson not handed
    in. raw_score adds the checks' and the written answers' points (0 for those not scored yet); score is raw_score
    less the late penalty (course.yml's ``grading.late_penalty`` after ``grading.due``).

    Timestamps are UTC in one format, ``YYYY-MM-DD HH:MM:SS.ffffff`` (nbgrader's), and only ever the hand-in time the
    LMS gave (empty otherwise). ``status`` is ``graded``, ``error`` (could not be graded normally), ``timeout``
    (loading cut off by a time limit) or ``missing``. ``similar``: the others each (lesson, student)'s graded code is
    similar to (``SimilarityReport.similar_to``), for the instructor's eyes; it never changes a score.
    """
    similar = similar or {}
    rows = list(rows)
    max_scores = {r.lesson: r.entry.max_score for r in rows if r.entry is not None}
    code_max = {r.lesson: r.entry.result.max_score for r in rows if r.entry is not None}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        entry = row.entry
        written = AnswerTotals.of(entry.answers) if entry else AnswerTotals()
        answers_max = written.max_score if entry else max_scores[row.lesson] - code_max[row.lesson]
        writer.writerow([row.lesson, course.due(row.lesson), normalize_timestamp(entry.timestamp) if entry else "",
                         row.student, row.last_name, row.first_name, row.email, rounded(row.raw), rounded(row.penalty),
                         rounded(row.score), rounded(max_scores[row.lesson]), entry.result.status if entry else MISSING,
                         answers_status(entry.answers) if entry else "",
                         rounded(entry.result.score) if entry else 0.0, rounded(code_max[row.lesson]),
                         rounded(written.score), rounded(answers_max),
                         ";".join(similar.get((row.lesson, row.student), ()))])
    return buffer.getvalue()


def matrix_header(title: str, lesson: str, max_score: float) -> str:
    """A lesson's column in the class matrix: 'Adding and scaling [90_toy, 5 pts]'."""
    return f"{title or lesson} [{lesson}, {points(max_score)} pts]"


def class_matrix_csv(rows: Iterable[Row], course: Course) -> str:
    """The class at a glance, in a layout the gradebook imports of Canvas and Moodle accept: one row per student,
    ``Student, ID, SIS User ID, SIS Login ID, Section`` (the student's name where the roster or the LMS gave one,
    else the id, in ``Student``; the id in ``SIS Login ID``; the others empty), one column per lesson (its score after
    any late penalty, empty if not handed in) headed by its title, id and points possible, and ``Final Points``
    (the sum; Canvas ignores it on import, Moodle lets it be ignored)."""
    rows = list(rows)
    titles = {spec.id: spec.title for spec in course.lessons}
    order = list(dict.fromkeys(r.lesson for r in rows))
    max_scores = {r.lesson: r.entry.max_score for r in rows if r.entry is not None}
    by_key = {(r.student, r.lesson): r for r in rows}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*MATRIX_IDENTITY, *(matrix_header(titles.get(l, ""), l, max_scores[l]) for l in order),
                     MATRIX_TOTAL])
    for student in dict.fromkeys(r.student for r in rows):
        mine = [by_key[(student, lesson)] for lesson in order]
        name = next((r.name for r in mine if r.name), "") or student
        total = sum(r.score for r in mine if r.entry is not None)
        writer.writerow([name, "", "", student, "", *(points(r.score) if r.entry else "" for r in mine),
                         points(total)])
    return buffer.getvalue()
