"""``shortcutlab.check("lesson.function", function)``: a notebook's check cell.

Runs the function's visible checks in this process, prints a short pass/fail report and raises
``ChecksFailed`` (an AssertionError) if any check fails, so nbgrader marks the cell failed. Under
``nbgrader autograde`` (``autograde_check``) it runs every check, hidden ones too, and returns the points earned.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shortcutlab.course import Course, CourseError, LessonSpec, load_course
from shortcutlab.grading.engine.execute import CheckContext, run_check
from shortcutlab.grading.engine.protocol import CheckReport
from shortcutlab.grading.engine.verdict import score
from shortcutlab.grading.registry import CheckFailure, check_seed, collect_checks, import_check_file, plan_checks
from shortcutlab.grading.results import CheckResult
from shortcutlab.grading.engine.gating import PENDING_EXPLANATION
from shortcutlab.grading.status import PENDING_SYMBOL, SYMBOLS, Status
from shortcutlab.grading.wording import check_title, points

_MISSING = object()
SEED_ENV = "SHORTCUTLAB_SEED"  # the base seed of check cells under nbgrader autograde (set by its config)


class ChecksFailed(CheckFailure):
    """Some visible checks of a function failed (details are in the printed report)."""

    def _render_traceback_(self) -> list[str]:
        """What IPython (a notebook, nbgrader validate) shows instead of a traceback: the message alone, since the
        report above says what failed and the grader's frames would only hide it (IPython always shows the frame
        that raised, even with ``__tracebackhide__``)."""
        return [f"{type(self).__name__}: {self}"]


@contextmanager
def one_thread() -> Iterator[None]:
    """Run checks on one torch thread, as the grader does: their tensors are tiny, and on a busy machine
    several threads make them many times slower."""
    torch = sys.modules.get("torch")
    previous = torch.get_num_threads() if torch else None
    if torch:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch and previous:
            torch.set_num_threads(previous)


def indent(text: str, prefix: str = "      ") -> str:
    """``text`` with each line under a check's line in a report."""
    return "\n".join(prefix + line for line in text.strip().splitlines())


def check_in_notebook(name: str, obj: Any = _MISSING, /, *, seed: int | None = None,
                      course: str | Path | None = None, namespace: dict | None = None,
                      _depth: int = 1, **objects: Any) -> float | None:
    """Run the visible checks of ``name`` ("<lesson id>.<function>") on ``obj`` and print a report.

    Under ``nbgrader autograde`` (``NBGRADER_EXECUTION=autograde``) it runs every check, hidden ones too,
    and returns the points earned, which nbgrader takes as the cell's partial credit.

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
    if os.environ.get("NBGRADER_EXECUTION") == "autograde":  # every check, hidden too, partial credit
        caller = sys._getframe(_depth).f_globals if namespace is None else namespace
        return autograde_check(loaded, lesson, function, {**caller, **objects, function: obj}, seed)
    caller = sys._getframe(_depth).f_globals if namespace is None else namespace
    run_seed = secrets.randbelow(2**31) if seed is None else int(seed)
    run = _run_checks(loaded, lesson, function, {**caller, **objects, function: obj}, run_seed, hidden=False)
    failed = [c for c in run.checks if c.status != Status.PASSED and not c.gated]
    print("\n".join(_report(function, run, f"({run.seconds:.1f} s)" + (f", seed {run_seed}" if failed else ""))))
    if failed:
        raise ChecksFailed(f"{len(failed)} of {len(run.checks)} checks of {function} did not pass; see the report "
                           "above")


@dataclass(frozen=True)
class _CellRun:
    """A check cell's checks of one function, scored as ``shortcutlab grade`` scores them (verdict.score: property
    checks gated), and the seconds they took."""

    checks: tuple[CheckResult, ...]
    seconds: float
    names: tuple[str, ...]  # the course's graded functions and classes, for check titles


def _run_checks(course: Course, lesson: LessonSpec, function: str, namespace: dict[str, Any], base_seed: int,
                hidden: bool) -> _CellRun:
    """Run ``function``'s checks (hidden ones too if ``hidden``) on the objects in ``namespace``, on one thread."""
    planned = [c for c in plan_checks(course, lesson) if c.function == function and (hidden or not c.hidden)]
    checks = collect_checks(import_check_file(course.check_file(lesson)))
    context = CheckContext(dict(namespace))
    limit = course.grading.output_limit
    with one_thread():
        outcomes = {c.name: run_check(checks[c.name], context, check_seed(base_seed, lesson.id, c.name), c.timeout,
                                      function, limit) for c in planned}
    reports = {name: CheckReport(o.status, o.output(limit), o.seconds, slip=o.slip) for name, o in outcomes.items()}
    names = course.graded_names
    return _CellRun(score(planned, reports, None, [], limit, names), sum(o.seconds for o in outcomes.values()), names)


def autograde_check(course: Course, lesson: LessonSpec, function: str, namespace: dict[str, Any],
                    seed: int | None = None) -> float:
    """Every check of ``function`` (hidden too) on the objects in ``namespace``; prints a report (hidden
    checks: passed or failed only) and returns the points earned.

    Nothing goes to stderr (nbgrader gives 0 points to a cell that writes there) and nothing is raised.
    """
    given = seed if seed is not None else os.environ.get(SEED_ENV, course.grading.seed)
    base = int(given) if given is not None else secrets.randbelow(2**31)
    with warnings.catch_warnings(), contextlib.redirect_stderr(sys.stdout):
        warnings.simplefilter("ignore")
        run = _run_checks(course, lesson, function, namespace, base, hidden=True)
    total = lesson.functions[function].points
    earned = min(round(sum(c.score for c in run.checks), 6), float(total))
    print("\n".join(_report(function, run, f"{points(earned)}/{points(total)} points", sep=", ")))
    return earned


def _report(function: str, run: _CellRun, tail: str, sep: str = " ") -> list[str]:
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
