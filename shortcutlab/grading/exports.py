"""What a grading run hands out: grades.csv (nbgrader's columns), one Gradescope ``results.json`` per
submission, and per-student feedback in Markdown and HTML.

Students see their visible checks' messages; a hidden check shows only whether it passed and its points,
never its name or message (instructors find those in the gradebook and ``shortcutlab grade --json``).

Layout under the output folder::

    grades.csv
    results/<student>/<lesson>/results.json
    feedback/<student>/<lesson>.md
    feedback/<student>/<lesson>.html
"""
from __future__ import annotations

import csv
import html
import io
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from shortcutlab.grading.gradebook import Entry
from shortcutlab.grading.results import CheckResult, SubmissionResult

CSV_COLUMNS = ("assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email", "raw_score",
               "late_submission_penalty", "score", "max_score")
HIDDEN_NOTE = "hidden check: its details are not shown"
_SYMBOLS = {"passed": "✓", "failed": "✗", "error": "✗", "timeout": "⏱"}


def points(value: float) -> str:
    """3 -> '3', 1.3333 -> '1.33'."""
    return f"{value:.2f}".rstrip("0").rstrip(".") if value == value else "?"


def _number(value: float) -> float:
    return round(float(value), 4)


def check_title(check: CheckResult) -> str:
    """test_colorize_matches_the_formula -> 'matches the formula' (for the check of colorize)."""
    words = check.name.removeprefix("test_")
    words = words.removeprefix(check.function + "_") if words.startswith(check.function + "_") else words
    return words.replace("_", " ")


def write_text(path: Path, text: str) -> None:
    """Write a file atomically (a run killed meanwhile leaves the old file or the new one, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- grades.csv


def grades_csv(entries: Iterable[Entry], lessons: Iterable[str] = ()) -> str:
    """nbgrader's ``nbgrader export`` CSV: one row per lesson and student, 0 for a lesson not handed in.

    Lessons come in the order of ``lessons`` (then any others, sorted), students sorted by id; names, emails
    and due dates are empty (the gradebook does not know them) and there is no late penalty.
    """
    entries = list(entries)
    by_key = {(e.lesson, e.student_id): e for e in entries}
    order = list(dict.fromkeys(lesson for lesson in lessons if any(e.lesson == lesson for e in entries)))
    order += sorted({e.lesson for e in entries} - set(order))
    students = sorted({e.student_id for e in entries})
    max_scores = {e.lesson: e.result.max_score for e in entries}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for lesson in order:
        for student in students:
            entry = by_key.get((lesson, student))
            raw = _number(entry.result.score) if entry else 0.0
            writer.writerow([lesson, "", entry.timestamp if entry else "", student, "", "", "", raw, 0.0,
                             max(0.0, raw), _number(max_scores[lesson])])
    return buffer.getvalue()


# ----------------------------------------------------------------------------- Gradescope


def gradescope_results(result: SubmissionResult, execution_time: float | None = None) -> dict:
    """Gradescope's results.json for one submission: the score, and one test per check.

    Visible checks show their message; hidden checks show only passed/failed and their points once grades
    are published (visibility ``after_published``).
    """
    tests = []
    for number, check in enumerate(result.checks, start=1):
        status = "passed" if check.status == "passed" else "failed"
        if check.hidden:
            tests.append({"name": f"{check.function}: hidden check", "number": str(number),
                          "score": _number(check.score), "max_score": _number(check.max_score),
                          "output": f"{status} ({HIDDEN_NOTE})", "visibility": "after_published", "status": status})
        else:
            output = check.output if check.status != "passed" else ""
            if check.status in ("error", "timeout"):
                output = f"[{check.status}] {output}"
            tests.append({"name": f"{check.function}: {check_title(check)}", "number": str(number),
                          "score": _number(check.score), "max_score": _number(check.max_score),
                          "output": output, "visibility": "visible", "status": status})
    summary = f"{points(result.score)} / {points(result.max_score)} points"
    if result.lesson:
        summary = f"{result.lesson}: {summary}"
    if result.error:
        summary += f"\n\nThis submission could not be graded normally:\n{result.error}"
    return {
        "score": _number(result.score),
        "execution_time": round(float(result.seconds if execution_time is None else execution_time), 3),
        "output": summary,
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }


# ----------------------------------------------------------------------------- feedback


def _summary_rows(result: SubmissionResult) -> list[tuple[str, str, str]]:
    rows = []
    for function, (got, most) in result.function_scores().items():
        mine = [c for c in result.checks if c.function == function]
        passed = sum(c.status == "passed" for c in mine)
        rows.append((function, f"{points(got)} / {points(most)}", f"{passed} of {len(mine)}"))
    return rows


def _percent(result: SubmissionResult) -> str:
    return f" ({100 * result.score / result.max_score:.0f}%)" if result.max_score else ""


def feedback_markdown(result: SubmissionResult, student: str = "", title: str = "", timestamp: str = "") -> str:
    """A student's feedback on one submission: score, points per function, and each check; a hidden check
    shows only pass/fail and points."""
    lesson = result.lesson or "unknown lesson"
    lines = [f"# {title or lesson}" + (f" ({lesson})" if title else ""), ""]
    if student:
        lines.append(f"- Student: {student}")
    if timestamp:
        lines.append(f"- Submitted: {timestamp} UTC")
    lines += [f"- Score: **{points(result.score)} / {points(result.max_score)}**{_percent(result)}", ""]
    if result.error:
        lines += ["## Your submission could not be graded normally", "", "```text", result.error.strip(), "```", ""]
    if result.checks:
        lines += ["| function | points | checks passed |", "|---|---|---|"]
        lines += [f"| `{f}` | {p} | {c} |" for f, p, c in _summary_rows(result)]
        lines.append("")
    for function, (got, most) in result.function_scores().items():
        lines += [f"## `{function}`: {points(got)} / {points(most)}", ""]
        for check in (c for c in result.checks if c.function == function):
            mark = _SYMBOLS.get(check.status, "?")
            score = f"{points(check.score)} / {points(check.max_score)}"
            if check.hidden:
                word = "passed" if check.status == "passed" else "failed"
                lines.append(f"- {mark} hidden check, {word} ({score})")
                continue
            lines.append(f"- {mark} {check_title(check)} ({score})" + ("" if check.status == "passed"
                                                                         else f": {check.status}"))
            if check.status != "passed" and check.output.strip():
                lines += ["", "  ```text", *(f"  {line}" for line in check.output.strip().splitlines()), "  ```", ""]
        lines.append("")
    if any(c.hidden for c in result.checks):
        lines += ["Hidden checks test cases you were not shown; only whether they passed is reported.", ""]
    return "\n".join(lines).rstrip() + "\n"


_STYLE = """body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;line-height:1.45}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}
pre{background:#f6f6f6;padding:.6rem;overflow-x:auto;white-space:pre-wrap}.passed{color:#1a7f37}
.failed,.error,.timeout{color:#cf222e}.hidden{color:#666}"""


def feedback_html(result: SubmissionResult, student: str = "", title: str = "", timestamp: str = "") -> str:
    """The same feedback as ``feedback_markdown``, as a self-contained HTML page."""
    esc = html.escape
    lesson = result.lesson or "unknown lesson"
    heading = f"{esc(title)} ({esc(lesson)})" if title else esc(lesson)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>Feedback: {esc(lesson)}{' - ' + esc(student) if student else ''}</title>",
           f"<style>{_STYLE}</style></head><body>", f"<h1>{heading}</h1>", "<ul>"]
    if student:
        out.append(f"<li>Student: {esc(student)}</li>")
    if timestamp:
        out.append(f"<li>Submitted: {esc(timestamp)} UTC</li>")
    out += [f"<li>Score: <strong>{points(result.score)} / {points(result.max_score)}</strong>"
            f"{esc(_percent(result))}</li>", "</ul>"]
    if result.error:
        out += ["<h2>Your submission could not be graded normally</h2>", f"<pre>{esc(result.error.strip())}</pre>"]
    if result.checks:
        out.append("<table><tr><th>function</th><th>points</th><th>checks passed</th></tr>")
        out += [f"<tr><td><code>{esc(f)}</code></td><td>{p}</td><td>{c}</td></tr>" for f, p, c in _summary_rows(result)]
        out.append("</table>")
    for function, (got, most) in result.function_scores().items():
        out += [f"<h2><code>{esc(function)}</code>: {points(got)} / {points(most)}</h2>", "<ul>"]
        for check in (c for c in result.checks if c.function == function):
            mark = _SYMBOLS.get(check.status, "?")
            score = f"{points(check.score)} / {points(check.max_score)}"
            if check.hidden:
                word = "passed" if check.status == "passed" else "failed"
                out.append(f'<li class="hidden">{mark} hidden check, {word} ({score})</li>')
                continue
            status = "" if check.status == "passed" else f": {esc(check.status)}"
            item = f'<li class="{esc(check.status)}">{mark} {esc(check_title(check))} ({score}){status}'
            if check.status != "passed" and check.output.strip():
                item += f"<pre>{esc(check.output.strip())}</pre>"
            out.append(item + "</li>")
        out.append("</ul>")
    if any(c.hidden for c in result.checks):
        out.append("<p>Hidden checks test cases you were not shown; only whether they passed is reported.</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- everything at once


def write_exports(entries: Iterable[Entry], out: str | Path, lessons: Iterable[str] = (),
                  titles: dict[str, str] | None = None) -> list[Path]:
    """Write grades.csv, results/<student>/<lesson>/results.json and feedback/<student>/<lesson>.{md,html}
    for ``entries`` (a gradebook's); returns the files written."""
    out = Path(out)
    entries = list(entries)
    titles = titles or {}
    written = [out / "grades.csv"]
    write_text(written[0], grades_csv(entries, lessons))
    for entry in entries:
        result, title = entry.result, titles.get(entry.lesson, "")
        results = out / "results" / entry.student_id / entry.lesson / "results.json"
        write_text(results, json.dumps(gradescope_results(result), indent=2) + "\n")
        feedback = out / "feedback" / entry.student_id
        write_text(feedback / f"{entry.lesson}.md", feedback_markdown(result, entry.student_id, title, entry.timestamp))
        write_text(feedback / f"{entry.lesson}.html", feedback_html(result, entry.student_id, title, entry.timestamp))
        written += [results, feedback / f"{entry.lesson}.md", feedback / f"{entry.lesson}.html"]
    return written
