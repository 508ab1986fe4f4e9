"""What the course reads off a notebook cell (a dict as nbformat's JSON has it), defined once for release, the
grader's submission loader and the written-answer reader. Imports nothing (the grading server loads it cheaply)."""
from __future__ import annotations

import re

# The grade id of a written answer's cell: ``answer_q1``, ``answer_q2``, ...
ANSWER_ID = re.compile(r"^answer_(?P<question>q[1-9][0-9]*)$")


def cell_source(cell: dict) -> str:
    """The cell's text: nbformat stores it as one string or as a list of lines."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)
