"""Generate student lessons from instructor solutions: solution regions become stubs, outputs go.

A code cell's ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region is replaced by
``raise NotImplementedError("<message>")`` at the region's indentation, the message taken from a
``### HINT: ...`` line inside the region: what to implement, never how (the "how" lives in the staged hints of
the exercise's markdown; tests/test_lesson_help.py compares each message with its solution). Everything else
(nbgrader metadata, tags, cell ids) is kept, so ``lessons/`` is a pure, byte-reproducible function of
``solutions/``. ``release_self_study`` writes the self-study edition: the lessons plus each exercise's solution
and each question's model answer, collapsed.

Points come from course.yml only: given the course, ``release`` writes each function's points into the
``metadata.nbgrader.points`` of its check cell (``shortcutlab.check("<lesson>.<function>", ...)``, grade id
``check_<function>``) in ``solutions/`` (that value only, the file otherwise unchanged) and ``lessons/``;
``points_problems`` lists every notebook whose points disagree, for ``release --check``.

Written answers: a markdown cell with nbgrader metadata ``solution: true`` (a manually graded answer cell,
grade id ``answer_<question>``) keeps its text outside the solution region, and the region (the model answer)
becomes ``ANSWER_PROMPT``, as nbgrader's ClearSolutions does with its text stub (``export-nbgrader`` sets that
stub to the same prompt). Its points come from course.yml's ``answers`` of the lesson, like a check cell's.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat

from shortcutlab.cells import ANSWER_ID, EXAMPLE_TAG, SETUP_TAG, cell_source, cell_tags
from shortcutlab.errors import ShortcutlabError
from shortcutlab.install_cell import INSTALL_CELL_ID, install_cell_source

if TYPE_CHECKING:
    from shortcutlab.course import Course, LessonSpec, StudentEditionSpec

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
HINT = "### HINT:"
DEFAULT_HINT = "replace this line with your solution"
# What a student sees in a written-answer cell of a lesson (the model answer's place); nbgrader's default is
# "YOUR ANSWER HERE", which the grader also reads as unanswered.
ANSWER_PROMPT = "*Your answer here.*"
# Metadata Jupyter and nbclient write while running or viewing a notebook: never part of a lesson.
TRANSIENT_CELL_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled")

CHECK_CALL = re.compile(r"""shortcutlab\.check\(\s*["'](?P<lesson>\w+)\.(?P<function>\w+)["']""")

__all__ = ["ANSWER_PROMPT", "NotebookError", "SolutionRegion", "answer_stub", "check_release", "model_answer",
           "notebook_text", "notebook_with_points", "points_problems", "release", "release_notebook", "release_self_study",
           "release_text", "self_study_notebook", "set_points", "solution_regions", "solution_source", "stub_source",
           "with_generated_cells"]


class NotebookError(ShortcutlabError):
    """A solution notebook cannot be turned into a lesson (bad JSON, unbalanced solution regions)."""


@dataclass(frozen=True)
class SolutionRegion:
    """One ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region of a code cell: the lines ``begin`` to ``end``
    (0-based, both markers included), the markers' ``indent``, the stub's ``message`` (its ``### HINT:`` line: what
    to implement) and the solution ``code`` between the markers, without the hint line."""

    begin: int
    end: int
    indent: str
    message: str
    code: str


def solution_regions(source: str, where: str = "cell") -> list[SolutionRegion]:
    """The solution regions of a code cell's ``source``, in order; ``where`` names the cell in error messages."""
    regions: list[SolutionRegion] = []
    begin: int | None = None
    lines = source.split("\n")
    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if begin is not None:
                raise NotebookError(f"{where}, line {number + 1}: {BEGIN} inside another solution region; "
                                    f"close the first with {END}")
            begin = number
        elif stripped.startswith(END):
            if begin is None:
                raise NotebookError(f"{where}, line {number + 1}: {END} without a {BEGIN} before it")
            inside = lines[begin + 1:number]
            hints = [r.strip()[len(HINT):].strip() for r in inside if r.strip().startswith(HINT)]
            code = "\n".join(r for r in inside if not r.strip().startswith(HINT))
            opening = lines[begin]
            regions.append(SolutionRegion(begin, number, opening[: len(opening) - len(opening.lstrip())],
                                          hints[0] if hints and hints[0] else DEFAULT_HINT, code))
            begin = None
    if begin is not None:
        raise NotebookError(f"{where}: {BEGIN} without a matching {END}")
    return regions


def _replace_regions(source: str, where: str, replacement) -> str:
    """``source`` with each solution region's lines replaced by ``replacement(region)`` (a list of lines)."""
    lines = source.split("\n")
    out: list[str] = []
    position = 0
    for region in solution_regions(source, where):
        out += lines[position:region.begin] + replacement(region)
        position = region.end + 1
    return "\n".join(out + lines[position:])


def stub_source(source: str, where: str = "cell") -> str:
    """``source`` with every solution region replaced by ``raise NotImplementedError("<message>")``.

    ``where`` names the cell in error messages.
    """
    # json.dumps gives a valid Python string literal, escaping quotes and backslashes in the message
    return _replace_regions(source, where, lambda region: [
        f"{region.indent}raise NotImplementedError({json.dumps(region.message, ensure_ascii=False)})"])


def solution_source(source: str, where: str = "cell") -> str:
    """``source`` with the solution regions' markers and stub messages removed: the worked solution as code."""
    return _replace_regions(source, where, lambda region: region.code.split("\n") if region.code else [])


def _answer_lines(source: str, where: str) -> list[tuple[str, str]]:
    """Each line of a written-answer cell with where it lies: "outside" its solution region, "begin" (the region's
    opening marker line) or "inside" it; closing marker lines are dropped. Unbalanced markers are a NotebookError."""
    lines: list[tuple[str, str]] = []
    inside = False
    for number, line in enumerate(source.split("\n"), start=1):
        if BEGIN.removeprefix("### ") in line:
            if inside:
                raise NotebookError(f"{where}, line {number}: {BEGIN} inside another solution region; "
                                    f"close the first with {END}")
            inside = True
            lines.append((line, "begin"))
        elif END.removeprefix("### ") in line:
            if not inside:
                raise NotebookError(f"{where}, line {number}: {END} without a {BEGIN} before it")
            inside = False
        else:
            lines.append((line, "inside" if inside else "outside"))
    if inside:
        raise NotebookError(f"{where}: {BEGIN} without a matching {END}")
    return lines


def answer_stub(source: str, where: str = "cell") -> str:
    """A written-answer cell's text with its solution region (the model answer) replaced by ``ANSWER_PROMPT``,
    at the region's indentation, line for line what nbgrader's ClearSolutions does with a text stub; a cell
    without a region becomes the prompt alone (as in nbgrader)."""
    lines = _answer_lines(source, where)
    if not any(place == "begin" for _, place in lines):
        return ANSWER_PROMPT
    return "\n".join(line[: len(line) - len(line.lstrip())] + ANSWER_PROMPT if place == "begin" else line
                     for line, place in lines if place != "inside")


def model_answer(source: str, where: str = "cell") -> str:
    """The model answer of a written-answer cell: the text of its solution region (empty without one)."""
    return "\n".join(line for line, place in _answer_lines(source, where) if place == "inside").strip()


def _is_answer_cell(cell) -> bool:
    """A written answer: a markdown cell that nbgrader treats as a solution (graded by hand if grade: true)."""
    meta = cell.get("metadata", {}).get("nbgrader") if isinstance(cell.get("metadata"), dict) else None
    return cell.get("cell_type") == "markdown" and isinstance(meta, dict) and bool(meta.get("solution"))


def _cell_name(path: str, index: int, cell) -> str:
    cell_id = cell.get("id")
    return f"{path}, cell {index}" + (f" (id {cell_id!r})" if cell_id else "")


EXPECTED_SUMMARY = "Expected output"


def expected_outputs(nb: nbformat.NotebookNode, path: str = "notebook") -> dict[int, str]:
    """What each ``example``-tagged code cell of a solution notebook prints (cell index -> text), when the notebook's
    setup cells, solution cells and examples run in order, in this process, with the solutions' code."""
    examples = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and EXAMPLE_TAG in cell_tags(cell)]
    if not examples:
        return {}
    namespace: dict[str, Any] = {"__name__": "__example__"}
    printed: dict[int, str] = {}
    for index, cell in enumerate(nb.cells[: examples[-1] + 1]):
        is_solution = isinstance(cell.metadata.get("nbgrader"), dict) and cell.metadata.nbgrader.get("solution")
        if cell.cell_type != "code" or not (SETUP_TAG in cell_tags(cell) or is_solution or index in examples):
            continue
        where = _cell_name(path, index, cell)
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(cell.source, f"<{where}>", "exec"), namespace)  # noqa: S102 - the instructor's own code
        except Exception as exc:  # noqa: BLE001 - any failure of the instructor's code is reported as such
            raise NotebookError(f"{where} fails when release runs it to show the expected output "
                                f"({type(exc).__name__}: {exc}); fix the solution or the example") from exc
        if index in examples:
            printed[index] = out.getvalue().rstrip()
    return printed


def _with_ids(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` in which every cell has an id."""
    copied = copy.deepcopy(nb)
    if any("id" not in cell for cell in copied.cells):
        # nbformat would invent random ids on write, breaking byte-for-byte reproducibility: derive them.
        copied.nbformat_minor = max(copied.get("nbformat_minor", 0), 5)
        for index, cell in enumerate(copied.cells):
            cell.setdefault("id", f"cell-{index}")
    return copied


def with_generated_cells(nb: nbformat.NotebookNode, path: str = "notebook",
                         edition: "StudentEditionSpec | None" = None) -> nbformat.NotebookNode:
    """A copy of a solution notebook (every cell with an id) with the cells release adds: given the course's
    ``edition``, the install cell before the first code cell (see ``shortcutlab.install_cell``), and after each
    example cell what it prints with the solution, collapsed: the expected output (see ``expected_outputs``)."""
    copied = _with_ids(nb)
    expected = expected_outputs(copied, path)
    cells: list = []
    for index, cell in enumerate(copied.cells):
        if edition is not None and cell.cell_type == "code" and not any(c.cell_type == "code" for c in cells):
            cells.append(nbformat.v4.new_code_cell(install_cell_source(edition.url), id=INSTALL_CELL_ID))
        cells.append(cell)
        if index in expected:
            cells.append(_collapsed(f"{cell.id}-expected", EXPECTED_SUMMARY, f"```\n{expected[index]}\n```"))
    copied.cells = cells
    return copied


def release_notebook(nb: nbformat.NotebookNode, path: str = "notebook",
                     edition: "StudentEditionSpec | None" = None) -> nbformat.NotebookNode:
    """A lesson from a solution notebook (not modified): stubs in, outputs and execution counts out, and the cells
    of ``with_generated_cells`` (the install cell with ``edition``, the expected output after each example)."""
    lesson = with_generated_cells(nb, path, edition)
    for index, cell in enumerate(lesson.cells):
        for key in TRANSIENT_CELL_METADATA:
            cell.metadata.pop(key, None)
        if _is_answer_cell(cell):
            cell.source = answer_stub(cell.source, _cell_name(path, index, cell))
        if cell.cell_type != "code":
            continue
        cell.source = stub_source(cell.source, _cell_name(path, index, cell))
        cell.outputs = []
        cell.execution_count = None
    return lesson


def _read(path: Path, text: str | None = None) -> nbformat.NotebookNode:
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise NotebookError(f"cannot read {path}: {exc}") from exc
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # noqa: BLE001 - nbformat raises several types for malformed JSON/schema
        raise NotebookError(f"{path} is not a valid notebook ({type(exc).__name__}: {exc}); "
                            f"fix its JSON, e.g. by opening and saving it in Jupyter") from exc
    if not isinstance(nb.get("cells"), list):
        raise NotebookError(f"{path} has no list of cells; is it a Jupyter notebook?")
    for index, cell in enumerate(nb.cells):
        if not isinstance(cell, dict) or "cell_type" not in cell or not isinstance(cell.get("source", ""), str):
            raise NotebookError(f"{path}, cell {index} is malformed (needs cell_type and a source)")
    return nb


# ----------------------------------------------------------------------------- points from course.yml


def _number(value: Any) -> Any:
    """4.0 -> 4, so a whole number of points is written as nbgrader and Jupyter write it."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def set_points(cells: list, lesson: "LessonSpec", where: str = "notebook", write: bool = True
               ) -> tuple[list[str], list[str]]:
    """Give each check cell of ``lesson`` its function's points, and each written-answer cell its answer's
    points, from course.yml (in place unless ``write`` is false); returns (what disagreed, problems).

    ``cells`` are a notebook's cells (nbformat nodes or plain JSON dicts). A check cell is a code cell with
    ``metadata.nbgrader.grade`` true that calls ``shortcutlab.check("<lesson>.<function>", ...)`` or whose
    grade id is ``check_<function>``. An answer cell is a cell with ``grade`` true and grade id
    ``answer_<question>`` (``answer_q1``: course.yml's ``answers.q1``). Problems: a check cell of a function
    course.yml does not grade, two check cells for one function, a graded function without a check cell; the
    same for answers (an answer cell course.yml does not list, two for one question, a listed answer without
    a cell), and a manually graded markdown cell whose grade id is not ``answer_<question>``.
    """
    disagreements: list[str] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    answered: dict[str, int] = {}
    for index, cell in enumerate(cells):
        meta = cell.get("metadata", {}).get("nbgrader") if isinstance(cell.get("metadata"), dict) else None
        if not isinstance(meta, dict) or not meta.get("grade"):
            continue
        if cell.get("cell_type") != "code":
            _answer_points(cell, meta, index, lesson, where, write, answered, disagreements, problems)
            continue
        if ANSWER_ID.match(str(meta.get("grade_id", ""))):
            _answer_points(cell, meta, index, lesson, where, write, answered, disagreements, problems)
            continue
        call = CHECK_CALL.search(cell_source(cell))
        grade_id = str(meta.get("grade_id", ""))
        function = call["function"] if call else grade_id.removeprefix("check_") if grade_id.startswith("check_") \
            else None
        if function is None:
            continue  # some other graded cell (a written answer, say): not course.yml's business
        name = f"{where}, cell {index} ({grade_id or 'no grade_id'})"
        if call and call["lesson"] != lesson.id:
            problems.append(f"{name} checks {call['lesson']}.{function}, but this is lesson {lesson.id}'s notebook")
            continue
        if function not in lesson.functions:
            problems.append(f"{name} checks {function}, which course.yml does not grade in lesson {lesson.id} "
                            f"(it grades {', '.join(lesson.functions)})")
            continue
        if function in seen:
            problems.append(f"{name} checks {function} again (cell {seen[function]} already does); nbgrader would "
                            f"count its points twice")
            continue
        seen[function] = index
        _sync_points(meta, lesson.functions[function].points, function, where, index, write, disagreements)
    for function in lesson.functions:
        if function not in seen:
            problems.append(f"{where}: no check cell for {function} (a code cell `shortcutlab.check("
                            f"\"{lesson.id}.{function}\", {function})` with nbgrader metadata grade: true, "
                            f"grade_id check_{function}); course.yml grades it")
    for question in lesson.answers:
        if question not in answered:
            problems.append(f"{where}: no answer cell for {question} (a markdown cell with nbgrader metadata "
                            f"grade: true, solution: true, grade_id answer_{question}); course.yml lists it "
                            f"in lesson {lesson.id}'s answers")
    return disagreements, problems


def _sync_points(meta: dict, points: float, what: str, where: str, index: int, write: bool,
                 disagreements: list[str]) -> None:
    """Note (and, if ``write``, fix) a graded cell's nbgrader points that differ from course.yml's ``points``."""
    expected = _number(points)
    got = meta.get("points")
    if not isinstance(got, (int, float)) or isinstance(got, bool) or got != expected:
        disagreements.append(f"{where}: {what} has {got!r} points in the notebook (cell {index}, "
                             f"{meta.get('grade_id', '')}) but {expected!r} in course.yml")
        if write:
            meta["points"] = expected


def _answer_points(cell: dict, meta: dict, index: int, lesson: "LessonSpec", where: str, write: bool,
                   answered: dict[str, int], disagreements: list[str], problems: list[str]) -> None:
    """``set_points`` for one graded cell that is not a check cell: a written answer (or a problem)."""
    grade_id = str(meta.get("grade_id", ""))
    match = ANSWER_ID.match(grade_id)
    name = f"{where}, cell {index} ({grade_id or 'no grade_id'})"
    if match is None:
        if cell.get("cell_type") == "markdown" and meta.get("solution"):
            problems.append(f"{name} is a manually graded answer cell, but its grade_id is not answer_<question> "
                            f"(answer_q1, answer_q2, ...); name it after its question in course.yml's answers")
        return  # some other graded cell: not course.yml's business
    question = match["question"]
    if question not in lesson.answers:
        listed = ", ".join(lesson.answers) or "none"
        problems.append(f"{name} is the answer to {question}, which course.yml does not list in lesson "
                        f"{lesson.id}'s answers (it lists {listed}); add `{question}: {{points: 1}}` there or "
                        f"remove the cell")
        return
    if question in answered:
        problems.append(f"{name} answers {question} again (cell {answered[question]} already does); nbgrader would "
                        f"count its points twice")
        return
    answered[question] = index
    _sync_points(meta, lesson.answers[question].points, f"answer {question}", where, index, write, disagreements)


def _lessons_by_notebook(course: "Course | None") -> dict[str, "LessonSpec"]:
    return {lesson.notebook: lesson for lesson in course.lessons} if course is not None else {}


def notebook_with_points(path: Path, lesson: "LessonSpec | None", strict: bool = True) -> tuple[str, bool]:
    """The solution notebook's text with course.yml's points, and whether that changed it.

    Only the points change: the JSON is written back the way Jupyter and nbformat write it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NotebookError(f"cannot read {path}: {exc}") from exc
    if lesson is None:
        return text, False
    _read(path, text)  # a malformed notebook is reported as such before anything else
    raw = json.loads(text)
    disagreements, problems = set_points(raw["cells"], lesson, str(path))
    if problems and strict:
        raise NotebookError("; ".join(problems))
    if not disagreements:
        return text, False
    return json.dumps(raw, indent=1, sort_keys=True, ensure_ascii=False) + "\n", True


def notebook_text(nb: nbformat.NotebookNode) -> str:
    """A generated notebook file's exact text: nbformat's (sorted keys, one-space indent), with a trailing newline."""
    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def release_text(nb: nbformat.NotebookNode, path: str = "notebook", edition: "StudentEditionSpec | None" = None) -> str:
    """The lesson file's exact text (``notebook_text`` of ``release_notebook``)."""
    return notebook_text(release_notebook(nb, path, edition))


SOLUTION_SUMMARY = "Solution: open it after you have tried"
MODEL_ANSWER_SUMMARY = "A model answer: open it after you have written yours"


def _collapsed(cell_id: str, summary: str, body: str) -> nbformat.NotebookNode:
    """A markdown cell showing ``body`` only when the reader opens it (an HTML ``<details>`` block)."""
    return nbformat.v4.new_markdown_cell(f"<details>\n<summary>{summary}</summary>\n\n{body.strip()}\n\n</details>",
                                         id=cell_id)


def self_study_notebook(nb: nbformat.NotebookNode, path: str = "notebook",
                        edition: "StudentEditionSpec | None" = None) -> nbformat.NotebookNode:
    """The lesson of ``release_notebook``, plus each exercise's solution after its check cell and each question's
    model answer after its answer cell, both collapsed: the self-study edition, for learners without a grader."""
    nb = _with_ids(nb)
    lesson = release_notebook(nb, path, edition)
    by_id = {cell.id: cell for cell in nb.cells}
    cells: list = []
    solved: list[str] = []  # the solution code of the exercise's cells since the last check cell
    for index, released in enumerate(lesson.cells):
        cells.append(released)
        original = by_id.get(released.id)
        if original is None:
            continue  # a cell release added (an expected output)
        where = _cell_name(path, index, original)
        if original.cell_type == "code" and solution_regions(original.source, where):
            solved.append(solution_source(original.source, where).strip())
        elif original.cell_type == "code" and CHECK_CALL.search(original.source) and solved:
            code = "\n\n\n".join(solved)
            cells.append(_collapsed(f"{released.id}-solution", SOLUTION_SUMMARY, f"```python\n{code}\n```"))
            solved = []
        elif _is_answer_cell(original) and (answer := model_answer(original.source, where)):
            cells.append(_collapsed(f"{released.id}-model-answer", MODEL_ANSWER_SUMMARY, answer))
    lesson.cells = cells
    return lesson


def self_study_text(nb: nbformat.NotebookNode, path: str = "notebook",
                    edition: "StudentEditionSpec | None" = None) -> str:
    """The self-study notebook file's exact text (``notebook_text`` of ``self_study_notebook``)."""
    return notebook_text(self_study_notebook(nb, path, edition))


def _solutions(solutions_dir: Path) -> list[Path]:
    if not solutions_dir.is_dir():
        raise ShortcutlabError(f"solutions folder {solutions_dir} does not exist; pass --solutions DIR")
    return sorted(p for p in solutions_dir.glob("*.ipynb") if not p.name.startswith("."))


def _render_all(solutions_dir: Path, course: "Course | None" = None, strict: bool = True, render=release_text
                ) -> tuple[dict[str, str], dict[Path, str]]:
    """(lesson file name -> its text, solution notebook -> its new text where course.yml's points changed it).

    Every lesson is rendered before any is written, so one malformed notebook leaves lessons/ untouched."""
    by_notebook = _lessons_by_notebook(course)
    rendered: dict[str, str] = {}
    solutions: dict[Path, str] = {}
    for path in _solutions(solutions_dir):
        text, changed = notebook_with_points(path, by_notebook.get(path.name), strict)
        if changed:
            solutions[path] = text
        rendered[path.name] = render(_read(path, text), str(path), course.student_edition if course else None)
    return rendered, solutions


def release(solutions_dir: str | Path = "solutions", lessons_dir: str | Path = "lessons",
            course: "Course | None" = None) -> list[Path]:
    """Write ``lessons_dir/<id>.ipynb`` for every ``solutions_dir/<id>.ipynb``; return the files changed.

    With ``course``, each check cell of a lesson's notebook gets its function's points from course.yml, in the
    solution notebook (rewritten only where a value differs) and in the lesson."""
    rendered, solutions = _render_all(Path(solutions_dir), course)
    changed = []
    for path, text in solutions.items():
        path.write_bytes(text.encode("utf-8"))
        changed.append(path)
    return changed + _write_changed(rendered, Path(lessons_dir))


def _write_changed(rendered: dict[str, str], folder: Path) -> list[Path]:
    """Write each ``folder/<name>`` whose text differs from ``rendered[name]``; return those written."""
    folder.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in rendered.items():
        target = folder / name
        data = text.encode("utf-8")
        if not target.exists() or target.read_bytes() != data:
            target.write_bytes(data)
            changed.append(target)
    return changed


def release_self_study(solutions_dir: str | Path = "solutions", out_dir: str | Path = "self-study",
                       course: "Course | None" = None) -> list[Path]:
    """Write the self-study edition, ``out_dir/<id>.ipynb`` for every ``solutions_dir/<id>.ipynb`` (see
    ``self_study_notebook``); return the files changed. ``solutions_dir`` is never written: course.yml's points
    go into the edition only."""
    rendered, _ = _render_all(Path(solutions_dir), course, render=self_study_text)
    return _write_changed(rendered, Path(out_dir))


def check_release(solutions_dir: str | Path = "solutions", lessons_dir: str | Path = "lessons",
                  course: "Course | None" = None) -> list[str]:
    """Names of lessons that differ from what ``release`` would write, are missing, or have no solution.

    With ``course``, a lesson whose points differ from course.yml's is out of sync too (see ``points_problems``
    for the details)."""
    rendered, _ = _render_all(Path(solutions_dir), course, strict=False)  # points_problems names the problems
    lessons = Path(lessons_dir)
    stale = [name for name, text in rendered.items()
             if not (lessons / name).is_file() or (lessons / name).read_bytes() != text.encode("utf-8")]
    orphans = [p.name for p in sorted(lessons.glob("*.ipynb")) if p.name not in rendered] if lessons.is_dir() else []
    return sorted(stale + orphans)


def points_problems(solutions_dir: str | Path, lessons_dir: str | Path, course: "Course") -> list[str]:
    """One line per check or answer cell, in ``solutions_dir`` and ``lessons_dir``, whose points differ from
    course.yml (naming the notebook, the function or question and both values), and per missing, extra or
    doubled check or answer cell."""
    lines: list[str] = []
    for folder in (Path(solutions_dir), Path(lessons_dir)):
        for lesson in course.lessons:
            path = folder / lesson.notebook
            if path.is_file():
                disagreements, problems = set_points(_read(path).cells, lesson, str(path), write=False)
                lines += disagreements + problems
    return lines
