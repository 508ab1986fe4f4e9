"""Similar submissions: each student's graded code compared with every classmate's for the same lesson, with the
course's reference implementations (and the library helpers they use) and with known outside solutions.

The comparison is copydetect's (fingerprints of every k-gram of the code after Pygments has replaced every name by
one letter and dropped comments and layout), so renaming variables, rewording comments or reformatting keeps a copy
a copy.
The released stub (signatures, docstrings, ``raise NotImplementedError``) is boilerplate: code it holds never
counts. A pair's ``score`` is the larger of the two directions' shared fraction (how much of the smaller one the
other holds), in [0, 1]. Flags are for the instructor to look at; they never change a score.
"""
from __future__ import annotations

import ast
import functools
import io
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from shortcutlab.course import Course
from shortcutlab.edition.answer_code import LibraryText
from shortcutlab.grading.engine.submission import Cell, SubmissionError, expand_paths, read_cells

REFERENCE = "reference"  # the ``other`` of a pair whose other side is the course's reference code
OUTSIDE_PREFIX = "outside:"  # the ``other`` of a known outside solution: outside:<file name>
# copydetect's noise threshold, in characters of filtered code (a name is one character): a shared run shorter than
# this is never a match. Guarantee = noise: every k-gram is kept (no winnowing), so scores do not depend on
# Python's per-process string hashing.
NOISE_CHARACTERS = 30
SHOWN_PAIRS = 200  # flagged pairs the HTML shows side by side (highest scores first); the CSV lists every pair
_LANGUAGE = "python"


@dataclass(frozen=True)
class CodeDocument:
    """One side of a comparison: whose code (a student id, ``reference`` or ``outside:<name>``), for which lesson,
    from which file, and the code itself."""

    lesson: str
    owner: str
    path: str
    code: str


@dataclass(frozen=True)
class SimilarPair:
    """Two documents of a lesson at or over the threshold: ``score`` in [0, 1]; ``*_regions`` are the matched
    (start, end) character ranges of each side's code, for highlighting (filled for the pairs a report shows side
    by side, ``SHOWN_PAIRS``; empty for the others)."""

    lesson: str
    student: CodeDocument
    other: CodeDocument
    score: float
    student_regions: tuple[tuple[int, int], ...] = ()
    other_regions: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class SimilarityReport:
    """Every pair at or over ``threshold`` (lesson, then score, highest first), how many pairs were compared and how
    many documents; ``shown`` is how many of the first pairs carry their matched regions."""

    threshold: float
    pairs: tuple[SimilarPair, ...]
    compared: int
    documents: int
    shown: int = 0

    def similar_to(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """Per (lesson, student): the others a flagged pair names (students, ``reference``, ``outside:...``)."""
        found: dict[tuple[str, str], list[str]] = {}
        for pair in self.pairs:
            found.setdefault((pair.lesson, pair.student.owner), []).append(pair.other.owner)
            if not _is_known(pair.other.owner):
                found.setdefault((pair.lesson, pair.other.owner), []).append(pair.student.owner)
        return {key: tuple(dict.fromkeys(others)) for key, others in found.items()}


def _is_known(owner: str) -> bool:
    """The reference or an outside solution (not a student)."""
    return owner == REFERENCE or owner.startswith(OUTSIDE_PREFIX)


def graded_code(cells: Iterable[Cell]) -> str:
    """The code a submission is graded on, as it reads: its solution cells (or the whole .py file); setup cells,
    the same for everyone, are left out."""
    return "\n\n".join(cell.source.strip("\n") for cell in cells if cell.kind != "setup").strip("\n")


def submission_code(path: Path, data: bytes) -> str | None:
    """``graded_code`` of a submission file's bytes ``data``; None if they cannot be read as one."""
    try:
        cells, _ = read_cells(path, data)
    except SubmissionError:
        return None
    return graded_code(cells)


def file_code(path: str | Path) -> str | None:
    """``graded_code`` of a submission file; None if it cannot be read as one."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return submission_code(path, data)


def library_sources(reference: str, depth: int = 2) -> list[str]:
    """The source of ``reference`` (a dotted path into shortcutlab) and of the library functions and classes its
    code names, to ``depth`` calls deep, decorators included: a student pasting a helper copies the answer as surely
    as one pasting the reference. Read from the modules' text: nothing is imported (the grader's parent process
    stays free of torch)."""
    library = _library()
    return [library.source(module, qualname) for module, qualname in library.uses(reference, depth)]


@functools.lru_cache(maxsize=1)
def _library() -> LibraryText:
    return LibraryText()


def reference_code(course: Course, lesson: str) -> str:
    """The lesson's answer key as code: each graded function's library reference and the library helpers it uses,
    then the solution notebook's solution cells."""
    parts: list[str] = []
    for spec in course.lesson(lesson).functions.values():
        for source in library_sources(spec.reference):
            if source not in parts:
                parts.append(source)
    notebook = course.solution_notebook(course.lesson(lesson))
    solution = file_code(notebook) if notebook.is_file() else None
    if solution:
        parts.append(solution)
    return "\n\n".join(parts)


def stub_code(course: Course, lesson: str) -> str:
    """The graded code of the lesson as released (its stubs): boilerplate that never counts."""
    released = course.lesson_notebook(course.lesson(lesson))
    return (file_code(released) or "") if released.is_file() else ""


def outside_documents(folder: str | Path, course: Course, lesson: str | None = None) -> list[CodeDocument]:
    """Known outside solutions (``--compare-with``): every .ipynb / .py under ``folder``, for the lesson its name or
    folder says (else ``lesson``; a file of no known lesson is skipped)."""
    from shortcutlab.grading.engine.submission import infer_lesson

    documents = []
    for path in expand_paths([folder]):
        try:
            lesson_id = infer_lesson(path, course, lesson)
        except SubmissionError:
            continue
        code = file_code(path)
        if code:
            documents.append(CodeDocument(lesson_id, OUTSIDE_PREFIX + path.name, str(path), code))
    return documents


class _Fingerprints:
    """copydetect fingerprints of a course's documents, each computed once, with its lesson's released stub as
    boilerplate (each lesson's read once)."""

    def __init__(self, course: Course) -> None:
        self.course = course
        self._boilerplate: dict[str, object] = {}
        self._prints: dict[tuple[str, str], object] = {}

    def _stub(self, lesson: str):  # noqa: ANN202 - a numpy array of hashes
        import numpy as np
        from copydetect import CodeFingerprint

        if lesson not in self._boilerplate:
            stub = stub_code(self.course, lesson)
            hashes = CodeFingerprint("stub.py", NOISE_CHARACTERS, 1, language=_LANGUAGE, fp=io.StringIO(stub)).hashes
            self._boilerplate[lesson] = np.array(sorted(hashes), dtype=np.int64)
        return self._boilerplate[lesson]

    def of(self, document: CodeDocument):  # noqa: ANN201 - copydetect's CodeFingerprint
        from copydetect import CodeFingerprint

        key = (document.owner, document.lesson)
        if key not in self._prints:
            self._prints[key] = CodeFingerprint(document.path or "code.py", NOISE_CHARACTERS, 1,
                                                boilerplate=self._stub(document.lesson), language=_LANGUAGE,
                                                fp=io.StringIO(document.code))
        return self._prints[key]


def _regions(slices) -> tuple[tuple[int, int], ...]:  # noqa: ANN001 - a 2 x N array (empty: no match)
    import numpy as np

    slices = np.asarray(slices)
    if slices.ndim != 2 or slices.shape[0] != 2:
        return ()
    return tuple((int(start), int(end)) for start, end in zip(slices[0], slices[1]))


_FORKED: list = []  # the fingerprints a forked scoring worker reads (set just before the fork, never pickled)
PARALLEL_PAIRS = 4000  # fewer pairs to score than this are scored in this process (forking costs more)


def _scores(pairs: list[tuple[int, int]]) -> list[float]:
    """The score (the larger shared fraction) of each pair of ``_FORKED`` fingerprints, by index."""
    from copydetect import compare_files

    return [round(float(max(compare_files(_FORKED[a], _FORKED[b])[1])), 4) for a, b in pairs]


def _score_all(prints: list, todo: list[tuple[int, int]], jobs: int) -> list[float]:
    """``_scores`` of ``todo``, over ``jobs`` forked processes where there are many and fork exists."""
    import multiprocessing

    _FORKED[:] = prints
    chunks = [todo[start::jobs * 4] for start in range(jobs * 4)]
    try:
        if jobs < 2 or len(todo) < PARALLEL_PAIRS or "fork" not in multiprocessing.get_all_start_methods():
            return _scores(todo)
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            parts = pool.map(_scores, chunks)
    finally:
        _FORKED.clear()
    out = [0.0] * len(todo)
    for start, part in enumerate(parts):
        out[start::jobs * 4] = part
    return out


def compare(students: Sequence[CodeDocument], course: Course, threshold: float,
            outside: Sequence[CodeDocument] = (), shown: int = SHOWN_PAIRS, jobs: int = 1) -> SimilarityReport:
    """Compare each student's document with every other student's of the same lesson (one pair per unordered
    pair), with the lesson's reference code and with the ``outside`` documents of that lesson; the pairs scoring at
    least ``threshold``, the first ``shown`` with their matched regions. A student's document that is empty once the
    stub is removed is never flagged. Documents whose code is the same once names, comments and layout are gone
    (renamed copies) are compared once: their score is the same. ``jobs`` processes score the pairs."""
    from copydetect import compare_files

    prints = _Fingerprints(course)
    compared = 0
    documents = len(students)
    unique: dict[str, int] = {}  # filtered code -> index in ``fingerprints``
    fingerprints: list = []
    candidates: list[tuple[str, CodeDocument, CodeDocument, tuple[int, int]]] = []
    for lesson in dict.fromkeys(d.lesson for d in students):
        mine = sorted((d for d in students if d.lesson == lesson), key=lambda d: d.owner)
        known = [CodeDocument(lesson, REFERENCE, "", reference_code(course, lesson)),
                 *(d for d in outside if d.lesson == lesson)]
        documents += len(known)
        for first, second in [*itertools.combinations(mine, 2), *((s, k) for s in mine for k in known)]:
            if first.owner == second.owner:
                continue
            compared += 1
            left, right = prints.of(first), prints.of(second)
            if not left.hashes or not right.hashes:
                continue
            ids = []
            for fingerprint in (left, right):
                if fingerprint.filtered_code not in unique:
                    unique[fingerprint.filtered_code] = len(fingerprints)
                    fingerprints.append(fingerprint)
                ids.append(unique[fingerprint.filtered_code])
            candidates.append((lesson, first, second, (min(ids), max(ids))))
    todo = list(dict.fromkeys(key for *_, key in candidates))
    scores = dict(zip(todo, _score_all(fingerprints, todo, jobs)))
    pairs = [SimilarPair(lesson, first, second, scores[key]) for lesson, first, second, key in candidates
             if scores[key] >= threshold]
    order = {lesson: index for index, lesson in enumerate(course.lesson_ids)}
    pairs.sort(key=lambda p: (-p.score, order.get(p.lesson, len(order)), p.student.owner, p.other.owner))
    for index, pair in enumerate(pairs[:shown]):
        _, _, (left, right) = compare_files(prints.of(pair.student), prints.of(pair.other))
        pairs[index] = SimilarPair(pair.lesson, pair.student, pair.other, pair.score, _regions(left), _regions(right))
    pairs.sort(key=lambda p: (order.get(p.lesson, len(order)), -p.score, p.student.owner, p.other.owner))
    return SimilarityReport(threshold, tuple(pairs), compared, documents, min(shown, len(pairs)))


def folder_documents(paths: Sequence[str | Path], course: Course, lesson: str | None = None) -> list[CodeDocument]:
    """One document per student and lesson from submission files and folders (``shortcutlab similarity``): whose
    each file is comes from its name and folders as an LMS or nbgrader lays them out (``students.identify``), and of
    several files of one student and lesson the latest resubmission counts. Files of no known lesson, unreadable ones
    and ones with no graded code are skipped."""
    from shortcutlab.grading.engine.submission import infer_lesson
    from shortcutlab.grading.store.students import identify

    latest: dict[tuple[str, str], tuple[tuple, CodeDocument]] = {}
    for index, path in enumerate(expand_paths(list(paths))):
        try:
            lesson_id = infer_lesson(path, course, lesson)
        except SubmissionError:
            continue
        code = file_code(path)
        if not code:
            continue
        handin = identify(path, lesson_id, course.lesson_ids)
        order = (handin.attempt, handin.timestamp, index)
        key = (handin.student, lesson_id)
        if key not in latest or order > latest[key][0]:
            latest[key] = (order, CodeDocument(lesson_id, handin.student, str(path), code))
    return [document for _, document in latest.values()]
