"""Grading a class into an output folder (``shortcutlab grade``): reuse what the gradebook already holds, grade the
rest, export; and refreshing that folder once written answers are scored by hand (``shortcutlab answers``).

``grade_class`` is what ``shortcutlab grade`` runs. Each submission is keyed (gradebook.GradeKey) before
any grading; a key the gradebook holds is reused unless ``regrade``; the others go to the runner, and each
one is committed to the gradebook the moment it is graded, so a run killed midway loses nothing finished.
Exports (grades.csv, class_matrix.csv, identical_submissions.csv, results.json, feedback) are rewritten from the
gradebook at the end of the run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from shortcutlab.course import Course, CourseError, load_course
from shortcutlab.grading.outputs.answer_sheets import write_answer_files
from shortcutlab.grading.status import AnswerStatus
from shortcutlab.grading.store.answers import AnswerError, attach, collect, read_scores
from shortcutlab.grading.outputs.exports import write_exports
from shortcutlab.grading.outputs.identical import IdenticalGroup, find_identical, graded_code_digest
from shortcutlab.grading.engine.versions import checks_version
from shortcutlab.grading.store.gradebook import DEFAULT_SEED, GRADEBOOK_FILE, Gradebook, GradeKey, submission_seed
from shortcutlab.grading.results import GradeReport, SubmissionResult
from shortcutlab.grading.engine.runner import GradingError, grade
from shortcutlab.grading.store.students import student_id, submission_timestamp
from shortcutlab.grading.engine.submission import Submission, SubmissionError, expand_paths, infer_lesson


@dataclass
class _Item:
    path: Path
    lesson: str | None
    student: str
    timestamp: str
    key: GradeKey | None


@dataclass(frozen=True)
class ClassRun:
    """A run of ``grade_class``: the report (every submission, input order) and what it did; ``students`` maps
    each submission's path to its student id; ``identical`` lists the class's identical submissions."""

    report: GradeReport
    reused: int
    graded: int
    out: Path
    students: dict[str, str] = dataclasses.field(default_factory=dict)
    identical: tuple[IdenticalGroup, ...] = ()
    awaiting_answers: int = 0  # written answers not yet graded by hand (answers/<lesson>_scores.csv)
    answer_files: tuple[Path, ...] = ()


def released_digests(course: Course) -> set[str]:
    """Graded-code digests of the lessons as released (a stub handed in untouched is not copying)."""
    digests = set()
    for spec in course.lessons:
        digest = graded_code_digest(course.lesson_notebook(spec))
        if digest is not None:
            digests.add(digest)
    return digests


def _key(path: Path, lesson: str, version: str, base_seed: int) -> GradeKey | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return GradeKey(hashlib.sha256(data).hexdigest(), lesson, version, base_seed)


def grade_class(paths: list[str | Path], out: str | Path = "grades", *, regrade: bool = False,
                lesson: str | None = None, jobs: int | None = None, seed: int | None = None,
                course: Course | str | Path | None = None,
                on_result: Callable[[SubmissionResult, bool], None] | None = None,
                warn: Callable[[str], None] | None = None, require_sandbox: bool = False) -> ClassRun:
    """Grade submissions into the gradebook in ``out`` and write the exports there.

    ``seed`` is the base seed (default ``DEFAULT_SEED``); each submission's inputs derive from it and the
    submission's content hash, so grades are reproducible and a rerun can reuse them. ``on_result(result,
    reused)`` is called once per submission as soon as its grade is known.
    """
    start = time.monotonic()
    course = course if isinstance(course, Course) else load_course(course)
    if lesson is not None:
        course.lesson(lesson)
    files = list(dict.fromkeys(expand_paths(list(paths))))
    if not files:
        raise GradingError("no submissions to grade: give .ipynb or .py files, or folders holding them")
    base_seed = DEFAULT_SEED if seed is None else int(seed)
    versions: dict[str, str] = {}
    items: dict[str, _Item] = {}
    owners: dict[tuple[str, str], Path] = {}
    results: dict[str, SubmissionResult] = {}
    pending: list[Path] = []
    first_of: dict[GradeKey, Path] = {}
    copies: dict[Path, Path] = {}  # a file -> the file with the same key that is graded for both
    recorded: dict[str, GradeKey] = {}

    def owns(item: _Item) -> bool:
        """Whether ``item`` is the one the exports show for its student and lesson (the last one given)."""
        return owners.get((item.student, item.lesson)) == item.path

    book = Gradebook(out)
    try:
        run_id = book.start_run(base_seed, len(files))
        for path in files:
            lesson_id: str | None = None
            key = None
            try:
                lesson_id = infer_lesson(path, course, lesson)
                if lesson_id not in versions:
                    versions[lesson_id] = checks_version(course, lesson_id)
                key = _key(path, lesson_id, versions[lesson_id], base_seed)
            except (SubmissionError, CourseError):
                pass
            item = _Item(path, lesson_id, student_id(path, lesson_id, course.lesson_ids),
                         submission_timestamp(path), key)
            items[str(path)] = item
            if lesson_id is not None:
                other = owners.get((item.student, lesson_id))
                if other is not None and warn:
                    warn(f"{other} and {path} are both {item.student}'s {lesson_id}; the exports show {path}")
                owners[(item.student, lesson_id)] = path
        for path in files:
            item, key = items[str(path)], items[str(path)].key
            if key is not None and key in first_of:  # the same bytes twice in one run: graded once
                copies[path] = first_of[key]
                continue
            hit = book.lookup(key) if key is not None and not regrade else None
            if hit is None:
                pending.append(path)
                if key is not None:
                    first_of[key] = path
                continue
            result = dataclasses.replace(hit[0], path=str(path))
            if owns(item):
                book.point(key, str(path), item.student, item.timestamp)
            results[str(path)] = result
            if on_result:
                on_result(result, True)

        seen: dict[str, str] = {}  # path -> the content hash the runner actually read
        seen_lock = threading.Lock()
        failures: list[BaseException] = []

        def seed_for(submission: Submission, base: int) -> int:
            with seen_lock:
                seen[str(submission.path)] = submission.digest
            return submission_seed(base, submission.digest)

        def record(result: SubmissionResult) -> None:
            results[result.path] = result
            item = items.get(result.path)
            try:
                if item is not None and item.key is not None and result.lesson == item.lesson:
                    with seen_lock:
                        digest = seen.get(result.path, item.key.content_hash)
                    key = dataclasses.replace(item.key, content_hash=digest)
                    book.record(key, submission_seed(base_seed, digest), result, item.student, item.timestamp,
                                run_id, point=owns(item))
                    recorded[result.path] = key
            except Exception as exc:  # noqa: BLE001 - reported after the run; the grades still come back
                failures.append(exc)
            if on_result:
                on_result(result, False)

        if pending:
            grade(pending, lesson=lesson, jobs=jobs, seed=base_seed, course=course, on_result=record,
                  seed_for=seed_for, require_sandbox=require_sandbox, warn=warn)
        if failures:
            raise GradingError(f"could not write the gradebook {book.path}: {failures[0]}")
        for path, first in copies.items():
            original = results.get(str(first))
            if original is None:
                continue
            results[str(path)] = dataclasses.replace(original, path=str(path))
            item = items[str(path)]
            if str(first) in recorded and owns(item):
                book.point(recorded[str(first)], str(path), item.student, item.timestamp)
            if on_result:
                on_result(results[str(path)], True)
        graded = len(pending) + len(copies)
        book.finish_run(run_id, reused=len(files) - graded, graded=graded)
        titles = {spec.id: spec.title for spec in course.lessons}
        entries = book.entries()
        identical = tuple(find_identical(entries, released_digests(course)))
        if any(spec.answers for spec in course.lessons):
            # Written answers are read from the files just graded (never run) and join the exports.
            collect(book, entries)
            entries = attach(entries, course, book)
        write_exports(entries, out, course.lesson_ids, titles, identical)
        written = write_answer_files(entries, course, out) if any(spec.answers for spec in course.lessons) else []
    finally:
        book.close()
    report = GradeReport(base_seed, tuple(results[str(p)] for p in files if str(p) in results),
                         round(time.monotonic() - start, 3))
    graded = len(pending) + len(copies)
    awaiting = sum(a.status == AnswerStatus.AWAITING for e in entries for a in e.answers)
    return ClassRun(report, len(files) - graded, graded, Path(out), {key: item.student for key, item in items.items()},
                    identical, awaiting, tuple(written))


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
    return AnswersRun(imported, sum(a.status == AnswerStatus.AWAITING for a in answers),
                      sum(a.status == AnswerStatus.GRADED for a in answers), tuple(written))
