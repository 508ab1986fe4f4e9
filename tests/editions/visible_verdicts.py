"""Print, as JSON, the visible checks' verdicts and reports for submissions (python files), the way a check cell
gives them, in whatever edition of shortcutlab this interpreter imports. ``tests/test_edition.py`` runs it in the
repository (the full edition) and in an installed student edition and compares.

Usage: python visible_verdicts.py SEED LESSON FILE [FILE ...]
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import sys


def verdicts(seed: int, lesson: str, paths: list[str]) -> dict:
    from shortcutlab.course import load_course
    from shortcutlab.grading.integrations.notebook import check_in_notebook

    course = load_course()
    found = {}
    for path in paths:
        namespace: dict = {"__name__": "submission"}
        exec(compile(open(path, encoding="utf-8").read(), path, "exec"), namespace)
        for function in course.lesson(lesson).functions:
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                try:
                    check_in_notebook(f"{lesson}.{function}", namespace[function], seed=seed, namespace=namespace)
                    failed = None
                except Exception as error:  # noqa: BLE001 - ChecksFailed, or a check that cannot run: reported
                    failed = type(error).__name__
            # the head line's timing varies from run to run
            report = re.sub(r"\(\d+\.\d s\)", "(s)", printed.getvalue())
            found[f"{path}::{function}"] = {"failed": failed, "report": report}
    return found


if __name__ == "__main__":
    print(json.dumps(verdicts(int(sys.argv[1]), sys.argv[2], sys.argv[3:])))
