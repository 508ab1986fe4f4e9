"""The instructor's files for written answers, per lesson: ``answers/<lesson>.md`` (each question, its model answer
from the solution notebook, then each student's answer) and ``answers/<lesson>_scores.csv`` (one row per student and
question, ``store.answers.SCORE_COLUMNS``; points and comment blank to fill in, a question left blank marked "no
answer" in the comment, with no points to fill in; ``answer`` is a digest of the answer the row scores). Rewriting the CSV keeps what the instructor already
typed there for the same answer."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

from shortcutlab.grading.outputs.files import write_text
from shortcutlab.grading.status import AnswerStatus
from shortcutlab.grading.store.answers import ANSWERS_FOLDER, SCORE_COLUMNS, answer_digest, questions
from shortcutlab.grading.wording import points

if TYPE_CHECKING:
    from shortcutlab.course import Course, LessonSpec
    from shortcutlab.grading.store.gradebook import Entry


def _quote(text: str) -> list[str]:
    return [f"> {line}" if line.strip() else ">" for line in text.strip().splitlines()] or [">"]


def answers_markdown(lesson: LessonSpec, entries: list[Entry], course: Course, scores_file: str = "",
                     out: str = "grades") -> str:
    """The lesson's answers to grade: per question, its text and model answer, then each student's answer."""
    mine = sorted((e for e in entries if e.lesson == lesson.id), key=lambda e: e.student_id)
    awaiting = sum(a.status == AnswerStatus.AWAITING for e in mine for a in e.answers)
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
            if answer.status == AnswerStatus.GRADED:
                state = f"graded, {points(answer.points)} / {points(answer.max_score)}"
            lines += [f"### {entry.student_id}: {state}", ""]
            if answer.comment and answer.status == AnswerStatus.GRADED:
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
    else what ``existing`` (the file as the instructor left it) holds for the same answer, else blank (the comment
    "no answer" for a question left blank: it counts 0 without a score, so there is nothing to fill in)."""
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
                if not score and not comment and answer.status == AnswerStatus.UNANSWERED:
                    comment = str(AnswerStatus.UNANSWERED)
            writer.writerow([lesson.id, entry.student_id, answer.question, score, points(answer.max_score), comment,
                             digest])
    return buffer.getvalue()


def write_answer_files(entries: list[Entry], course: Course, out: str | Path) -> list[Path]:
    """``answers/<lesson>.md`` and ``answers/<lesson>_scores.csv`` for every lesson with written answers that
    someone handed in; returns the files written."""
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


