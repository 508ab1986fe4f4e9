"""What a grading run hands out: grades.csv (nbgrader's columns and a status), a class matrix an LMS gradebook
imports (Canvas, Moodle), a list of identical submissions, one Gradescope ``results.json`` per submission, and
per-student feedback in Markdown and HTML.

Students see their visible checks' messages; a hidden check shows only whether it passed and its points,
never its name or message (instructors find those in the gradebook and ``shortcutlab grade --json``).

Layout under the output folder (files are written readable, like any file the user creates: 0666 less the umask)::

    grades.csv
    class_matrix.csv
    identical_submissions.csv
    results/<student>/<lesson>/results.json
    feedback/<student>/<lesson>.md
    feedback/<student>/<lesson>.html

Written answers (course.yml's ``answers``, graded by hand): an entry's ``answers`` (``answers.attach``) add to its
score and max_score everywhere; until the instructor's points are imported each counts 0 of its points and says
"awaiting manual grading" (grades.csv's ``written_answers`` column, the feedback, a results.json test).
The instructor's own files (``answers/<lesson>.md``, ``answers/<lesson>_scores.csv``) are ``answers.py``'s.
"""
from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import os
import tempfile
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from shortcutlab.grading.gradebook import Entry
from shortcutlab.grading.report import MISSING, submission_status
from shortcutlab.grading.report import check_title as report_check_title
from shortcutlab.grading.report import points  # noqa: F401 - 3 -> '3', 0.625 -> '0.625': one format for every score
from shortcutlab.grading.answers import ANSWER_AWAITING, ANSWER_GRADED, ANSWER_UNANSWERED, AnswerResult
from shortcutlab.grading.results import CheckResult, SubmissionResult
from shortcutlab.grading.status import SYMBOLS, Status
from shortcutlab.grading.students import normalize_timestamp

# nbgrader's ``nbgrader export`` columns, then the submission's status (graded, error, timeout, missing)
# and whether its written answers are graded (``written_answers``: awaiting manual grading, graded, or empty for a
# lesson without written answers or not handed in)
CSV_COLUMNS = ("assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email", "raw_score",
               "late_submission_penalty", "score", "max_score", "status", "written_answers")
# The class matrix: Canvas's gradebook-import identity columns, one column per lesson, then the total under a
# name Canvas treats as read-only (ignored on import). Moodle maps "SIS Login ID" to the username and each
# lesson column to a grade item, and ignores the rest.
MATRIX_IDENTITY = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
MATRIX_TOTAL = "Final Points"
IDENTICAL_COLUMNS = ("lesson", "group", "student_id", "path", "score", "max_score", "code_sha256")
HIDDEN_NOTE = "hidden check: its details are not shown"
_ANSWER_SYMBOLS = {ANSWER_GRADED: "✎", ANSWER_AWAITING: "…", ANSWER_UNANSWERED: "✗"}
AWAITING_NOTE = "awaiting manual grading: your instructor reads and scores this answer by hand"



def _number(value: float) -> float:
    return round(float(value), 4)


def check_title(check: CheckResult) -> str:
    """test_colorize_matches_the_formula -> 'matches the formula' (for the check of colorize):
    ``report.check_title``, the title the notebook shows too."""
    return report_check_title(check.name, check.function)


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (os.umask can only set it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    """Write a file atomically (a run killed meanwhile leaves the old file or the new one, never half), with
    the permissions of a file created normally (0666 less the umask; mkstemp alone would give 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            os.fchmod(file.fileno(), 0o666 & ~_umask())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- grades.csv


def _lesson_order(entries: list[Entry], lessons: Iterable[str]) -> list[str]:
    order = list(dict.fromkeys(lesson for lesson in lessons if any(e.lesson == lesson for e in entries)))
    return order + sorted({e.lesson for e in entries} - set(order))


def answers_status(answers: Iterable[AnswerResult]) -> str:
    """A submission's written answers at a glance: '' (none), 'awaiting manual grading' (some answered one has
    no score yet), 'graded' (some scored, none awaiting) or 'unanswered' (all left unanswered, none scored)."""
    statuses = {a.status for a in answers}
    for status in (ANSWER_AWAITING, ANSWER_GRADED, ANSWER_UNANSWERED):
        if status in statuses:
            return status
    return ""


def grades_csv(entries: Iterable[Entry], lessons: Iterable[str] = ()) -> str:
    """nbgrader's ``nbgrader export`` CSV plus ``status`` and ``written_answers`` columns: one row per lesson and
    student, 0 and status ``missing`` for a lesson not handed in. Scores include the written answers' points
    (0 until the instructor's are imported).

    Lessons come in the order of ``lessons`` (then any others, sorted), students sorted by id; names, emails
    and due dates are empty (the gradebook does not know them) and there is no late penalty. Timestamps are
    UTC in one format, ``YYYY-MM-DD HH:MM:SS.ffffff`` (nbgrader's). ``status`` is ``graded``, ``error`` (could
    not be graded normally), ``timeout`` (cut off by a time limit) or ``missing``.
    """
    entries = list(entries)
    by_key = {(e.lesson, e.student_id): e for e in entries}
    students = sorted({e.student_id for e in entries})
    max_scores = {e.lesson: e.max_score for e in entries}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for lesson in _lesson_order(entries, lessons):
        for student in students:
            entry = by_key.get((lesson, student))
            raw = _number(entry.score) if entry else 0.0
            writer.writerow([lesson, "", normalize_timestamp(entry.timestamp) if entry else "", student, "", "", "",
                             raw, 0.0, max(0.0, raw), _number(max_scores[lesson]),
                             submission_status(entry.result) if entry else MISSING,
                             answers_status(entry.answers) if entry else ""])
    return buffer.getvalue()


def matrix_header(title: str, lesson: str, max_score: float) -> str:
    """A lesson's column in the class matrix: 'Adding and scaling [90_toy, 5 pts]'."""
    return f"{title or lesson} [{lesson}, {points(max_score)} pts]"


def class_matrix_csv(entries: Iterable[Entry], lessons: Iterable[str] = (),
                     titles: dict[str, str] | None = None) -> str:
    """The class at a glance, in a layout the gradebook imports of Canvas and Moodle accept: one row per student,
    ``Student, ID, SIS User ID, SIS Login ID, Section`` (the student id in ``Student`` and ``SIS Login ID``;
    the others empty), one column per lesson (its score, empty if not handed in) headed by its title, id and
    points possible, and ``Final Points`` (the sum; Canvas ignores it on import, Moodle lets it be ignored)."""
    entries = list(entries)
    titles = titles or {}
    order = _lesson_order(entries, lessons)
    max_scores = {e.lesson: e.max_score for e in entries}
    by_key = {(e.student_id, e.lesson): e for e in entries}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*MATRIX_IDENTITY, *(matrix_header(titles.get(l, ""), l, max_scores[l]) for l in order),
                     MATRIX_TOTAL])
    for student in sorted({e.student_id for e in entries}):
        mine = [by_key.get((student, lesson)) for lesson in order]
        total = sum(e.score for e in mine if e is not None)
        writer.writerow([student, "", "", student, "", *(points(e.score) if e else "" for e in mine),
                         points(total)])
    return buffer.getvalue()


# ----------------------------------------------------------------------------- identical submissions


def normalized_code(source: str) -> str:
    """Python code with its layout removed: tokens joined by single spaces, comments and blank lines dropped,
    indentation kept as block markers. Reformatted or re-commented copies of the same code give the same text."""
    tokens = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER):
                continue
            if token.type == tokenize.NEWLINE:
                tokens.append(";")
            elif token.type == tokenize.INDENT:
                tokens.append("{")
            elif token.type == tokenize.DEDENT:
                tokens.append("}")
            else:
                tokens.append(token.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return " ".join(line.split("#", 1)[0].strip() for line in source.splitlines() if line.split("#", 1)[0].strip())
    return " ".join(tokens)


def graded_code_digest(path: str | Path, data: bytes | None = None) -> str | None:
    """sha256 of a submission's graded code, normalized (``normalized_code``): a notebook's nbgrader solution
    cells (setup cells are the same for everyone), a .py file whole; ``data`` is the file's bytes if already
    read. None if unreadable or empty."""
    from shortcutlab.grading.submission import SubmissionError, read_cells

    path = Path(path)
    try:
        cells, _ = read_cells(path, path.read_bytes() if data is None else data)
    except (OSError, SubmissionError):
        return None
    code = "\n".join(normalized_code(cell.source) for cell in cells if cell.kind != "setup").strip()
    return hashlib.sha256(code.encode()).hexdigest() if code else None


@dataclass(frozen=True)
class IdenticalGroup:
    """Submissions of one lesson by different students with the same graded code."""

    lesson: str
    digest: str
    entries: tuple[Entry, ...]

    @property
    def students(self) -> tuple[str, ...]:
        return tuple(e.student_id for e in self.entries)


def find_identical(entries: Iterable[Entry], ignore: Iterable[str] = ()) -> list[IdenticalGroup]:
    """Groups of two or more students whose latest submissions of a lesson have the same graded code
    (``graded_code_digest``), by lesson then first student. Digests in ``ignore`` (the released stubs, handed in
    untouched) never form a group; a file changed since it was graded is left out."""
    ignore = set(ignore)
    groups: dict[tuple[str, str], list[Entry]] = {}
    for entry in entries:
        data = entry.graded_bytes()
        if data is None:
            continue
        digest = graded_code_digest(entry.path, data)
        if digest is not None and digest not in ignore:
            groups.setdefault((entry.lesson, digest), []).append(entry)
    found = [IdenticalGroup(lesson, digest, tuple(sorted(group, key=lambda e: e.student_id)))
             for (lesson, digest), group in groups.items() if len({e.student_id for e in group}) > 1]
    return sorted(found, key=lambda g: (g.lesson, g.students))


def identical_csv(groups: Iterable[IdenticalGroup]) -> str:
    """One row per submission in a group of identical ones (the header alone if there are none)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(IDENTICAL_COLUMNS)
    for number, group in enumerate(groups, start=1):
        for entry in group.entries:
            writer.writerow([group.lesson, number, entry.student_id, entry.path, _number(entry.result.score),
                             _number(entry.result.max_score), group.digest])
    return buffer.getvalue()


# ----------------------------------------------------------------------------- Gradescope


def answer_output(answer: AnswerResult, quote_answer: bool = True) -> str:
    """What a student reads about one written answer: its status, points, the instructor's comment, the answer."""
    if answer.status == ANSWER_GRADED:
        head = f"Graded by hand: {points(answer.points)} / {points(answer.max_score)}."
        if answer.comment.strip():
            head += f"\nComment: {answer.comment.strip()}"
    elif answer.status == ANSWER_AWAITING:
        head = f"Awaiting manual grading (0 / {points(answer.max_score)} until then): your instructor reads and " \
               "scores this answer by hand."
    else:
        head = f"Unanswered: 0 / {points(answer.max_score)}."
    if answer.note:
        head += f"\n({answer.note})"
    if quote_answer and answer.answered:
        head += "\n\nYour answer:\n" + answer.text.strip()
    return head


def answer_tests(answers: Iterable[AnswerResult], first: int = 1) -> list[dict]:
    """results.json tests for written answers, numbered from ``first``: manually graded tests with the
    instructor's points, or 0 of their points and no ``status`` while awaiting manual grading."""
    tests = []
    for number, answer in enumerate(answers, start=first):
        test = {"name": f"Question {answer.number}: written answer ({answer.status})", "number": str(number),
                "score": _number(answer.points), "max_score": _number(answer.max_score),
                "output": answer_output(answer), "visibility": "visible"}
        if answer.status != ANSWER_AWAITING:
            test["status"] = "passed" if answer.points >= answer.max_score - 1e-9 else "failed"
        tests.append(test)
    return tests


def gradescope_results(result: SubmissionResult, execution_time: float | None = None,
                       answers: Iterable[AnswerResult] = ()) -> dict:
    """Gradescope's results.json for one submission: the score, one test per check, then one per written
    answer (``answer_tests``; they add to the score once graded by hand).

    Visible checks show their message; hidden checks show only passed/failed and their points once grades
    are published (visibility ``after_published``).
    """
    answers = tuple(answers)
    tests = []
    for number, check in enumerate(result.checks, start=1):
        status = "passed" if check.status == Status.PASSED else "failed"
        if check.hidden:
            tests.append({"name": f"{check.function}: hidden check", "number": str(number),
                          "score": _number(check.score), "max_score": _number(check.max_score),
                          "output": f"{status} ({HIDDEN_NOTE})", "visibility": "after_published", "status": status})
        else:
            output = check.output if check.status != Status.PASSED else ""
            if check.status in (Status.ERROR, Status.TIMEOUT):
                output = f"[{check.status}] {output}"
            tests.append({"name": f"{check.function}: {check_title(check)}", "number": str(number),
                          "score": _number(check.score), "max_score": _number(check.max_score),
                          "output": output, "visibility": "visible", "status": status})
    tests += answer_tests(answers, len(tests) + 1)
    score = result.score + sum(a.points for a in answers)
    summary = f"{points(score)} / {points(result.max_score + sum(a.max_score for a in answers))} points"
    if result.lesson:
        summary = f"{result.lesson}: {summary}"
    awaiting = sum(a.status == ANSWER_AWAITING for a in answers)
    if awaiting:
        summary += f" ({awaiting} written answer{'s' if awaiting != 1 else ''} awaiting manual grading)"
    if result.error:
        summary += f"\n\nThis submission could not be graded normally:\n{result.error}"
    return {
        "score": _number(score),
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
        passed = sum(c.status == Status.PASSED for c in mine)
        rows.append((function, f"{points(got)} / {points(most)}", f"{passed} of {len(mine)}"))
    return rows


def _percent(score: float, most: float) -> str:
    return f" ({100 * score / most:.0f}%)" if most else ""


def _answer_rows(answers: tuple[AnswerResult, ...]) -> list[tuple[str, str, str]]:
    if not answers:
        return []
    got, most = sum(a.points for a in answers), sum(a.max_score for a in answers)
    awaiting = sum(a.status == ANSWER_AWAITING for a in answers)
    return [("written answers", f"{points(got)} / {points(most)}",
             f"{awaiting} of {len(answers)} awaiting manual grading" if awaiting else answers_status(answers))]


def _answer_heading(answers: tuple[AnswerResult, ...]) -> str:
    got, most = sum(a.points for a in answers), sum(a.max_score for a in answers)
    awaiting = sum(a.status == ANSWER_AWAITING for a in answers)
    return f"Written answers: {points(got)} / {points(most)}" + (f" ({awaiting} awaiting manual grading)"
                                                                 if awaiting else "")


def _answer_line(answer: AnswerResult) -> str:
    if answer.status == ANSWER_GRADED:
        state = f"{points(answer.points)} / {points(answer.max_score)}, graded by hand"
    elif answer.status == ANSWER_AWAITING:
        state = f"awaiting manual grading (0 / {points(answer.max_score)} until then)"
    else:
        state = f"unanswered (0 / {points(answer.max_score)})"
    return f"{_ANSWER_SYMBOLS[answer.status]} Question {answer.number}: {state}"


def _load_trouble(result: SubmissionResult) -> str:
    """A heading for a cell that raised or was stopped while the submission loaded ('' if none did)."""
    load = result.load or {}
    if load.get("status") not in ("error", "timeout"):
        return ""
    where = f"Cell {load['cell']}" if load.get("cell") else "Your code"
    return f"{where} {'did not finish in time' if load['status'] == 'timeout' else 'raised an error'} while loading"


def feedback_markdown(result: SubmissionResult, student: str = "", title: str = "", timestamp: str = "",
                      answers: Iterable[AnswerResult] = ()) -> str:
    """A student's feedback on one submission: score, points per function, and each check; a hidden check
    shows only pass/fail and points; then each written answer (the student's text, its status, points and the
    instructor's comment)."""
    answers = tuple(answers)
    score = result.score + sum(a.points for a in answers)
    most = result.max_score + sum(a.max_score for a in answers)
    lesson = result.lesson or "unknown lesson"
    lines = [f"# {title or lesson}" + (f" ({lesson})" if title else ""), ""]
    if student:
        lines.append(f"- Student: {student}")
    if timestamp:
        lines.append(f"- Submitted: {normalize_timestamp(timestamp) or timestamp} UTC")
    lines.append(f"- Score: **{points(score)} / {points(most)}**{_percent(score, most)}")
    if any(a.status == ANSWER_AWAITING for a in answers):
        lines.append("- Written answers awaiting manual grading count 0 until your instructor has graded them.")
    lines.append("")
    if result.error:
        lines += ["## Your submission could not be graded normally", "", "```text", result.error.strip(), "```", ""]
    elif _load_trouble(result):
        lines += [f"## {_load_trouble(result)}", "", "```text", result.load["message"].strip(), "```", ""]
    if result.sandbox:
        lines += [f"Graded in OS sandbox: {result.sandbox}.", ""]
    if result.checks or answers:
        lines += ["| function | points | checks passed |", "|---|---|---|"]
        lines += [f"| `{f}` | {p} | {c} |" for f, p, c in _summary_rows(result)]
        lines += [f"| {f} | {p} | {c} |" for f, p, c in _answer_rows(answers)]
        lines.append("")
    for function, (got, most) in result.function_scores().items():
        lines += [f"## `{function}`: {points(got)} / {points(most)}", ""]
        for check in (c for c in result.checks if c.function == function):
            mark = SYMBOLS.get(check.status, "?")
            score = f"{points(check.score)} / {points(check.max_score)}"
            if check.hidden:
                word = "passed" if check.status == Status.PASSED else "failed"
                lines.append(f"- {mark} hidden check, {word} ({score})")
                continue
            lines.append(f"- {mark} {check_title(check)} ({score})" + ("" if check.status == Status.PASSED
                                                                         else f": {check.status}"))
            if check.status != Status.PASSED and check.output.strip():
                lines += ["", "  ```text", *(f"  {line}" for line in check.output.strip().splitlines()), "  ```", ""]
        lines.append("")
    if answers:
        lines += [f"## {_answer_heading(answers)}", ""]
        for answer in answers:
            lines.append(f"- {_answer_line(answer)}")
            if answer.comment.strip() and answer.status == ANSWER_GRADED:
                lines += ["", *(f"  Comment: {line}" if i == 0 else f"  {line}"
                                for i, line in enumerate(answer.comment.strip().splitlines())), ""]
            if answer.note:
                lines += ["", f"  ({answer.note})", ""]
            if answer.answered:
                lines += ["", *(f"  > {line}" if line.strip() else "  >" for line in answer.text.strip().splitlines()),
                          ""]
        lines.append("")
    if any(c.hidden for c in result.checks):
        lines += ["Hidden checks test cases you were not shown; only whether they passed is reported.", ""]
    return "\n".join(lines).rstrip() + "\n"


_STYLE = """body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;line-height:1.45}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}
pre{background:#f6f6f6;padding:.6rem;overflow-x:auto;white-space:pre-wrap}.passed{color:#1a7f37}
.failed,.error,.timeout{color:#cf222e}.hidden{color:#666}"""


def feedback_html(result: SubmissionResult, student: str = "", title: str = "", timestamp: str = "",
                  answers: Iterable[AnswerResult] = ()) -> str:
    """The same feedback as ``feedback_markdown``, as a self-contained HTML page."""
    answers = tuple(answers)
    score = result.score + sum(a.points for a in answers)
    most = result.max_score + sum(a.max_score for a in answers)
    esc = html.escape
    lesson = result.lesson or "unknown lesson"
    heading = f"{esc(title)} ({esc(lesson)})" if title else esc(lesson)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>Feedback: {esc(lesson)}{' - ' + esc(student) if student else ''}</title>",
           f"<style>{_STYLE}</style></head><body>", f"<h1>{heading}</h1>", "<ul>"]
    if student:
        out.append(f"<li>Student: {esc(student)}</li>")
    if timestamp:
        out.append(f"<li>Submitted: {esc(normalize_timestamp(timestamp) or timestamp)} UTC</li>")
    out.append(f"<li>Score: <strong>{points(score)} / {points(most)}</strong>{esc(_percent(score, most))}</li>")
    if any(a.status == ANSWER_AWAITING for a in answers):
        out.append("<li>Written answers awaiting manual grading count 0 until your instructor has graded them.</li>")
    out.append("</ul>")
    if result.error:
        out += ["<h2>Your submission could not be graded normally</h2>", f"<pre>{esc(result.error.strip())}</pre>"]
    elif _load_trouble(result):
        out += [f"<h2>{esc(_load_trouble(result))}</h2>", f"<pre>{esc(result.load['message'].strip())}</pre>"]
    if result.sandbox:
        out.append(f"<p>Graded in OS sandbox: {esc(result.sandbox)}.</p>")
    if result.checks or answers:
        out.append("<table><tr><th>function</th><th>points</th><th>checks passed</th></tr>")
        out += [f"<tr><td><code>{esc(f)}</code></td><td>{p}</td><td>{c}</td></tr>" for f, p, c in _summary_rows(result)]
        out += [f"<tr><td>{esc(f)}</td><td>{p}</td><td>{c}</td></tr>" for f, p, c in _answer_rows(answers)]
        out.append("</table>")
    for function, (got, most) in result.function_scores().items():
        out += [f"<h2><code>{esc(function)}</code>: {points(got)} / {points(most)}</h2>", "<ul>"]
        for check in (c for c in result.checks if c.function == function):
            mark = SYMBOLS.get(check.status, "?")
            score = f"{points(check.score)} / {points(check.max_score)}"
            if check.hidden:
                word = "passed" if check.status == Status.PASSED else "failed"
                out.append(f'<li class="hidden">{mark} hidden check, {word} ({score})</li>')
                continue
            status = "" if check.status == Status.PASSED else f": {esc(check.status)}"
            item = f'<li class="{esc(check.status)}">{mark} {esc(check_title(check))} ({score}){status}'
            if check.status != Status.PASSED and check.output.strip():
                item += f"<pre>{esc(check.output.strip())}</pre>"
            out.append(item + "</li>")
        out.append("</ul>")
    if answers:
        out += [f"<h2>{esc(_answer_heading(answers))}</h2>", "<ul>"]
        for answer in answers:
            css = {ANSWER_GRADED: "passed", ANSWER_AWAITING: "hidden"}.get(answer.status, "failed")
            item = f'<li class="{css}">{esc(_answer_line(answer))}'
            if answer.comment.strip() and answer.status == ANSWER_GRADED:
                item += f"<p>Comment: {esc(answer.comment.strip())}</p>"
            if answer.note:
                item += f"<p>({esc(answer.note)})</p>"
            if answer.answered:
                item += f"<pre>{esc(answer.text.strip())}</pre>"
            out.append(item + "</li>")
        out.append("</ul>")
    if any(c.hidden for c in result.checks):
        out.append("<p>Hidden checks test cases you were not shown; only whether they passed is reported.</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- everything at once


def write_exports(entries: Iterable[Entry], out: str | Path, lessons: Iterable[str] = (),
                  titles: dict[str, str] | None = None, identical: Iterable[IdenticalGroup] | None = ()) -> list[Path]:
    """Write grades.csv, class_matrix.csv, identical_submissions.csv (``identical``: see ``find_identical``;
    None leaves the file as it is), results/<student>/<lesson>/results.json and
    feedback/<student>/<lesson>.{md,html} for ``entries`` (a gradebook's, with their written answers if
    ``answers.attach`` gave them any); returns the files written."""
    out = Path(out)
    entries = list(entries)
    lessons = tuple(lessons)
    titles = titles or {}
    written = [out / "grades.csv", out / "class_matrix.csv"]
    write_text(written[0], grades_csv(entries, lessons))
    write_text(written[1], class_matrix_csv(entries, lessons, titles))
    if identical is not None:
        written.append(out / "identical_submissions.csv")
        write_text(written[2], identical_csv(identical))
    for entry in entries:
        result, title, answers = entry.result, titles.get(entry.lesson, ""), entry.answers
        results = out / "results" / entry.student_id / entry.lesson / "results.json"
        write_text(results, json.dumps(gradescope_results(result, answers=answers), indent=2) + "\n")
        feedback = out / "feedback" / entry.student_id
        write_text(feedback / f"{entry.lesson}.md",
                   feedback_markdown(result, entry.student_id, title, entry.timestamp, answers))
        write_text(feedback / f"{entry.lesson}.html",
                   feedback_html(result, entry.student_id, title, entry.timestamp, answers))
        written += [results, feedback / f"{entry.lesson}.md", feedback / f"{entry.lesson}.html"]
    return written
