"""What the course reads off a notebook cell (a dict as nbformat's JSON has it), defined once for release, the
grader's submission loader and the written-answer reader. Imports nothing (the grading server loads it cheaply)."""
from __future__ import annotations

import re

# The tag of a notebook's setup cells (imports and constants), which the grader runs before the solution cells.
SETUP_TAG = "setup"
# The tag of an exercise's "try it" cell: it calls the student's function on a small input and prints the result;
# release runs it with the solution and shows what it printed, collapsed, as the expected output.
EXAMPLE_TAG = "example"

# The grade id of a written answer's cell: ``answer_q1``, ``answer_q2``, ...
ANSWER_ID = re.compile(r"^answer_(?P<question>q[1-9][0-9]*)$")


def cell_source(cell: dict) -> str:
    """The cell's text: nbformat stores it as one string or as a list of lines."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def cell_tags(cell: dict) -> list:
    """The cell's tags (``metadata.tags``); an empty list where there are none or they are malformed."""
    metadata = cell.get("metadata")
    tags = metadata.get("tags") if isinstance(metadata, dict) else None
    return tags if isinstance(tags, list) else []
