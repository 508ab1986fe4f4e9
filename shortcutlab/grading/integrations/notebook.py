"""``shortcutlab.check("lesson.function", function)``: a notebook's check cell.

Runs the function's visible checks in this process, prints a short pass/fail report and raises
``ChecksFailed`` (an AssertionError) if any check fails, so nbgrader marks the cell failed. It never awards
points: under ``nbgrader autograde`` no cell runs in a kernel (the course root's config grades the notebook file
through the engine and fills the check cells: integrations/nbgrader.py), and a check cell that does run there (a
course root exported by an older shortcutlab) scores 0 and says to export again.
"""
from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shortcutlab.course import Course, CourseError, LessonSpec, import_object, load_course
from shortcutlab.edition import student_edition
from shortcutlab.grading.engine.execute import CheckContext, run_check
from shortcutlab.grading.engine.guard import ReferenceGuard, reference_codes
from shortcutlab.grading.engine.recorded import recorded_seeds
from shortcutlab.grading.engine.protocol import CheckReport
from shortcutlab.grading.engine.verdict import score
from shortcutlab.grading.registry import CheckFailure, check_seed, collect_checks, import_check_file, plan_checks
from shortcutlab.grading.results import CheckResult
from shortcutlab.grading.engine.gating import PENDING_EXPLANATION
from shortcutlab.grading.status import PENDING_SYMBOL, SYMBOLS, Status
from shortcutlab.grading.wording import check_title
from shortcutlab.threads import one_thread

_MISSING = object()
SEED_ENV = "SHORTCUTLAB_SEED"  # the base seed of nbgrader autograde's grading (set by the course root's config)
OUTDATED_CONFIG = ("0 points: this check cell ran in the notebook's kernel under nbgrader autograde, where the student's "
                   "cells could forge its result. The course root's nbgrader_config.py is out of date: run "
                   "`shortcutlab export-nbgrader` again, then `nbgrader autograde` grades through shortcutlab's engine")


class ChecksFailed(CheckFailure):
    """Some visible checks of a function failed (details are in the printed report)."""

    def _render_traceback_(self) -> list[str]:
        """What IPython (a notebook, nbgrader validate) shows instead of a traceback: the message alone, since the
        report above says what failed and the grader's frames would only hide it (IPython always shows the frame
        that raised, even with ``__tracebackhide__``)."""
        return [f"{type(self).__name__}: {self}"]


def indent(text: str, prefix: str = "      ") -> str:
    """``text`` with each line under a check's line in a report."""
    return "\n".join(prefix + line for line in text.strip().splitlines())


def check_in_notebook(name: str, obj: Any = _MISSING, /, *, seed: int | None = None,
                      course: str | Path | None = None, namespace: dict | None = None,
                      _depth: int = 1, **objects: Any) -> float | None:
    """Run the visible checks of ``name`` ("<lesson id>.<function>") on ``obj`` and print a report.

    Under ``nbgrader autograde`` (``NBGRADER_EXECUTION=autograde``) it runs nothing and returns 0: points come
    only from the engine (``GradeWithShortcutlab``), never from a kernel the student's cells control.

    Other objects a check needs (e.g. ``symmetric_kl`` for ``consistency_loss``) come from ``objects``,
    else from ``namespace``, else from the caller's globals. Raises ChecksFailed if any check fails.
    """
    __tracebackhide__ = True  # noqa: F841 - IPython and pytest hide this frame in tracebacks
    lesson_id, dot, function = name.partition(".")
    if not dot or not function:
        raise CourseError(f"name the function as '<lesson id>.<function>', e.g. '03_gradcam.grad_cam'; got {name!r}")
    loaded = load_course(course)
    lesson = loaded.lesson(lesson_id)
    loaded.function(lesson_id, function)
    if obj is _MISSING:
        raise CourseError(f"pass the function to check: shortcutlab.check({name!r}, {function})")
    if os.environ.get("NBGRADER_EXECUTION") == "autograde":
        print(OUTDATED_CONFIG)  # stdout: nbgrader gives 0 to a cell writing to stderr, whatever it returns
        return 0.0
    caller = sys._getframe(_depth).f_globals if namespace is None else namespace
    recorded = recorded_seeds(loaded.check_file(lesson)) if student_edition() is not None else ()
    # a student edition's checks answer from values recorded under a few seeds: one of them, drawn at random
    run_seed = (secrets.choice(recorded) if recorded else secrets.randbelow(2**31)) if seed is None else int(seed)
    run = _run_checks(loaded, lesson, function, {**caller, **objects, function: obj}, run_seed)
    failed = [c for c in run.checks if c.status != Status.PASSED and not c.gated]
    print("\n".join(cell_report(function, run, f"({run.seconds:.1f} s)" + (f", seed {run_seed}" if failed else ""))))
    if failed:
        raise ChecksFailed(f"{len(failed)} of {len(run.checks)} checks of {function} did not pass; see the report "
                           "above")


@dataclass(frozen=True)
class CellRun:
    """A check cell's checks of one function, scored as ``shortcutlab grade`` scores them (verdict.score: property
    checks gated), and the seconds they took."""

    checks: tuple[CheckResult, ...]
    seconds: float
    names: tuple[str, ...]  # the course's graded functions and classes, for check titles


def _run_checks(course: Course, lesson: LessonSpec, function: str, namespace: dict[str, Any],
                base_seed: int) -> CellRun:
    """Run ``function``'s visible checks on the objects in ``namespace``, on one thread."""
    if student_edition() is not None and not course.check_file(lesson).is_file():
        raise CourseError(f"this student edition of shortcutlab lacks the visible checks of lesson {lesson.id}, which "
                          f"every edition ships: reinstall the course's wheel, or ask your instructor for it again")
    planned = [c for c in plan_checks(course, lesson) if c.function == function and not c.hidden]
    checks = collect_checks(import_check_file(course.check_file(lesson)))
    context = CheckContext(dict(namespace))
    limit = course.grading.output_limit
    guard: Callable[[], ReferenceGuard | None] = lambda: None
    if not course.grading.allow_reference:  # resolved once; a fresh guard per check, as in grading
        dotted = lesson.functions[function].reference
        reference = import_object(dotted)
        codes, student_files = reference_codes(reference), defined_files(namespace, function)
        check_files = {getattr(getattr(fn, "__code__", None), "co_filename", "") for fn in checks.values()}
        guard = lambda: ReferenceGuard(function, reference, dotted, student_files, check_files, codes=codes)  # noqa: E731

    with one_thread():
        outcomes = {c.name: run_check(checks[c.name], context, check_seed(base_seed, lesson.id, c.name), c.timeout,
                                      function, limit, guard=guard()) for c in planned}
    reports = {name: _report(o, limit) for name, o in outcomes.items()}
    names = course.graded_names
    return CellRun(score(planned, reports, None, [], limit, names), sum(o.seconds for o in outcomes.values()), names)


def _report(outcome: Any, limit: int) -> CheckReport:
    """A check's report in the notebook: one a student edition cannot decide from its recorded values is an error
    that says so (grading decides it)."""
    if outcome.status == Status.UNVERIFIED:
        return CheckReport(Status.ERROR, outcome.output(limit).removeprefix("not replayable: "), outcome.seconds)
    return CheckReport(outcome.status, outcome.output(limit), outcome.seconds, slip=outcome.slip)


def defined_files(namespace: dict[str, Any], function: str) -> set[str]:
    """The files of the code defined where the check cell runs (a notebook's cells, whatever names the kernel gives
    them): the checked object's and those of the functions and classes its namespace defines itself."""
    module = namespace.get("__name__")
    files = set()
    for name, value in namespace.items():
        if name == function or (getattr(value, "__module__", None) == module and module is not None):
            try:
                files.update(code.co_filename for code in reference_codes(value))
            except Exception:  # noqa: BLE001 - an object whose attributes cannot be read defines no code here
                pass
    return files


def cell_report(function: str, run: CellRun, tail: str, sep: str = " ") -> list[str]:
    """A check cell's report: a head line (checks passed, pending, then ``tail``), one line per check (a failing
    visible one with its message below; a pending one with why, on its line; a hidden one with passed, pending or
    failed only) and, if some check is pending, the rule once."""
    passed = sum(c.status == Status.PASSED for c in run.checks)
    pending = sum(c.gated for c in run.checks)
    lines = [f"{function}: {passed}/{len(run.checks)} checks passed" + (f", {pending} pending" if pending else "")
             + sep + tail]
    for c in run.checks:
        symbol = PENDING_SYMBOL if c.gated else SYMBOLS.get(c.status, "?")
        if c.hidden:  # its message stays hidden
            state = "passed, pending a core check" if c.gated else "passed" if c.status == Status.PASSED else "failed"
            lines.append(f"  {symbol} hidden check ({state})")
        elif c.gated:
            lines.append(f"  {symbol} {check_title(c.name, function, run.names)}: {c.output}")
        else:
            lines.append(f"  {symbol} {check_title(c.name, function, run.names)}")
            if c.status != Status.PASSED:
                lines.append(indent(c.output))
    if pending:
        lines.append(f"  ({PENDING_SYMBOL} {PENDING_EXPLANATION})")
    return lines
