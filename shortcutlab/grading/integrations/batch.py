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
import time
from collections.abc import Callable, Iterable
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


def _parse(path: Path, course: Course, lesson: str, data: bytes) -> Submission | SubmissionError:
    """The submission parsed from the bytes already read, or why it cannot be graded (itself a grade)."""
    try:
        return load_submission(path, course, lesson, data=data)
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


def grade_class(paths: list[str | Path], out: str | Path = "grades", *, regrade: bool = False,
                lesson: str | None = None, jobs: int | None = None, seed: int | None = None,
                course: Course | str | Path | None = None,
                on_result: Callable[[ClassLine, bool], None] | None = None,
                warn: Callable[[str], None] | None = None, require_sandbox: bool = False,
                roster: Roster | str | Path | None = None) -> ClassRun:
    """Grade submissions into the gradebook in ``out`` and write the exports there.

    ``seed`` is the base seed (default: course.yml's ``grading.seed``, else the gradebook's secret seed); every
    submission of a lesson gets the inputs that derive from it, whatever its bytes, so the same code gets the same
    grade and a rerun can reuse it. Whose each file is comes from its name and folders (``students.identify``:
    LMS downloads included), matched to ``roster`` (a CSV file, default course.yml's ``grading.roster`` or the
    gradebook's) where there is one; of several files of one student and lesson the latest resubmission counts.
    ``on_result(line, reused)`` is called once per submission as soon as its grade is known (its student and result;
    written answers and late penalties come with the run's ``lines``); ``warn`` gets what the
    instructor should look at (files whose owner cannot be told, students not on the roster, resubmissions).
    """
    start = time.monotonic()
    course = course if isinstance(course, Course) else load_course(course)
    if lesson is not None:
        course.lesson(lesson)
    files = list(dict.fromkeys(expand_paths(list(paths))))
    if not files:
        raise GradingError("no submissions to grade: give .ipynb or .py files, or folders holding them")
    tell = warn or (lambda message: None)
    versions: dict[str, str] = {}
    items: dict[str, _Item] = {}
    owners: dict[tuple[str, str], Path] = {}
    results: dict[str, SubmissionResult] = {}
    pending: list[Path] = []
    first_of: dict[GradeKey, Path] = {}
    copies: dict[Path, Path] = {}  # a file -> the file with the same key that is graded for both
    recorded: dict[str, GradeKey] = {}
    # Each file is read once, here: its digest keys the gradebook, and only a file to be graded is parsed (a rerun
    # that reuses every grade parses nothing); the runner gets the parsed submissions.
    loaded: dict[Path, Submission | SubmissionError] = {}
    hits: dict[GradeKey, tuple | None] = {}  # the gradebook's grade of each key seen (None: to be graded)
    code_digests: dict[str, str] = {}  # graded code digests by content hash, of files the gradebook has none of

    def owns(item: _Item) -> bool:
        """Whether ``item`` is the one the exports show for its student and lesson (its latest resubmission)."""
        return owners.get((item.student, item.lesson)) == item.path

    book = Gradebook(out)
    try:
        base_seed = int(seed) if seed is not None else course.grading.seed if course.grading.seed is not None \
            else book.secret_seed()
        the_roster = class_roster(book, course, roster)
        run_id = book.start_run(base_seed, len(files))
        kept_code = book.code_digest_hashes()
        strangers: dict[str, list[Path]] = {}
        for index, path in enumerate(files):
            lesson_id: str | None = None
            key = None
            try:
                lesson_id = infer_lesson(path, course, lesson)
                if lesson_id not in versions:
                    versions[lesson_id] = checks_version(course, lesson_id)
                data, digest = _read(path)
                if digest is not None:
                    key = GradeKey(digest, lesson_id, versions[lesson_id], base_seed)
                    if key not in hits:
                        hits[key] = None if regrade else book.lookup(key)
                        if hits[key] is None:  # the first file with these bytes is the one graded
                            loaded[path] = _parse(path, course, lesson_id, data)
                    if digest not in kept_code and digest not in code_digests:
                        code_digests[digest] = _code_digest(path, data, loaded.get(path))
            except (SubmissionError, CourseError):
                pass
            handin = identify(path, lesson_id, course.lesson_ids)
            student = handin.student
            if the_roster:
                matched = the_roster.match(handin)
                if matched is not None:
                    student = matched.student_id
                else:
                    strangers.setdefault(student, []).append(path)
            elif not handin.layout:
                tell(f"cannot tell whose submission {path} is from its name or folder; it is graded as student "
                     f"{student!r}. Name files <student>_<lesson>.ipynb, put them in a folder per student, or give "
                     "the LMS's download as it came (Canvas, Moodle, Gradescope)")
            items[str(path)] = _Item(index, path, lesson_id, handin, student, key)
        for student, where in sorted(strangers.items()):
            tell(f"{student} is not on the roster: {', '.join(map(str, where))} (graded; add them to the roster or "
                 "rename the file)")
        groups: dict[tuple[str, str], list[_Item]] = {}
        for item in items.values():
            if item.lesson is not None:
                groups.setdefault((item.student, item.lesson), []).append(item)
        for (student, lesson_id), group in groups.items():
            chosen = _latest(group)
            owners[(student, lesson_id)] = chosen.path
            if len(group) > 1:
                others = ", ".join(str(i.path) for i in group if i is not chosen)
                tell(f"{others} and {chosen.path} are {'both' if len(group) == 2 else 'all'} {student}'s {lesson_id}; "
                     f"the exports show {chosen.path}"
                     + (f" (resubmission {chosen.handin.attempt})" if chosen.handin.attempt else ""))
        for path in files:
            item, key = items[str(path)], items[str(path)].key
            if key is not None and key in first_of:  # the same bytes twice in one run: graded once
                copies[path] = first_of[key]
                continue
            hit = hits[key] if key is not None else None
            if hit is None:
                pending.append(path)
                if key is not None:
                    first_of[key] = path
                continue
            result = dataclasses.replace(hit[0], path=str(path))
            if owns(item):
                book.point(key, str(path), item.student, item.handin.timestamp, item.handin)
            results[str(path)] = result
            if on_result:
                on_result(ClassLine(item.student, result), True)

        failures: list[BaseException] = []

        def record(result: SubmissionResult) -> None:
            results[result.path] = result
            item = items.get(result.path)
            try:
                if item is not None and item.key is not None and result.lesson == item.lesson:
                    book.record(item.key, base_seed, result, item.student, item.handin.timestamp, run_id,
                                point=owns(item), handin=item.handin)
                    recorded[result.path] = item.key
            except Exception as exc:  # noqa: BLE001 - reported after the run; the grades still come back
                failures.append(exc)
            if on_result:
                on_result(ClassLine(item.student if item is not None else "unknown", result), False)

        if pending:
            grade(pending, lesson=lesson, jobs=jobs, seed=base_seed, course=course, on_result=record,
                  require_sandbox=require_sandbox, warn=warn, loaded={p: loaded[p] for p in pending if p in loaded})
        if failures:
            raise GradingError(f"could not write the gradebook {book.path}: {failures[0]}")
        for path, first in copies.items():
            original = results.get(str(first))
            if original is None:
                continue
            results[str(path)] = dataclasses.replace(original, path=str(path))
            item = items[str(path)]
            if str(first) in recorded and owns(item):
                book.point(recorded[str(first)], str(path), item.student, item.handin.timestamp, item.handin)
            if on_result:
                on_result(ClassLine(item.student, results[str(path)]), True)
        graded = len(pending) + len(copies)
        book.finish_run(run_id, reused=len(files) - graded, graded=graded)
        if code_digests:
            book.store_code_digests(code_digests)
        entries = _with_code_digests(book, book.entries())
        identical = tuple(find_identical(entries, released_digests(course)))
        # Written answers are read from the files just graded (never run) and join the exports.
        entries = with_answers(book, entries, course)
        write_exports(entries, out, course, identical, the_roster)
        written = write_answer_files(entries, course, out)
        lines = _lines([items[str(p)] for p in files if str(p) in results], results, entries, course, book,
                       the_roster)
    finally:
        book.close()
    report = GradeReport(base_seed, tuple(results[str(p)] for p in files if str(p) in results),
                         round(time.monotonic() - start, 3))
    graded = len(pending) + len(copies)
    awaiting = sum(a.status == AnswerStatus.AWAITING for e in entries for a in e.answers)
    handed = {(e.student_id, e.lesson) for e in entries}
    missing = {lesson_id: tuple(s for s in the_roster.ids if (s, lesson_id) not in handed)
               for lesson_id in dict.fromkeys(e.lesson for e in entries)} if the_roster else {}
    return ClassRun(report, len(files) - graded, graded, Path(out), lines, identical, awaiting, tuple(written),
                    tuple(sorted(strangers)), {k: v for k, v in missing.items() if v})


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
    answers/ (identical_submissions.csv is left as it is)."""
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
    written = write_exports(entries, out, course, identical=None, roster=the_roster)
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
