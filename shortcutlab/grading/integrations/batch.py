"""Grading a class into an output folder (``shortcutlab grade``): reuse what the gradebook already holds, grade the
rest, export; and refreshing that folder once written answers are scored by hand (``shortcutlab answers``).

``grade_class`` is what ``shortcutlab grade`` runs. Each submission is keyed (gradebook.GradeKey) before
any grading; a key the gradebook holds is reused unless ``regrade``; the others go to the runner, and each
one is committed to the gradebook the moment it is graded, so a run killed midway loses nothing finished.
Exports (grades.csv, class_matrix.csv, identical_submissions.csv, results.json, feedback) are made from the
gradebook at the end of the run; only those whose text changed are written.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from shortcutlab.course import Course, CourseError, load_course
from shortcutlab.errors import ShortcutlabError
from shortcutlab.grading.outputs.answer_sheets import write_answer_files
from shortcutlab.grading.outputs.class_report import AT_RISK_SHARE, ClassReport, build_class_report, write_class_report
from shortcutlab.grading.lateness import late_penalty
from shortcutlab.grading.status import AnswerStatus, SubmissionStatus
from shortcutlab.grading.store.answers import AnswerError, attach, collect, read_scores
from shortcutlab.grading.outputs.exports import write_exports
from shortcutlab.grading.outputs.identical import IdenticalGroup, code_digest, find_identical, graded_code_digest
from shortcutlab.grading.store.similarity import (CodeDocument, SimilarityReport, compare, graded_code, outside_documents,
                                            submission_code)
from shortcutlab.grading.engine.versions import checks_version
from shortcutlab.grading.store.gradebook import GRADEBOOK_FILE, Entry, Gradebook, GradeKey
from shortcutlab.grading.store.roster import Roster, read_roster
from shortcutlab.grading.results import AnswerTotals, ClassLine, GradeReport, SubmissionResult
from shortcutlab.grading.engine.runner import GradingError, grade
from shortcutlab.grading.store.students import Handin, identify
from shortcutlab.grading.engine.submission import Submission, SubmissionError, expand_paths, infer_lesson, \
    load_submission


@dataclass
class _Item:
    index: int
    path: Path
    lesson: str | None
    handin: Handin
    student: str
    key: GradeKey | None


@dataclass(frozen=True)
class ClassRun:
    """A run of ``grade_class``: the report (every submission, input order) and what it did. ``lines`` has one
    ``ClassLine`` per submission of the report (whose it is, its written answers and late penalty); ``identical``
    lists the class's identical submissions; ``not_on_roster`` the students whose hand-ins match no one on the roster;
    ``missing`` the roster's students who handed in nothing, by lesson graded."""

    report: GradeReport
    reused: int
    graded: int
    out: Path
    lines: tuple[ClassLine, ...] = ()
    identical: tuple[IdenticalGroup, ...] = ()
    awaiting_answers: int = 0  # written answers not yet graded by hand (answers/<lesson>_scores.csv)
    answer_files: tuple[Path, ...] = ()
    not_on_roster: tuple[str, ...] = ()
    missing: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    similarity: SimilarityReport | None = None

    @property
    def not_graded(self) -> list[ClassLine]:
        """Submissions that could not be graded normally (status error or timeout): ``shortcutlab grade`` exits 1."""
        return [line for line in self.lines if line.result.status != SubmissionStatus.GRADED]


def released_digests(course: Course) -> set[str]:
    """Graded-code digests of the lessons as released (a stub handed in untouched is not copying)."""
    digests = set()
    for spec in course.lessons:
        digest = graded_code_digest(course.lesson_notebook(spec))
        if digest is not None:
            digests.add(digest)
    return digests


def _read(path: Path) -> tuple[bytes | None, str | None]:
    """The file's bytes and their sha256 (what keys its grade in the gradebook); (None, None) if it cannot be read."""
    try:
        data = path.read_bytes()
    except OSError:
        return None, None
    return data, hashlib.sha256(data).hexdigest()


def _parse(path: Path, course: Course, lesson: str, data: bytes, digest: str) -> Submission | SubmissionError:
    """The submission parsed from the bytes already read and hashed, or why it cannot be graded (itself a grade)."""
    try:
        return load_submission(path, course, lesson, data=data, digest=digest)
    except SubmissionError as exc:
        return exc


def _code_digest(path: Path, data: bytes, parsed: Submission | SubmissionError | None) -> str:
    """The graded code's digest (identical.code_digest) of a file read once: from its parsed cells if it was
    parsed, else from its bytes ('' for a file with no code or none that can be read)."""
    return code_digest(parsed.cells) if isinstance(parsed, Submission) else graded_code_digest(path, data) or ""


def _with_code_digests(book: Gradebook, entries: list[Entry]) -> list[Entry]:
    """``entries`` with the code digest of each, kept for those a gradebook of an earlier version graded without one
    (read from their file, if it still holds what was graded; otherwise left without, so in no group)."""
    found: dict[str, str] = {}
    for entry in entries:
        if entry.code_digest is None and entry.key.content_hash not in found:
            data = entry.graded_bytes()
            if data is not None:
                found[entry.key.content_hash] = _code_digest(Path(entry.path), data, None)
    if not found:
        return entries
    book.store_code_digests(found)
    return [dataclasses.replace(e, code_digest=found.get(e.key.content_hash, e.code_digest)) for e in entries]


def class_similarity(book: Gradebook, entries: Iterable[Entry], course: Course,
                     compare_with: str | Path | None = None, codes: Mapping[str, str] | None = None,
                     jobs: int | None = None) -> SimilarityReport:
    """The similarity report of the gradebook's latest submissions: each student's graded code against every
    classmate's, the reference and the known outside solutions (``compare_with``, kept in the gradebook for later
    exports, else the folder an earlier run gave). ``codes``: graded code by content hash of files this run has
    read already; others are read from their file, and one gone or changed since it was graded is left out."""
    codes = codes or {}
    if compare_with is not None:
        folder = Path(compare_with)
        if not folder.is_dir():
            raise GradingError(f"--compare-with {folder}: no such folder; give a folder of known outside solutions "
                               "(.ipynb or .py, named after their lesson)")
        book.set_outside_solutions(str(folder.resolve()))
    kept = book.outside_solutions()
    outside = outside_documents(kept, course) if kept and Path(kept).is_dir() else []
    documents = []
    for entry in entries:
        code = codes.get(entry.key.content_hash)
        if code is None:
            data = entry.graded_bytes()
            code = submission_code(Path(entry.path), data) if data is not None else None
        if code:
            documents.append(CodeDocument(entry.lesson, entry.student_id, entry.path, code))
    return compare(documents, course, course.grading.similarity_threshold, outside, jobs=jobs or os.cpu_count() or 1)


def class_roster(book: Gradebook, course: Course, roster: Roster | str | Path | None) -> Roster:
    """The roster of this run: the one given (kept in the gradebook), else course.yml's ``grading.roster`` (kept
    too), else the one the gradebook kept from an earlier run (empty if there was none)."""
    if roster is None and course.roster_file is not None:
        roster = course.roster_file
    if roster is None:
        return book.roster()
    roster = roster if isinstance(roster, Roster) else read_roster(roster)
    book.set_roster(roster)
    return roster


def _latest(items: list[_Item]) -> _Item:
    """The resubmission the exports show: the highest attempt number, then the latest hand-in time the LMS gave,
    then the file given last."""
    return max(items, key=lambda item: (item.handin.attempt, item.handin.timestamp, item.index))


def _whose(path: Path, lesson: str | None, course: Course, roster: Roster, strangers: dict[str, list[Path]],
           tell: Callable[[str], None]) -> tuple[Handin, str]:
    """The hand-in a file is (its LMS name or layout) and its student: the roster's id where the roster knows them
    (else they join ``strangers``), else the id the file gives; ``tell`` hears of a file whose owner is a guess."""
    handin = identify(path, lesson, course.lesson_ids)
    if roster:
        matched = roster.match(handin)
        if matched is not None:
            return handin, matched.student_id
        strangers.setdefault(handin.student, []).append(path)
    elif not handin.layout:
        tell(f"cannot tell whose submission {path} is from its name or folder; it is graded as student "
             f"{handin.student!r}. Name files <student>_<lesson>.ipynb, put them in a folder per student, or give "
             "the LMS's download as it came (Canvas, Moodle, Gradescope)")
    return handin, handin.student


def _owners(items: Iterable[_Item], tell: Callable[[str], None]) -> dict[tuple[str, str], Path]:
    """The file the exports show for each student and lesson (its latest resubmission); ``tell`` hears of the
    others."""
    groups: dict[tuple[str, str], list[_Item]] = {}
    for item in items:
        if item.lesson is not None:
            groups.setdefault((item.student, item.lesson), []).append(item)
    owners = {}
    for (student, lesson_id), group in groups.items():
        chosen = _latest(group)
        owners[(student, lesson_id)] = chosen.path
        if len(group) > 1:
            others = ", ".join(str(i.path) for i in group if i is not chosen)
            tell(f"{others} and {chosen.path} are {'both' if len(group) == 2 else 'all'} {student}'s {lesson_id}; "
                 f"the exports show {chosen.path}"
                 + (f" (resubmission {chosen.handin.attempt})" if chosen.handin.attempt else ""))
    return owners


class _ClassGrading:
    """One run of ``grade_class`` into an open gradebook, step by step: ``survey`` reads each file once (its digest
    keys the gradebook; only a file to be graded is parsed, and its graded code digested), ``grade`` reuses what the
    gradebook holds, grades the rest once per distinct file and records each grade the moment it is known, and
    ``export`` writes the folder's files from the gradebook."""

    def __init__(self, book: Gradebook, course: Course, base_seed: int, roster: Roster, *, lesson: str | None,
                 regrade: bool, on_result: Callable[[ClassLine, bool], None] | None,
                 tell: Callable[[str], None], jobs: int | None = None) -> None:
        self.book, self.course, self.base_seed, self.roster = book, course, base_seed, roster
        self.lesson, self.regrade, self.on_result, self.tell = lesson, regrade, on_result, tell
        self.items: dict[str, _Item] = {}
        self.hits: dict[GradeKey, tuple | None] = {}  # the gradebook's grade of each key seen (None: to be graded)
        self.loaded: dict[Path, Submission | SubmissionError] = {}  # the files to be graded, parsed
        self.code_digests: dict[str, str] = {}  # graded code digests by content hash, new to the gradebook
        self.graded_code: dict[str, str] = {}  # each file's graded code (similarity.graded_code), by content hash
        self.jobs = jobs  # processes grading (and scoring similarity) at once
        self.strangers: dict[str, list[Path]] = {}  # students not on the roster, and their files
        self.owners: dict[tuple[str, str], Path] = {}
        self.results: dict[str, SubmissionResult] = {}
        self.pending: list[Path] = []  # the first file of each key with no grade
        self.copies: dict[Path, Path] = {}  # a file -> the file with the same key that is graded for both

    def survey(self, files: list[Path]) -> None:
        versions: dict[str, str] = {}
        kept_code = self.book.code_digest_hashes()
        for index, path in enumerate(files):
            lesson_id: str | None = None
            key = None
            try:
                lesson_id = infer_lesson(path, self.course, self.lesson)
                if lesson_id not in versions:
                    versions[lesson_id] = checks_version(self.course, lesson_id)
                data, digest = _read(path)
                if digest is not None:
                    key = GradeKey(digest, lesson_id, versions[lesson_id], self.base_seed)
                    if key not in self.hits:
                        self.hits[key] = None if self.regrade else self.book.lookup(key)
                        if self.hits[key] is None:  # the first file with these bytes is the one graded
                            self.loaded[path] = _parse(path, self.course, lesson_id, data, digest)
                    if digest not in kept_code and digest not in self.code_digests:
                        self.code_digests[digest] = _code_digest(path, data, self.loaded.get(path))
                    if digest not in self.graded_code:  # for the similarity report, from the bytes read here
                        parsed = self.loaded.get(path)
                        self.graded_code[digest] = graded_code(parsed.cells) if isinstance(parsed, Submission) \
                            else submission_code(path, data) or ""
            except (SubmissionError, CourseError):
                pass
            handin, student = _whose(path, lesson_id, self.course, self.roster, self.strangers, self.tell)
            self.items[str(path)] = _Item(index, path, lesson_id, handin, student, key)
        for student, where in sorted(self.strangers.items()):
            self.tell(f"{student} is not on the roster: {', '.join(map(str, where))} (graded; add them to the roster "
                      "or rename the file)")
        self.owners = _owners(self.items.values(), self.tell)

    def _owns(self, item: _Item) -> bool:
        """Whether ``item`` is the one the exports show for its student and lesson (its latest resubmission)."""
        return self.owners.get((item.student, item.lesson)) == item.path

    def _tell_result(self, item: _Item | None, result: SubmissionResult, reused: bool) -> None:
        if self.on_result:
            self.on_result(ClassLine(item.student if item is not None else "unknown", result), reused)

    def grade(self, files: list[Path], run_id: int, **grading) -> None:
        """Reuse, grade (``grading``: the runner's jobs, sandbox and warn) and record every file."""
        first_of: dict[GradeKey, Path] = {}
        for path in files:
            item = self.items[str(path)]
            if item.key is not None and item.key in first_of:  # the same bytes twice in one run: graded once
                self.copies[path] = first_of[item.key]
                continue
            hit = self.hits[item.key] if item.key is not None else None
            if hit is None:
                self.pending.append(path)
                if item.key is not None:
                    first_of[item.key] = path
                continue
            self.results[str(path)] = dataclasses.replace(hit[0], path=str(path))
            if self._owns(item):
                self.book.point(item.key, str(path), item.student, item.handin.timestamp, item.handin)
            self._tell_result(item, self.results[str(path)], True)
        recorded: dict[str, GradeKey] = {}
        failures: list[BaseException] = []

        def record(result: SubmissionResult) -> None:
            self.results[result.path] = result
            item = self.items.get(result.path)
            try:
                if item is not None and item.key is not None and result.lesson == item.lesson:
                    self.book.record(item.key, self.base_seed, result, item.student, item.handin.timestamp, run_id,
                                     point=self._owns(item), handin=item.handin)
                    recorded[result.path] = item.key
            except Exception as exc:  # noqa: BLE001 - reported after the run; the grades still come back
                failures.append(exc)
            self._tell_result(item, result, False)

        if self.pending:
            grade(self.pending, lesson=self.lesson, seed=self.base_seed, course=self.course, on_result=record,
                  loaded={p: self.loaded[p] for p in self.pending if p in self.loaded}, **grading)
        if failures:
            raise GradingError(f"could not write the gradebook {self.book.path}: {failures[0]}")
        for path, first in self.copies.items():
            original = self.results.get(str(first))
            if original is None:
                continue
            self.results[str(path)] = dataclasses.replace(original, path=str(path))
            item = self.items[str(path)]
            if str(first) in recorded and self._owns(item):
                self.book.point(recorded[str(first)], str(path), item.student, item.handin.timestamp, item.handin)
            self._tell_result(item, self.results[str(path)], True)

    @property
    def graded(self) -> int:
        return len(self.pending) + len(self.copies)

    def export(self, files: list[Path], out: Path, compare_with: str | Path | None = None
               ) -> tuple[list[Entry], tuple[IdenticalGroup, ...], list[Path], tuple[ClassLine, ...], SimilarityReport]:
        """The gradebook's entries (with written answers), the identical groups, the answer files written, one
        line per graded file and the similarity report; the exports written."""
        if self.code_digests:
            self.book.store_code_digests(self.code_digests)
        entries = _with_code_digests(self.book, self.book.entries())
        identical = tuple(find_identical(entries, released_digests(self.course)))
        similarity = class_similarity(self.book, entries, self.course, compare_with, self.graded_code, self.jobs)
        # Written answers are read from the files just graded (never run) and join the exports.
        entries = with_answers(self.book, entries, self.course)
        write_exports(entries, out, self.course, identical, self.roster, similarity)
        written = write_answer_files(entries, self.course, out)
        lines = _lines([self.items[str(p)] for p in files if str(p) in self.results], self.results, entries,
                       self.course, self.book, self.roster)
        return entries, identical, written, lines, similarity


def grade_class(paths: list[str | Path], out: str | Path = "grades", *, regrade: bool = False,
                lesson: str | None = None, jobs: int | None = None, seed: int | None = None,
                course: Course | str | Path | None = None,
                on_result: Callable[[ClassLine, bool], None] | None = None,
                warn: Callable[[str], None] | None = None, require_sandbox: bool = False,
                roster: Roster | str | Path | None = None, compare_with: str | Path | None = None) -> ClassRun:
    """Grade submissions into the gradebook in ``out`` and write the exports there.

    ``seed`` is the base seed (default: course.yml's ``grading.seed``, else the gradebook's secret seed); every
    submission of a lesson gets the inputs that derive from it, whatever its bytes, so the same code gets the same
    grade and a rerun can reuse it. Whose each file is comes from its name and folders (``students.identify``:
    LMS downloads included), matched to ``roster`` (a CSV file, default course.yml's ``grading.roster`` or the
    gradebook's) where there is one; of several files of one student and lesson the latest resubmission counts.
    ``on_result(line, reused)`` is called once per submission as soon as its grade is known (its student and result;
    written answers and late penalties come with the run's ``lines``); ``warn`` gets what the
    instructor should look at (files whose owner cannot be told, students not on the roster, resubmissions).
    The exports include the similarity report (``class_similarity``; ``compare_with``: a folder of known outside
    solutions).
    """
    start = time.monotonic()
    course = course if isinstance(course, Course) else load_course(course)
    if lesson is not None:
        course.lesson(lesson)
    files = list(dict.fromkeys(expand_paths(list(paths))))
    if not files:
        raise GradingError("no submissions to grade: give .ipynb or .py files, or folders holding them")
    book = Gradebook(out)
    try:
        base_seed = int(seed) if seed is not None else course.grading.seed if course.grading.seed is not None \
            else book.secret_seed()
        the_roster = class_roster(book, course, roster)
        run_id = book.start_run(base_seed, len(files))
        run = _ClassGrading(book, course, base_seed, the_roster, lesson=lesson, regrade=regrade, on_result=on_result,
                            tell=warn or (lambda message: None), jobs=jobs)
        run.survey(files)
        run.grade(files, run_id, jobs=jobs, require_sandbox=require_sandbox, warn=warn)
        book.finish_run(run_id, reused=len(files) - run.graded, graded=run.graded)
        entries, identical, written, lines, similarity = run.export(files, Path(out), compare_with)
    finally:
        book.close()
    report = GradeReport(base_seed, tuple(run.results[str(p)] for p in files if str(p) in run.results),
                         round(time.monotonic() - start, 3))
    awaiting = sum(a.status == AnswerStatus.AWAITING for e in entries for a in e.answers)
    handed = {(e.student_id, e.lesson) for e in entries}
    missing = {lesson_id: tuple(s for s in the_roster.ids if (s, lesson_id) not in handed)
               for lesson_id in dict.fromkeys(e.lesson for e in entries)} if the_roster else {}
    return ClassRun(report, len(files) - run.graded, run.graded, Path(out), lines, identical, awaiting,
                    tuple(written), tuple(sorted(run.strangers)), {k: v for k, v in missing.items() if v}, similarity)


def _lines(items: list[_Item], results: dict[str, SubmissionResult], entries: list[Entry], course: Course,
           book: Gradebook, roster: Roster) -> tuple[ClassLine, ...]:
    """Each graded file as a ``ClassLine``: the exported ones with their entry's answers and late penalty, the others
    (earlier resubmissions) with answers read from their own file."""
    by_path = {e.path: e for e in entries}
    loose = [Entry(item.student, item.lesson, str(item.path), item.handin.timestamp, item.key, 0,
                   results[str(item.path)], "", name=item.handin.name, email=item.handin.email, late=item.handin.late)
             for item in items if str(item.path) not in by_path and item.key is not None and item.lesson]
    by_path.update({e.path: e for e in with_answers(book, loose, course)})
    lines = []
    for item in items:
        result = results[str(item.path)]
        entry = by_path.get(str(item.path))
        answers = entry.answers if entry is not None else ()
        known = roster.get(item.student) if roster else None
        name = known.name if known is not None else item.handin.name
        penalty = late_penalty(course, item.lesson, item.handin.timestamp, item.handin.late,
                               result.max_score + AnswerTotals.of(answers).max_score) if item.lesson else 0.0
        lines.append(ClassLine(item.student, result, answers, penalty, name))
    return tuple(lines)


@dataclass(frozen=True)
class AnswersRun:
    """What ``refresh`` did: scores imported (new, or changed from the stored ones), rows that matched what the
    gradebook already held, answers awaiting grading and graded, files written."""

    imported: int
    awaiting: int
    graded: int
    written: tuple[Path, ...]
    unchanged: int = 0


def _graded_folder(out: str | Path, error: type[ShortcutlabError]) -> Path:
    """``out`` if ``shortcutlab grade`` wrote a gradebook there; ``error`` saying what to do otherwise."""
    out = Path(out)
    if not (out / GRADEBOOK_FILE).is_file():
        raise error(f"no gradebook in {out} ({GRADEBOOK_FILE}); grade the class first (shortcutlab grade --out {out} "
                    "...) or pass the --out folder it wrote")
    return out


def with_answers(book: Gradebook, entries: list[Entry], course: Course) -> list[Entry]:
    """``entries`` with their written answers (read from the files where the gradebook has none yet) and the
    instructor's scores; as they are for a course without written answers."""
    if not any(spec.answers for spec in course.lessons):
        return entries
    collect(book, entries)
    return attach(entries, course, book)


def refresh(out: str | Path, course: Course, scores: Iterable[str | Path] = ()) -> AnswersRun:
    """Read the answers of submissions graded into ``out``, import the instructor's ``scores`` files (all rows
    or none), and rewrite the exports with the answers: grades.csv, class_matrix.csv, results/, feedback/ and
    answers/, and the similarity report (identical_submissions.csv is left as it is)."""
    out = _graded_folder(out, AnswerError)
    with Gradebook(out) as book:
        entries = with_answers(book, book.entries(), course)
        imported = unchanged = 0
        scores = list(scores)
        if scores:
            rows = read_scores(scores, course, entries)
            stored = book.answer_scores()
            # (points, comment, answer digest) already held for that student, lesson and question: not a new score
            same = sum(stored.get(row[:3]) == (row[3], row[4], row[5]) for row in rows)
            book.import_answer_scores(rows)
            imported, unchanged = len(rows) - same, same
            entries = attach(book.entries(), course, book)
        the_roster = book.roster()
        similarity = class_similarity(book, entries, course)
    written = write_exports(entries, out, course, identical=None, roster=the_roster, similarity=similarity)
    written += write_answer_files(entries, course, out)
    answers = [a for e in entries for a in e.answers]
    return AnswersRun(imported, sum(a.status == AnswerStatus.AWAITING for a in answers),
                      sum(a.status == AnswerStatus.GRADED for a in answers), tuple(written), unchanged)


def class_report(out: str | Path, course: Course,
                 at_risk_share: float = AT_RISK_SHARE) -> tuple[ClassReport, list[Path]]:
    """The class report of the class graded into ``out`` (``shortcutlab report``): ``out/report.html`` and
    ``out/check_stats.csv`` from the gradebook's latest submissions, their written answers and the roster."""
    out = _graded_folder(out, GradingError)
    with Gradebook(out) as book:
        entries = with_answers(book, book.entries(), course)
        roster = book.roster()
    report = build_class_report(entries, course, roster, at_risk_share)
    return report, write_class_report(report, out)
