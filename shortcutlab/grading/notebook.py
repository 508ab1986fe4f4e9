"""``shortcutlab.check("lesson.function", function)``: a notebook's check cell.

Runs the function's visible checks in this process, prints a short pass/fail report and raises
``ChecksFailed`` (an AssertionError) if any check fails, so nbgrader marks the cell failed.
"""
from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shortcutlab.course import CourseError, load_course
from shortcutlab.grading.registry import CheckFailure
from shortcutlab.grading.execute import PASSED, CheckContext, Outcome, run_check
from shortcutlab.grading.gating import counted
from shortcutlab.grading.registry import check_seed, collect_checks, import_check_file, plan_checks
from shortcutlab.grading.report import check_title
from shortcutlab.grading.status import SYMBOLS

_MISSING = object()


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
        from shortcutlab.grading.nbgrader_export import autograde_check

        caller = sys._getframe(_depth).f_globals if namespace is None else namespace
        return autograde_check(loaded, lesson, function, {**caller, **objects, function: obj}, seed)
    planned = [c for c in plan_checks(loaded, lesson) if c.function == function and not c.hidden]
    checks = collect_checks(import_check_file(loaded.check_file(lesson)))
    caller = sys._getframe(_depth).f_globals if namespace is None else namespace
    context = CheckContext({**caller, **objects, function: obj})
    run_seed = secrets.randbelow(2**31) if seed is None else int(seed)
    limit = loaded.grading.output_limit
    outcomes: list[tuple[str, Outcome]] = []
    with one_thread():
        for c in planned:
            outcomes.append((c.name, run_check(checks[c.name], context, check_seed(run_seed, lesson.id, c.name),
                                               c.timeout, function, limit)))
    names = [f for spec in loaded.lessons for f in spec.functions]
    # No credit for doing nothing: a property check counts only once the function's value checks pass.
    final = counted(planned, {n: (o.status, o.output(limit)) for n, o in outcomes}, names)
    failed = [n for n, (status, _) in final.items() if status != PASSED]
    seconds = sum(o.seconds for _, o in outcomes)
    head = f"{function}: {len(outcomes) - len(failed)}/{len(outcomes)} checks passed ({seconds:.1f} s)"
    lines = [head + (f", seed {run_seed}" if failed else "")]
    for check_name, (status, output) in final.items():
        lines.append(f"  {SYMBOLS.get(status, '?')} {check_title(check_name, function, names)}")
        if status != PASSED:
            lines.append(indent(output))
    print("\n".join(lines))
    if failed:
        raise ChecksFailed(f"{len(failed)} of {len(outcomes)} checks of {function} did not pass; see the report above")
