"""Grading reports: the JSON document of ``shortcutlab grade --json`` and a readable table."""
from __future__ import annotations

import json
import textwrap

from shortcutlab.grading.results import GradeReport, SubmissionResult

MARKS = {"passed": "ok", "failed": "FAIL", "error": "ERROR", "timeout": "TIMEOUT"}


def render_json(report: GradeReport) -> str:
    """``{"seed", "submissions": [{"path", "lesson", "score", "max_score", "error", "checks": [...]}]}``."""
    return json.dumps(report.to_dict(), indent=2)


def _points(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _first_lines(text: str, count: int = 4, width: int = 110) -> list[str]:
    """The first ``count`` lines of ``text``, long ones wrapped to ``width``."""
    lines = [part for line in text.strip().splitlines() if line.strip()
             for part in textwrap.wrap(line, width, subsequent_indent="  ") or [""]]
    return lines[:count] + (["..."] if len(lines) > count else [])


def render_submission(result: SubmissionResult, details: bool = True) -> list[str]:
    """A header line with the score, one line per function, and the first lines of each non-passing check."""
    percent = f" ({100 * result.score / result.max_score:.0f}%)" if result.max_score else ""
    lines = [f"{result.path}  [{result.lesson or 'unknown lesson'}]  "
             f"{_points(result.score)}/{_points(result.max_score)}{percent}"]
    if result.error:
        lines += ["  error: " + line for line in _first_lines(result.error, 4)]
    width = max((len(c.function) for c in result.checks), default=0)
    for function, (got, most) in result.function_scores().items():
        mine = [c for c in result.checks if c.function == function]
        passed = sum(c.status == "passed" for c in mine)
        lines.append(f"  {function:<{width}}  {_points(got):>5}/{_points(most):<5} {passed}/{len(mine)} checks passed")
        if not details:
            continue
        for c in mine:
            if c.status == "passed" or (result.error and c.output.startswith("not graded")):
                continue
            hidden = " (hidden)" if c.hidden else ""
            lines.append(f"    {MARKS.get(c.status, c.status)} {c.name}{hidden}")
            lines += ["        " + line for line in _first_lines(c.output)]
    return lines


def render_table(report: GradeReport, details: bool = True) -> str:
    """Every submission's score per function, failures with their first lines, and a summary line."""
    lines: list[str] = []
    for result in report.submissions:
        lines += render_submission(result, details) + [""]
    total = len(report.submissions)
    full = sum(1 for s in report.submissions if s.max_score and abs(s.score - s.max_score) < 1e-9)
    errors = sum(1 for s in report.submissions if s.error)
    lines.append(f"{total} submission{'s' if total != 1 else ''} graded in {report.seconds:.1f} s (seed "
                 f"{report.seed}): {full} with full marks, {errors} with errors")
    return "\n".join(lines)
