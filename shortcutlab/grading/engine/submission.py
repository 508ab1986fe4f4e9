"""Submissions: which lesson a file belongs to and which of its code runs when it is graded.

A notebook contributes its ``setup``-tagged cells and its nbgrader solution cells, in order, and nothing
else (exploration cells never run). A ``.py`` file runs whole, one top-level statement at a time.
Notebooks are read as plain JSON: importing nbformat costs seconds the grader does not need.
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from shortcutlab.cells import SETUP_TAG, cell_source, cell_tags
from shortcutlab.course import Course
from shortcutlab.errors import ShortcutlabError
from shortcutlab.grading.engine.limits import MAX_SUBMISSION_BYTES

SUFFIXES = (".ipynb", ".py")
# IPython syntax that plain Python cannot run; the grader has no kernel, so these lines are dropped.
_MAGIC_LINE = re.compile(r"^\s*[%!]")
_HARMLESS_CELL_MAGICS = ("%%time", "%%timeit", "%%capture")


class SubmissionError(ShortcutlabError):
    """A submission cannot be graded at all (unreadable, not a notebook, unknown lesson)."""


@dataclass(frozen=True)
class Cell:
    """Code the grader runs: ``kind`` is setup, solution or file; ``name`` the nbgrader grade_id, if any."""

    kind: str
    source: str
    filename: str  # names the cell in tracebacks
    name: str = ""
    index: int = 0

    def to_dict(self) -> dict:
        return {"kind": self.kind, "source": self.source, "filename": self.filename, "name": self.name,
                "index": self.index}


@dataclass(frozen=True)
class Submission:
    path: Path
    lesson: str
    cells: tuple[Cell, ...]
    digest: str  # sha256 of the file's bytes, to tell resubmissions apart
    notes: tuple[str, ...] = field(default=())


def strip_magics(source: str) -> str | None:
    """The cell as plain Python: line magics and shell escapes commented out; None for a cell magic cell."""
    lines = source.split("\n")
    first = lines[0].strip() if lines else ""
    if first.startswith("%%"):
        if not first.startswith(_HARMLESS_CELL_MAGICS):
            return None
        lines[0] = "# " + lines[0]
    return "\n".join("# " + line if _MAGIC_LINE.match(line) else line for line in lines)


def _is_definitions_only(source: str) -> bool:
    """True for cells made only of imports, defs and classes (safe to run when metadata is missing)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    allowed = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return bool(tree.body) and all(isinstance(node, allowed) or (
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in tree.body)


def notebook_cells(notebook: dict, where: str) -> tuple[tuple[Cell, ...], tuple[str, ...]]:
    """The cells a grader runs, and notes about the notebook; SubmissionError if it is not a v4 notebook."""
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        if isinstance(notebook, dict) and "worksheets" in notebook:
            raise SubmissionError(f"{where} is an old (v3) notebook; open it in Jupyter and save it again (v4)")
        raise SubmissionError(f"{where} is not a Jupyter notebook (no list of cells); submit the .ipynb file "
                              "saved by Jupyter")
    version = notebook.get("nbformat")
    if version is not None and version != 4:
        raise SubmissionError(f"{where} says it is an nbformat {version!r} notebook; the grader reads nbformat 4 "
                              "(what Jupyter saves today): open it in Jupyter and save it again")
    code = [(i, c) for i, c in enumerate(notebook["cells"]) if isinstance(c, dict) and c.get("cell_type") == "code"]
    chosen: list[Cell] = []
    notes: list[str] = []
    tagged = False
    for index, cell in code:
        metadata = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
        nbgrader = metadata.get("nbgrader") if isinstance(metadata.get("nbgrader"), dict) else {}
        if SETUP_TAG in cell_tags(cell):
            kind = "setup"
        elif nbgrader.get("solution") is True:
            kind = "solution"
        else:
            continue
        tagged = True
        name = str(nbgrader.get("grade_id", "")) if kind == "solution" else ""
        source = strip_magics(cell_source(cell))
        if source is None:
            notes.append(f"cell {index + 1} starts with a cell magic and was skipped")
            continue
        label = f"cell {index + 1}" + (f", {name}" if name else f", {kind}")
        chosen.append(Cell(kind, source, f"<{label}>", name, index + 1))
    if not tagged:
        # Some editors drop cell metadata: fall back to cells that only import and define.
        for index, cell in code:
            source = strip_magics(cell_source(cell))
            if source is not None and _is_definitions_only(source):
                chosen.append(Cell("solution", source, f"<cell {index + 1}>", "", index + 1))
        notes.append("the notebook has no setup tags or nbgrader metadata (was it saved by a tool that drops "
                     "cell metadata?); graded the cells that only import and define functions or classes")
    return tuple(chosen), tuple(notes)


def read_cells(path: Path, data: bytes) -> tuple[tuple[Cell, ...], tuple[str, ...]]:
    """The code of a submission file (its bytes ``data``) that grading runs; SubmissionError if unusable."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SubmissionError(f"{path} is not UTF-8 text; save it again as UTF-8") from None
    if path.suffix == ".ipynb":
        try:
            notebook = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SubmissionError(f"{path} is not a valid notebook: broken JSON at line {exc.lineno}, column "
                                  f"{exc.colno} ({exc.msg}). Download it again or re-save it from Jupyter") from None
        return notebook_cells(notebook, str(path))
    try:
        ast.parse(text, filename=str(path))
    except SyntaxError as exc:
        raise SubmissionError(f"{path} line {exc.lineno}: {exc.msg}. A file that does not compile defines no "
                              "function; fix the syntax error") from None
    return (Cell("file", text, str(path)),), ()


def infer_lesson(path: Path, course: Course, lesson: str | None = None) -> str:
    """The lesson id: ``lesson`` if given, else from the file name or a parent folder (nbgrader layout)."""
    if lesson is not None:
        return course.lesson(lesson).id
    ids = sorted(course.lesson_ids, key=len, reverse=True)
    names = [path.stem] + [p.name for p in path.parents][:3]
    for test in (str.__eq__, str.startswith, str.__contains__):
        for name in names:
            for lesson_id in ids:
                if test(name, lesson_id):
                    return lesson_id
    raise SubmissionError(f"cannot tell the lesson of {path}: name the file after it (e.g. {ids[-1]}.ipynb) or "
                          f"pass --lesson with one of: {', '.join(course.lesson_ids)}")


def load_submission(path: str | Path, course: Course, lesson: str | None = None,
                    data: bytes | None = None, digest: str | None = None) -> Submission:
    """Read a .ipynb or .py submission (``data``: its bytes, and ``digest`` their sha256, if the caller has read and
    hashed them already); SubmissionError (with what to do) if it cannot be graded."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise SubmissionError(f"{path}: submit a notebook (.ipynb) or a Python file (.py)")
    try:
        size = path.stat().st_size if data is None else len(data)
        if size > MAX_SUBMISSION_BYTES:
            raise SubmissionError(f"{path} is {size / 2**20:.0f} MB, more than the grader reads "
                                  f"({MAX_SUBMISSION_BYTES >> 20} MB); clear the notebook's outputs (Edit > Clear All Outputs) "
                                  "and save it again")
        if data is None:
            data = path.read_bytes()
    except OSError as exc:
        raise SubmissionError(f"cannot read {path}: {exc.strerror or exc}") from None
    lesson_id = infer_lesson(path, course, lesson)
    cells, notes = read_cells(path, data)
    return Submission(path, lesson_id, cells, digest or hashlib.sha256(data).hexdigest(), notes)


def expand_paths(paths: list[str | Path]) -> list[Path]:
    """Files to grade: each path as given; a folder gives its .ipynb and .py files (recursively, sorted)."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()
                              and ".ipynb_checkpoints" not in p.parts and "__pycache__" not in p.parts))
        else:
            out.append(path)
    return out
