"""A lesson's check file as a student edition ships it: its visible checks only, each name it binds to withheld
library code (``from shortcutlab.interpret import grad_cam as reference_grad_cam``) bound instead to the values
recorded at release (``grading.engine.recorded``), and those values beside it."""
from __future__ import annotations

import ast
import json
from pathlib import Path

from shortcutlab.course import Course, CourseError
from shortcutlab.edition.answer_code import PACKAGE, AnswerDefinition, LibraryText, first_line

# One line, no import of its own: the edition's file keeps every line where the full one has it (tracebacks agree).
_BINDING = "{name} = __import__({module!r}, fromlist=['recorded']).recorded(__file__, {name!r})"
_RECORDED_MODULE = "shortcutlab.grading.engine.recorded"


def withheld_bindings(text: str, withheld: list[AnswerDefinition], library: LibraryText) -> dict[str, str]:
    """Names a check file's top-level imports bind to withheld library code: local name -> withheld name."""
    names = {answer.name for answer in withheld}
    found = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE \
                and not node.level:
            for alias in node.names:
                try:
                    module, qualname = library.locate(f"{node.module}.{alias.name}")
                except CourseError:  # a constant or a module: no code of the answer key
                    continue
                if f"{module}:{qualname}" in names:
                    found[alias.asname or alias.name] = f"{module}:{qualname}"
    return found


def edition_check_text(text: str, hidden: set[str], bindings: dict[str, str]) -> str:
    """``text`` without the top-level definitions named in ``hidden`` (decorators included) and with each name in
    ``bindings`` taken out of its import and bound to its recorded values there, every other line where it was."""
    lines = text.splitlines(keepends=True)
    for node in ast.parse(text).body:
        first = first_line(node)
        span = node.end_lineno - first + 1
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in hidden:
            lines[first - 1:node.end_lineno] = ["\n"] * span
        elif isinstance(node, ast.ImportFrom) and any((a.asname or a.name) in bindings for a in node.names):
            kept = [a for a in node.names if (a.asname or a.name) not in bindings]
            statements = [ast.unparse(ast.ImportFrom(node.module, kept, node.level))] if kept else []
            statements += [_BINDING.format(name=a.asname or a.name, module=_RECORDED_MODULE)
                           for a in node.names if (a.asname or a.name) in bindings]
            if len(statements) > span:  # fewer lines than statements: the last line holds the rest
                statements[span - 1:] = ["; ".join(statements[span - 1:])]
            lines[first - 1:node.end_lineno] = [line + "\n" for line in statements] + ["\n"] * (span - len(statements))
    return "".join(lines)


def write_edition_checks(folder: Path, course: Course, withheld: list[AnswerDefinition],
                         library: LibraryText) -> list[Path]:
    """Each lesson's edition check file and recorded values into ``folder``; the check files written."""
    from shortcutlab.grading.engine.recorded import record_path, record_visible_checks
    from shortcutlab.grading.registry import plan_checks

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for lesson in course.lessons:
        source = course.check_file(lesson)
        text = source.read_text(encoding="utf-8")
        bindings = withheld_bindings(text, withheld, library)
        hidden = {planned.name for planned in plan_checks(course, lesson) if planned.hidden}
        target = folder / source.name
        target.write_text(edition_check_text(text, hidden, bindings), encoding="utf-8")
        if bindings:
            record = record_visible_checks(course, lesson, sorted(bindings))
            record_path(target).write_text(json.dumps(record), encoding="utf-8")
        written.append(target)
    return written
