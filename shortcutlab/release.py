"""Generate student lessons from instructor solutions: solution regions become stubs, outputs go.

A code cell's ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region is replaced by
``raise NotImplementedError("<hint>")`` at the region's indentation, the hint taken from a
``### HINT: ...`` line inside the region. Everything else (nbgrader metadata, tags, cell ids)
is kept, so ``lessons/`` is a pure, byte-reproducible function of ``solutions/``.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import nbformat

from shortcutlab.errors import ShortcutlabError

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
HINT = "### HINT:"
DEFAULT_HINT = "replace this line with your solution"
# Metadata Jupyter and nbclient write while running or viewing a notebook: never part of a lesson.
TRANSIENT_CELL_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled")

__all__ = ["NotebookError", "check_release", "release", "release_notebook", "release_text", "stub_source"]


class NotebookError(ShortcutlabError):
    """A solution notebook cannot be turned into a lesson (bad JSON, unbalanced solution regions)."""


def stub_source(source: str, where: str = "cell") -> str:
    """``source`` with every solution region replaced by ``raise NotImplementedError("<hint>")``.

    ``where`` names the cell in error messages.
    """
    out: list[str] = []
    region: list[str] | None = None
    indent = ""
    for number, line in enumerate(source.split("\n"), start=1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if region is not None:
                raise NotebookError(f"{where}, line {number}: {BEGIN} inside another solution region; "
                                    f"close the first with {END}")
            region, indent = [], line[: len(line) - len(line.lstrip())]
        elif stripped.startswith(END):
            if region is None:
                raise NotebookError(f"{where}, line {number}: {END} without a {BEGIN} before it")
            hints = [r.strip()[len(HINT):].strip() for r in region if r.strip().startswith(HINT)]
            hint = hints[0] if hints and hints[0] else DEFAULT_HINT
            # json.dumps gives a valid Python string literal, escaping quotes and backslashes in the hint
            out.append(f"{indent}raise NotImplementedError({json.dumps(hint, ensure_ascii=False)})")
            region = None
        elif region is not None:
            region.append(line)
        else:
            out.append(line)
    if region is not None:
        raise NotebookError(f"{where}: {BEGIN} without a matching {END}")
    return "\n".join(out)


def _cell_name(path: str, index: int, cell) -> str:
    cell_id = cell.get("id")
    return f"{path}, cell {index}" + (f" (id {cell_id!r})" if cell_id else "")


def release_notebook(nb: nbformat.NotebookNode, path: str = "notebook") -> nbformat.NotebookNode:
    """A lesson from a solution notebook (not modified): stubs in, outputs and execution counts out."""
    lesson = copy.deepcopy(nb)
    if any("id" not in cell for cell in lesson.cells):
        # nbformat would invent random ids on write, breaking byte-for-byte reproducibility: derive them.
        lesson.nbformat_minor = max(lesson.get("nbformat_minor", 0), 5)
        for index, cell in enumerate(lesson.cells):
            cell.setdefault("id", f"cell-{index}")
    for index, cell in enumerate(lesson.cells):
        for key in TRANSIENT_CELL_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type != "code":
            continue
        cell.source = stub_source(cell.source, _cell_name(path, index, cell))
        cell.outputs = []
        cell.execution_count = None
    return lesson


def _read(path: Path) -> nbformat.NotebookNode:
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


def release_text(nb: nbformat.NotebookNode, path: str = "notebook") -> str:
    """The lesson file's exact text: sorted keys, one-space indent, trailing newline."""
    text = nbformat.writes(release_notebook(nb, path), version=4)
    return text if text.endswith("\n") else text + "\n"


def _solutions(solutions_dir: Path) -> list[Path]:
    if not solutions_dir.is_dir():
        raise ShortcutlabError(f"solutions folder {solutions_dir} does not exist; pass --solutions DIR")
    return sorted(p for p in solutions_dir.glob("*.ipynb") if not p.name.startswith("."))


def _render_all(solutions_dir: Path) -> dict[str, str]:
    # Render every lesson before writing any, so one malformed notebook leaves lessons/ untouched.
    return {p.name: release_text(_read(p), str(p)) for p in _solutions(solutions_dir)}


def release(solutions_dir: str | Path = "solutions", lessons_dir: str | Path = "lessons") -> list[Path]:
    """Write ``lessons_dir/<id>.ipynb`` for every ``solutions_dir/<id>.ipynb``; return the files changed."""
    rendered = _render_all(Path(solutions_dir))
    lessons = Path(lessons_dir)
    lessons.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in rendered.items():
        target = lessons / name
        data = text.encode("utf-8")
        if not target.exists() or target.read_bytes() != data:
            target.write_bytes(data)
            changed.append(target)
    return changed


def check_release(solutions_dir: str | Path = "solutions", lessons_dir: str | Path = "lessons") -> list[str]:
    """Names of lessons that differ from what ``release`` would write, are missing, or have no solution."""
    rendered = _render_all(Path(solutions_dir))
    lessons = Path(lessons_dir)
    stale = [name for name, text in rendered.items()
             if not (lessons / name).is_file() or (lessons / name).read_bytes() != text.encode("utf-8")]
    orphans = [p.name for p in sorted(lessons.glob("*.ipynb")) if p.name not in rendered] if lessons.is_dir() else []
    return sorted(stale + orphans)
