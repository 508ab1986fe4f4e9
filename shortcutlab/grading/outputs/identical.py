"""Identical submissions: students of one lesson whose graded code is the same once layout and comments are
removed, listed in identical_submissions.csv for the instructor to look at."""
from __future__ import annotations

import csv
import hashlib
import io
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from shortcutlab.grading.engine.submission import Cell, SubmissionError, read_cells
from shortcutlab.grading.store.gradebook import Entry
from shortcutlab.grading.wording import rounded

IDENTICAL_COLUMNS = ("lesson", "group", "student_id", "path", "score", "max_score", "code_sha256")


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


def code_digest(cells: Iterable[Cell]) -> str:
    """sha256 of a submission's graded code (its cells as ``read_cells`` gives them), normalized
    (``normalized_code``): a notebook's nbgrader solution cells (setup cells are the same for everyone), a .py file
    whole; '' if there is no code."""
    code = "\n".join(normalized_code(cell.source) for cell in cells if cell.kind != "setup").strip()
    return hashlib.sha256(code.encode()).hexdigest() if code else ""


def graded_code_digest(path: str | Path, data: bytes | None = None) -> str | None:
    """``code_digest`` of a file (``data``: its bytes, if already read); None if it is unreadable or holds no
    code."""
    path = Path(path)
    try:
        cells, _ = read_cells(path, path.read_bytes() if data is None else data)
    except (OSError, SubmissionError):
        return None
    return code_digest(cells) or None


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
    """Groups of two or more students whose latest submissions of a lesson have the same graded code (the
    ``code_digest`` the gradebook keeps of what was graded: no file is read), by lesson then first student. Digests
    in ``ignore`` (the released stubs, handed in untouched) never form a group, nor do submissions without code."""
    ignore = set(ignore)
    groups: dict[tuple[str, str], list[Entry]] = {}
    for entry in entries:
        digest = entry.code_digest
        if digest and digest not in ignore:
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
            writer.writerow([group.lesson, number, entry.student_id, entry.path, rounded(entry.result.score),
                             rounded(entry.result.max_score), group.digest])
    return buffer.getvalue()
