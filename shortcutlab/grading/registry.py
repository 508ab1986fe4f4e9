"""Checks: the ``@check`` decorator, finding a lesson's checks, and planning their points and limits.

Check files are read twice: statically (``ast``, no import, so the grading parent never imports torch)
to plan points, and by import in the process that runs them.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Callable, TypeVar

from shortcutlab.course import Course, CourseError, LessonSpec

MARK = "__shortcutlab_check__"
SEED_PARAMETER = "seed"
# What a check tests. A "core" check shows that the function does its work: its main output against the reference
# (or a known answer) on ordinary inputs, what no stub can pass; each function has one or two. A "property" check
# tests anything else that is asked of it (a shape, a range, a default, an edge case, hooks removed, a mode restored,
# inputs left alone, working under no_grad): one slip costs that check's points. A property check's points count
# only once every core check of its function passed, so code that does nothing useful earns nothing (gating.py);
# no property is ever gated on another property.
CORE, PROPERTY = "core", "property"
KINDS = (CORE, PROPERTY)
F = TypeVar("F", bound=Callable)


class CheckFileError(CourseError):
    """A check file cannot be read, or disagrees with course.yml."""


SLIP_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # what a slip id looks like: no_relu, transposed, ...


class Slip(str):
    """A hint that names the mistake it diagnosed: it reads as the hint's text wherever a hint goes (``expect_*``'s
    ``hint=``), and carries ``slip``, an id such as ``"no_relu"``, which the failure reports apart from its message,
    so the class report counts mistakes without reading any text."""

    slip: str

    def __new__(cls, slip: str, hint: str) -> Slip:
        if not SLIP_ID.match(slip):
            raise ValueError(f"a slip id is lowercase letters, digits and underscores, e.g. 'no_relu'; got {slip!r}")
        text = super().__new__(cls, hint)
        text.slip = slip
        return text


class CheckFailure(AssertionError):
    """A check failed; the message is meant for the student (raised by the ``expect_*`` helpers). ``slip`` names the
    mistake the check diagnosed, if it did (taken from a ``Slip`` hint when not given)."""

    def __init__(self, message: str = "", slip: str | None = None, hint: object = None) -> None:
        super().__init__(message)
        self.slip = slip if slip is not None else getattr(hint, "slip", None)


class NotReplayable(BaseException):
    """The check cannot be re-run from recorded answers (BaseException: no check's ``except`` catches it)."""


@dataclass(frozen=True)
class CheckMark:
    function: str
    hidden: bool
    kind: str = CORE


def _kind_error(kind: object) -> str:
    return (f"unknown check kind {kind!r}: write kind=\"core\" (the default: the check shows the function does its "
            "work, its main output against the reference on ordinary inputs) or kind=\"property\" (anything else "
            "asked of it; it counts only once the function's core checks pass)")


def check(function: str, *, hidden: bool = False, kind: str = CORE) -> Callable[[F], F]:
    """Mark a pytest-style check of the graded function ``function``; ``hidden`` checks are not run by
    ``shortcutlab.check`` in notebooks and their messages are not shown to students; a ``kind="property"``
    check's points count only when every core check of ``function`` passed."""
    if not isinstance(function, str) or not function.isidentifier():
        raise TypeError(f"@check needs the graded function's name as a string, e.g. @check(\"grad_cam\"); "
                        f"got {function!r}")
    if kind not in KINDS:
        raise ValueError(_kind_error(kind))

    def mark(fn: F) -> F:
        setattr(fn, MARK, CheckMark(function, bool(hidden), kind))
        return fn

    return mark


@dataclass(frozen=True)
class CheckInfo:
    """A check as written in its file: ``name`` is the test function, ``function`` the graded one."""

    name: str
    function: str
    hidden: bool
    params: tuple[str, ...]
    line: int
    doc: str = ""
    kind: str = CORE


@dataclass(frozen=True)
class PlannedCheck(CheckInfo):
    """A check as a lesson grades it: its share of the function's points, its time limit (s), and its visibility
    with course.yml's ``hidden`` applied."""

    max_score: float = field(default=0.0, kw_only=True)
    timeout: float = field(default=0.0, kw_only=True)


def _decorator_args(node: ast.expr, where: str) -> tuple[str, bool, str] | None:
    """(function, hidden, kind) of ``@check(...)`` / ``@grading.check(...)``; None for other decorators."""
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    if name != "check":
        return None
    values: dict[str, ast.expr] = dict(zip(("function",), node.args))
    values.update({kw.arg: kw.value for kw in node.keywords if kw.arg})
    function, hidden, kind = values.get("function"), values.get("hidden"), values.get("kind")
    if not (isinstance(function, ast.Constant) and isinstance(function.value, str)) or (
            hidden is not None and not (isinstance(hidden, ast.Constant) and isinstance(hidden.value, bool))) or (
            kind is not None and not (isinstance(kind, ast.Constant) and isinstance(kind.value, str))):
        raise CheckFileError(f"{where}: write @check(\"function_name\") or @check(\"function_name\", hidden=True, "
                             "kind=\"property\") with literal arguments; the grader reads them without importing "
                             "the file")
    if kind is not None and kind.value not in KINDS:
        raise CheckFileError(f"{where}: {_kind_error(kind.value)}")
    return function.value, bool(hidden.value) if hidden is not None else False, \
        kind.value if kind is not None else CORE


def parse_check_file(path: str | Path) -> list[CheckInfo]:
    """The checks of a file in source order, read without importing it."""
    path = Path(path)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except OSError as exc:
        raise CheckFileError(f"cannot read check file {path}: {exc}") from exc
    except SyntaxError as exc:
        raise CheckFileError(f"check file {path} line {exc.lineno}: {exc.msg}") from exc
    checks: list[CheckInfo] = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for decorator in node.decorator_list:
            found = _decorator_args(decorator, f"{path} line {decorator.lineno}")
            if found is None:
                continue
            if any(c.name == node.name for c in checks):
                raise CheckFileError(f"{path} line {node.lineno}: a second check named {node.name}; "
                                     "give each check its own name")
            args = node.args
            params = tuple(a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs))
            doc = (ast.get_docstring(node) or "").strip().splitlines()
            checks.append(CheckInfo(node.name, found[0], found[1], params, node.lineno, doc[0] if doc else "",
                                    found[2]))
    return checks


def plan_checks(course: Course, lesson: LessonSpec | str) -> list[PlannedCheck]:
    """The lesson's checks ordered by function (course.yml order), each with points, visibility and timeout.

    Raises CheckFileError when course.yml and the check file disagree (a function without checks,
    a check of an unknown function, a hidden name that is no check) or a function has property checks only.
    """
    lesson = course.lesson(lesson) if isinstance(lesson, str) else lesson
    path = course.check_file(lesson)
    if not path.is_file():
        raise CheckFileError(f"lesson {lesson.id} has no check file {path}; write it (see "
                             "docs/grading-contract.md) or set `checks:` for the lesson in course.yml")
    found = parse_check_file(path)
    names = {c.name for c in found}
    unknown = sorted({c.function for c in found} - set(lesson.functions))
    if unknown:
        raise CheckFileError(f"{path} checks {', '.join(unknown)}, which course.yml does not list for lesson "
                             f"{lesson.id} (it lists {', '.join(lesson.functions)}); add them to course.yml")
    unchecked = [f for f in lesson.functions if not any(c.function == f for c in found)]
    if unchecked:
        raise CheckFileError(f"course.yml gives points to {', '.join(unchecked)} in lesson {lesson.id}, but "
                             f"{path} has no @check for {'it' if len(unchecked) == 1 else 'them'}")
    stray = [h for h in lesson.hidden if h not in names]
    if stray:
        raise CheckFileError(f"course.yml hides {', '.join(stray)} in lesson {lesson.id}, but {path} has no such "
                             f"check; its checks are: {', '.join(c.name for c in found)}")
    no_core = [f for f in lesson.functions if all(c.kind == PROPERTY for c in found if c.function == f)]
    if no_core:
        raise CheckFileError(f"{path}: every check of {', '.join(no_core)} is a kind=\"property\" check; a "
                             "function needs at least one core check (one that compares its main output with the "
                             "reference or a known answer), since property checks count only once those pass")
    planned: list[PlannedCheck] = []
    for function, spec in lesson.functions.items():
        mine = [c for c in found if c.function == function]
        for c in mine:
            planned.append(PlannedCheck(**{**asdict(c), "hidden": c.hidden or c.name in lesson.hidden},
                                        max_score=spec.points / len(mine), timeout=course.timeout(lesson, function)))
    return planned


def check_seed(run_seed: int, lesson: str, name: str) -> int:
    """A per-check seed in [0, 2**31) derived from the run's seed, stable across processes."""
    digest = hashlib.sha256(f"{run_seed}:{lesson}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


CHECK_MODULE_PREFIX = "shortcutlab_checks_"  # the module name of every imported check file starts with it


def import_check_file(path: str | Path, fresh: bool = False) -> ModuleType:
    """Import a check file as a module of its own (cached by path); ``fresh``: a new copy under a name of its own,
    whatever was imported before, so changing its names touches no other copy."""
    path = Path(path).resolve()
    module_name = CHECK_MODULE_PREFIX + ("fresh_" if fresh else "") + \
        hashlib.sha256(str(path).encode()).hexdigest()[:12] + "_" + path.stem.replace("-", "_")
    if module_name in sys.modules and not fresh:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise CheckFileError(f"cannot import check file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def collect_checks(module: ModuleType) -> dict[str, Callable]:
    """The marked check functions of an imported check file, by name."""
    return {name: value for name, value in vars(module).items() if callable(value) and hasattr(value, MARK)}
