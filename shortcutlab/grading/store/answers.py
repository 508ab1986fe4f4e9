"""Written answers: each lesson's "What you found" questions, answered in nbgrader manually graded markdown cells
(grade id ``answer_<question>``, points from course.yml's ``answers``) and scored by the instructor.

- Reading: the grading parent reads a submission's answers from the notebook's JSON (never by running anything);
  a ``.py`` submission has none. A cell still holding the prompt (``*Your answer here.*``, nbgrader's
  ``YOUR ANSWER HERE``), an empty one or a deleted one is unanswered. The texts are kept in the gradebook
  (table ``answers``, by content hash), so the exports keep them if the file goes away (``collect``, ``attach``).
- Import: ``read_scores`` validates every row of the instructor's scores files (unknown lesson, student or
  question, points that are not a number, negative or over the question's points, an answer changed since the
  file was written, a row given twice); the gradebook stores them all in one transaction, or none.
- Until imported, an answer counts 0 of its points and says "awaiting manual grading"; a score applies to the
  answer it was given for (a student who resubmits a different answer awaits grading again).

The instructor's files (``answers/<lesson>.md``, ``<lesson>_scores.csv``) are ``outputs.answer_sheets``'s;
``shortcutlab answers`` is ``integrations.batch.refresh``.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shortcutlab.cells import ANSWER_ID, cell_source
from shortcutlab.errors import ShortcutlabError
from shortcutlab.grading.results import AnswerResult
from shortcutlab.grading.wording import points

if TYPE_CHECKING:  # exports and the gradebook import this module; it imports them where used
    from shortcutlab.course import Course, LessonSpec
    from shortcutlab.grading.store.gradebook import Entry, Gradebook
    from shortcutlab.grading.results import SubmissionResult

ANSWERS_FOLDER = "answers"
SCORE_COLUMNS = ("lesson", "student", "question", "points", "max_points", "comment", "answer")
ANSWER_LIMIT = 20_000  # characters of an answer kept (a pasted output or image is not an answer)
_PROMPT_LINE = re.compile(r"^[\s*_#>]*your\s+answer\s+here[\s.!*_]*$", re.IGNORECASE)
_REGION_LINE = re.compile(r"^\s*#*\s*(BEGIN|END) SOLUTION\s*$")


class AnswerError(ShortcutlabError):
    """A scores file cannot be imported (bad rows, no gradebook); nothing was imported."""


# A written answer's status: scored by the instructor, answered and not scored yet, or left empty.
# ----------------------------------------------------------------------------- reading answers


def normalize_answer(text: str) -> str:
    """A student's answer without the prompt and solution markers; '' if nothing else is left."""
    lines = [line for line in text.replace("\r\n", "\n").split("\n")
             if not _PROMPT_LINE.match(line) and not _REGION_LINE.match(line)]
    answer = "\n".join(lines).strip()
    if len(answer) > ANSWER_LIMIT:
        answer = answer[:ANSWER_LIMIT].rstrip() + f"\n[... cut at {ANSWER_LIMIT} characters]"
    return answer


def answer_digest(text: str) -> str:
    """12 hex digits identifying an answer's text (what a score was given for)."""
    return hashlib.sha256(normalize_answer(text).encode("utf-8")).hexdigest()[:12]


def answer_cells(cells: list) -> dict[str, dict]:
    """The answer cells of a notebook's cells by question (the first cell of each grade id ``answer_<q>``)."""
    found: dict[str, dict] = {}
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        meta = cell.get("metadata")
        meta = meta.get("nbgrader") if isinstance(meta, dict) else None
        match = ANSWER_ID.match(str(meta.get("grade_id", ""))) if isinstance(meta, dict) else None
        if match and match["question"] not in found:
            found[match["question"]] = cell
    return found


def read_answers(path: str | Path, data: bytes | None = None) -> dict[str, str]:
    """A submission's answers by question (``q1``: text), read from the notebook's JSON; a ``.py`` file, a file
    that is not a notebook and a question left unanswered give nothing."""
    path = Path(path)
    if path.suffix != ".ipynb":
        return {}
    try:
        nb = json.loads(path.read_bytes() if data is None else data)
    except (OSError, ValueError, RecursionError):
        return {}
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        return {}
    answers = {question: normalize_answer(cell_source(cell)) for question, cell in answer_cells(cells).items()}
    return {question: text for question, text in answers.items() if text}


# ----------------------------------------------------------------------------- questions and model answers


@dataclass(frozen=True)
class Question:
    """A question of a lesson: its id, points (course.yml), text and model answer (the solution notebook)."""

    id: str
    points: float
    text: str = ""
    model: str = ""

    @property
    def number(self) -> int:
        return int(self.id.lstrip("q"))


def questions(course: Course, lesson: LessonSpec | str) -> list[Question]:
    """The lesson's questions in course.yml's order (by number), with the text of the markdown cell before each
    answer cell and the model answer (its solution region) from the solution notebook, where it can be read."""
    lesson = course.lesson(lesson) if isinstance(lesson, str) else lesson
    cells: list = []
    try:
        nb = json.loads(course.solution_notebook(lesson).read_text(encoding="utf-8"))
        cells = nb.get("cells", []) if isinstance(nb, dict) else []
    except (OSError, ValueError):
        pass
    texts: dict[str, tuple[str, str]] = {}
    for index, cell in enumerate(cells):
        meta = cell.get("metadata", {}).get("nbgrader") if isinstance(cell, dict) else None
        match = ANSWER_ID.match(str(meta.get("grade_id", ""))) if isinstance(meta, dict) else None
        if not match:
            continue
        before = cells[index - 1] if index else {}
        text = cell_source(before).strip() if before.get("cell_type") == "markdown" else ""
        texts.setdefault(match["question"], (text, normalize_answer(cell_source(cell))))
    ordered = sorted(lesson.answers.items(), key=lambda item: int(item[0].lstrip("q")))
    return [Question(q, float(spec.points), *texts.get(q, ("", ""))) for q, spec in ordered]


# ----------------------------------------------------------------------------- the gradebook's answers


def collect(book: Gradebook, entries: Iterable[Entry]) -> int:
    """Read and store the answers of every entry the gradebook has none for (a file changed or gone since it
    was graded is skipped); returns how many were read."""
    stored = book.stored_answers()
    count = 0
    for entry in entries:
        if (entry.key.content_hash, entry.lesson) in stored:
            continue
        data = entry.graded_bytes()
        if data is None:
            continue
        book.store_answers(entry.key.content_hash, entry.lesson, read_answers(entry.path, data))
        stored[(entry.key.content_hash, entry.lesson)] = {}
        count += 1
    return count


def attach(entries: Iterable[Entry], course: Course, book: Gradebook) -> list[Entry]:
    """``entries`` with their written answers (every question course.yml lists for the lesson) and the
    instructor's scores where given for that answer."""
    stored = book.stored_answers()
    scores = book.answer_scores()
    specs = {lesson.id: lesson for lesson in course.lessons}
    asked: dict[str, list[Question]] = {}  # each solution notebook is read once
    out = []
    for entry in entries:
        lesson = specs.get(entry.lesson)
        if lesson is None or not lesson.answers:
            out.append(entry)
            continue
        texts = stored.get((entry.key.content_hash, entry.lesson))
        answers = []
        if lesson.id not in asked:
            asked[lesson.id] = questions(course, lesson)
        for question in asked[lesson.id]:
            text = (texts or {}).get(question.id, "")
            note = "" if texts is not None else "the submitted file could not be read again to find this answer"
            score, comment = None, ""
            given = scores.get((entry.student_id, entry.lesson, question.id))
            if given is not None:
                if given[2] == answer_digest(text):
                    score, comment = given[0], given[1]
                else:
                    note = f"a score of {points(given[0])} was given to an earlier answer; this one awaits grading"
            answers.append(AnswerResult(question.id, question.points, text, score, comment, note))
        out.append(dataclasses.replace(entry, answers=tuple(answers)))
    return out


def upload_answers(result: "SubmissionResult", course: Course) -> tuple[AnswerResult, ...]:
    """The written answers of one graded file, not scored (Gradescope's run_autograder: each upload on its own)."""
    if result.lesson not in course.lesson_ids or not course.lesson(result.lesson).answers:
        return ()
    texts = read_answers(result.path)
    return tuple(AnswerResult(q.id, q.points, texts.get(q.id, "")) for q in questions(course, result.lesson))


def _question_id(text: str) -> str:
    text = text.strip().lower().removeprefix("answer_")
    return f"q{text}" if text.isdigit() else text


def read_scores(files: Iterable[str | Path], course: Course, entries: list[Entry]
                ) -> list[tuple[str, str, str, float, str, str, str]]:
    """Every filled-in row of the scores files as (student, lesson, question, points, comment, answer digest,
    source), checked against the course and the gradebook's ``entries`` (with answers attached). Rows with no
    points are skipped. AnswerError naming each bad row (file and line) if any is wrong."""
    by_key = {(e.student_id, e.lesson): e for e in entries}
    students: dict[str, list[str]] = {}
    for entry in entries:
        students.setdefault(entry.lesson, []).append(entry.student_id)
    problems: list[str] = []
    rows: list[tuple[str, str, str, float, str, str, str]] = []
    where: dict[tuple[str, str, str], str] = {}
    for file in files:
        file = Path(file)
        try:
            text = file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{file}: cannot be read ({exc})")
            continue
        reader = csv.DictReader(io.StringIO(text))
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in ("student", "question", "points") if c not in columns]
        default_lesson = next((l for l in course.lesson_ids if file.name.startswith(l)), None)
        if "lesson" not in columns and default_lesson is None:
            missing.insert(0, "lesson")
        if missing:
            problems.append(f"{file}: no column {', '.join(missing)} (a scores file has the columns "
                            f"{', '.join(SCORE_COLUMNS)}, as answers/<lesson>_scores.csv)")
            continue
        for raw in reader:
            row = {(k or "").strip(): (v or "").strip() if isinstance(v, str) else "" for k, v in raw.items()}
            at = f"{file}, line {reader.line_num}"
            if not any(row.values()):
                continue
            lesson_id = row.get("lesson") or default_lesson or ""
            student, question, given = row.get("student", ""), _question_id(row.get("question", "")), row["points"]
            if not given:
                continue  # not graded yet
            if lesson_id not in course.lesson_ids:
                problems.append(f"{at}: unknown lesson {lesson_id!r} (the course has {', '.join(course.lesson_ids)})")
                continue
            lesson = course.lesson(lesson_id)
            if question not in lesson.answers:
                problems.append(f"{at}: unknown question {row.get('question')!r} for {lesson_id} (course.yml lists "
                                f"{', '.join(lesson.answers) or 'no written answers'})")
                continue
            entry = by_key.get((student, lesson_id))
            if entry is None:
                known = ", ".join(sorted(students.get(lesson_id, []))[:20]) or "nobody yet"
                problems.append(f"{at}: unknown student {student!r} for {lesson_id} (the gradebook has "
                                f"submissions from: {known})")
                continue
            maximum = float(lesson.answers[question].points)
            try:
                value = float(given)
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or value < 0:
                problems.append(f"{at}: points {given!r} for {student}'s {question} of {lesson_id} must be a number "
                                f"from 0 to {points(maximum)}")
                continue
            if value > maximum + 1e-9:
                problems.append(f"{at}: {points(value)} points for {student}'s {question} of {lesson_id}, more "
                                f"than its {points(maximum)} (course.yml)")
                continue
            answer = next(a for a in entry.answers if a.question == question)
            digest = answer_digest(answer.text)
            if row.get("answer") and row["answer"] != digest:
                problems.append(f"{at}: {student}'s answer to {question} of {lesson_id} changed since this file was "
                                f"written (a new submission?); run `shortcutlab answers` to rewrite the answers "
                                f"files and score the new answer")
                continue
            key = (student, lesson_id, question)
            if key in where:
                problems.append(f"{at}: {student}'s {question} of {lesson_id} is scored again ({where[key]} already "
                                f"does); keep one row")
                continue
            where[key] = at
            rows.append((student, lesson_id, question, value, row.get("comment", ""), digest, str(file)))
    if problems:
        shown = problems[:25] + ([f"... and {len(problems) - 25} more"] if len(problems) > 25 else [])
        raise AnswerError(f"nothing imported: {len(problems)} bad row{'s' if len(problems) != 1 else ''} in the "
                          "scores:\n  - " + "\n  - ".join(shown))
    return rows
