"""Written answers: each lesson's "What you found" questions, answered in nbgrader manually graded markdown cells
(grade id ``answer_<question>``, points from course.yml's ``answers``) and scored by the instructor.

- Reading: the grading parent reads a submission's answers from the notebook's JSON (never by running anything);
  a ``.py`` submission has none. A cell still holding the prompt (``*Your answer here.*``, nbgrader's
  ``YOUR ANSWER HERE``), an empty one or a deleted one is unanswered. The texts are kept in the gradebook
  (table ``answers``, by content hash), so the exports keep them if the file goes away.
- For the instructor, per lesson: ``answers/<lesson>.md`` (each question, its model answer from the solution
  notebook, then each student's answer) and ``answers/<lesson>_scores.csv`` (one row per student and question:
  ``lesson, student, question, points, max_points, comment, answer``; points and comment blank to fill in,
  unanswered questions pre-filled with 0; ``answer`` is a digest of the answer the row scores). Rewriting the
  CSV keeps what the instructor already typed there for the same answer.
- Import: ``shortcutlab answers SCORES.csv...`` validates every row (unknown lesson, student or question, points
  that are not a number, negative or over the question's points, an answer changed since the file was written,
  a row given twice) and stores them all in one transaction, or none with an error naming each bad row.
- Until imported, an answer counts 0 of its points and says "awaiting manual grading"; a score applies to the
  answer it was given for (a student who resubmits a different answer awaits grading again).
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

from shortcutlab.errors import ShortcutlabError
from shortcutlab.grading.report import points

if TYPE_CHECKING:  # exports and the gradebook import this module; it imports them where used
    from shortcutlab.course import Course, LessonSpec
    from shortcutlab.grading.gradebook import Entry, Gradebook
    from shortcutlab.grading.results import SubmissionResult

# The grade id of an answer cell, as shortcutlab.release.ANSWER_ID (not imported from there: it imports nbformat)
ANSWER_ID = re.compile(r"^answer_(?P<question>q[1-9][0-9]*)$")
ANSWERS_FOLDER = "answers"
SCORE_COLUMNS = ("lesson", "student", "question", "points", "max_points", "comment", "answer")
ANSWER_LIMIT = 20_000  # characters of an answer kept (a pasted output or image is not an answer)
_PROMPT_LINE = re.compile(r"^[\s*_#>]*your\s+answer\s+here[\s.!*_]*$", re.IGNORECASE)
_REGION_LINE = re.compile(r"^\s*#*\s*(BEGIN|END) SOLUTION\s*$")


class AnswerError(ShortcutlabError):
    """A scores file cannot be imported (bad rows, no gradebook); nothing was imported."""


# A written answer's status: scored by the instructor, answered and not scored yet, or left empty.
ANSWER_GRADED, ANSWER_AWAITING, ANSWER_UNANSWERED = "graded", "awaiting manual grading", "unanswered"


@dataclass(frozen=True)
class AnswerResult:
    """A written answer to one question of a lesson (course.yml's ``answers``), graded by hand.

    ``text`` is what the student wrote (empty: unanswered, the prompt left as is or the cell deleted); ``score``
    is the instructor's points, None until imported (``shortcutlab answers SCORES.csv``). Until then it counts
    0 of ``max_score``; an unanswered question counts 0 and needs no grading (a score may still be imported).
    """

    question: str
    max_score: float
    text: str = ""
    score: float | None = None
    comment: str = ""
    note: str = ""  # for the instructor and the student: why a stored score was not applied, say

    @property
    def number(self) -> int:
        return int(self.question.lstrip("q"))

    @property
    def answered(self) -> bool:
        return bool(self.text.strip())

    @property
    def points(self) -> float:
        return float(self.score) if self.score is not None else 0.0

    @property
    def status(self) -> str:
        if self.score is not None:
            return ANSWER_GRADED
        return ANSWER_AWAITING if self.answered else ANSWER_UNANSWERED


# ----------------------------------------------------------------------------- reading answers


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


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
    answers = {question: normalize_answer(_source(cell)) for question, cell in answer_cells(cells).items()}
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
        text = _source(before).strip() if before.get("cell_type") == "markdown" else ""
        texts.setdefault(match["question"], (text, normalize_answer(_source(cell))))
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


# ----------------------------------------------------------------------------- the instructor's files


def _quote(text: str) -> list[str]:
    return [f"> {line}" if line.strip() else ">" for line in text.strip().splitlines()] or [">"]


def answers_markdown(lesson: LessonSpec, entries: list[Entry], course: Course, scores_file: str = "",
                     out: str = "grades") -> str:
    """The lesson's answers to grade: per question, its text and model answer, then each student's answer."""
    mine = sorted((e for e in entries if e.lesson == lesson.id), key=lambda e: e.student_id)
    awaiting = sum(a.status == ANSWER_AWAITING for e in mine for a in e.answers)
    lines = [f"# Written answers: {lesson.title} ({lesson.id})", "",
             f"{len(mine)} student{'s' if len(mine) != 1 else ''}, {awaiting} answer{'s' if awaiting != 1 else ''} "
             f"awaiting manual grading.", ""]
    if scores_file:
        lines += [f"Give each answer its points (and a comment the student sees) in `{scores_file}`, then import "
                  f"them: `shortcutlab answers --out {out} {scores_file}`.", ""]
    for question in questions(course, lesson):
        lines += [f"## Question {question.number} ({question.id}, {points(question.points)} "
                  f"point{'s' if question.points != 1 else ''})", ""]
        if question.text:
            lines += [question.text, ""]
        lines += ["**Model answer**", "", *(_quote(question.model) if question.model else ["(none written)"]), ""]
        for entry in mine:
            answer = next((a for a in entry.answers if a.question == question.id), None)
            if answer is None:
                continue
            state = answer.status
            if answer.status == ANSWER_GRADED:
                state = f"graded, {points(answer.points)} / {points(answer.max_score)}"
            lines += [f"### {entry.student_id}: {state}", ""]
            if answer.comment and answer.status == ANSWER_GRADED:
                lines += [f"Comment: {answer.comment}", ""]
            if answer.note:
                lines += [f"({answer.note})", ""]
            if answer.answered:
                lines += [*_quote(answer.text), ""]
    return "\n".join(lines).rstrip() + "\n"


def _existing_rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return {}
    rows = {}
    for row in csv.DictReader(io.StringIO(text)):
        student, question = (row.get("student") or "").strip(), (row.get("question") or "").strip()
        if student and question:
            rows[(student, question)] = row
    return rows


def scores_csv(lesson: LessonSpec, entries: list[Entry], existing: dict[tuple[str, str], dict[str, str]] = {}
               ) -> str:  # noqa: B006 - read only
    """The lesson's scores template: a row per student and question. Points and comment are the imported ones,
    else what ``existing`` (the file as the instructor left it) holds for the same answer, else blank (0 and
    "unanswered" for an unanswered question)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SCORE_COLUMNS)
    mine = sorted((e for e in entries if e.lesson == lesson.id), key=lambda e: e.student_id)
    for answer_index in range(max((len(e.answers) for e in mine), default=0)):
        for entry in mine:
            if answer_index >= len(entry.answers):
                continue
            answer = entry.answers[answer_index]
            digest = answer_digest(answer.text)
            if answer.score is not None:
                score, comment = points(answer.score), answer.comment
            else:
                old = existing.get((entry.student_id, answer.question), {})
                kept = (old.get("answer") or "").strip() in ("", digest)
                score = (old.get("points") or "").strip() if kept else ""
                comment = (old.get("comment") or "").strip() if kept else ""
                if not score and not comment and answer.status == ANSWER_UNANSWERED:
                    score, comment = "0", "unanswered"
            writer.writerow([lesson.id, entry.student_id, answer.question, score, points(answer.max_score), comment,
                             digest])
    return buffer.getvalue()


def write_answer_files(entries: list[Entry], course: Course, out: str | Path) -> list[Path]:
    """``answers/<lesson>.md`` and ``answers/<lesson>_scores.csv`` for every lesson with written answers that
    someone handed in; returns the files written."""
    from shortcutlab.grading.exports import write_text

    out = Path(out)
    written = []
    for lesson in course.lessons:
        if not lesson.answers or not any(e.lesson == lesson.id and e.answers for e in entries):
            continue
        scores = out / ANSWERS_FOLDER / f"{lesson.id}_scores.csv"
        text = answers_markdown(lesson, entries, course, str(scores), str(out))
        write_text(out / ANSWERS_FOLDER / f"{lesson.id}.md", text)
        write_text(scores, scores_csv(lesson, entries, _existing_rows(scores)))
        written += [out / ANSWERS_FOLDER / f"{lesson.id}.md", scores]
    return written


# ----------------------------------------------------------------------------- importing scores


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


# ----------------------------------------------------------------------------- everything at once


@dataclass(frozen=True)
class AnswersRun:
    """What ``refresh`` did: scores imported, answers awaiting grading, files written."""

    imported: int
    awaiting: int
    graded: int
    written: tuple[Path, ...]


def refresh(out: str | Path, course: Course, scores: Iterable[str | Path] = ()) -> AnswersRun:
    """Read the answers of submissions graded into ``out``, import the instructor's ``scores`` files (all rows
    or none), and rewrite the exports with the answers: grades.csv, class_matrix.csv, results/, feedback/ and
    answers/ (identical_submissions.csv is left as it is)."""
    from shortcutlab.grading.exports import write_exports
    from shortcutlab.grading.gradebook import GRADEBOOK_FILE, Gradebook

    out = Path(out)
    if not (out / GRADEBOOK_FILE).is_file():
        raise AnswerError(f"no gradebook in {out} ({GRADEBOOK_FILE}); grade the submissions first "
                          f"(shortcutlab grade --out {out} ...) or pass --out")
    with Gradebook(out) as book:
        entries = book.entries()
        collect(book, entries)
        entries = attach(entries, course, book)
        imported = 0
        scores = list(scores)
        if scores:
            rows = read_scores(scores, course, entries)
            book.import_answer_scores(rows)
            imported = len(rows)
            entries = attach(book.entries(), course, book)
    titles = {spec.id: spec.title for spec in course.lessons}
    written = write_exports(entries, out, course.lesson_ids, titles, identical=None)
    written += write_answer_files(entries, course, out)
    answers = [a for e in entries for a in e.answers]
    return AnswersRun(imported, sum(a.status == ANSWER_AWAITING for a in answers),
                      sum(a.status == ANSWER_GRADED for a in answers), tuple(written))


__all__ = ["ANSWERS_FOLDER", "ANSWER_AWAITING", "ANSWER_GRADED", "ANSWER_UNANSWERED", "AnswerError", "AnswerResult",
           "AnswersRun", "Question", "SCORE_COLUMNS", "answer_digest", "answers_markdown", "attach", "collect",
           "normalize_answer", "questions", "read_answers", "read_scores", "refresh", "scores_csv",
           "upload_answers", "write_answer_files"]
