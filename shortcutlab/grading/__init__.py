"""The autograder: checks (``@check`` + ``expect_*``), grading submissions, and notebook check cells.

Its top-level modules are the core every layer shares (the check-author API, statuses, results, wording); then
``engine/`` (runner, judge, verdicts, limits), ``store/`` (gradebook), ``outputs/`` (CSV, results.json, feedback)
and ``integrations/`` (``shortcutlab grade``, check cells, nbgrader, Gradescope), each importing only from the
layers before it (docs/grading-contract.md).

Light to import (no torch) so ``shortcutlab grade`` starts fast; the assertion helpers load torch on first use.
"""
from __future__ import annotations

from typing import Any

from shortcutlab.grading.registry import CheckFailure, Slip, check

__all__ = ["CheckFailure", "Slip", "check", "check_in_notebook", "expect_close", "expect_dtype", "expect_equal",
           "expect_finite", "expect_range", "expect_shape", "expect_tensor", "expect_true", "grade",
           "probe", "with_reference"]

_LAZY = {
    "expect_close": "shortcutlab.grading.asserts",
    "expect_dtype": "shortcutlab.grading.asserts",
    "expect_equal": "shortcutlab.grading.asserts",
    "expect_finite": "shortcutlab.grading.asserts",
    "expect_range": "shortcutlab.grading.asserts",
    "expect_shape": "shortcutlab.grading.asserts",
    "expect_tensor": "shortcutlab.grading.asserts",
    "expect_true": "shortcutlab.grading.asserts",
    "grade": "shortcutlab.grading.engine.runner",
    "check_in_notebook": "shortcutlab.grading.integrations.notebook",
    "with_reference": "shortcutlab.grading.dependencies",
    "probe": "shortcutlab.grading.probes",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'shortcutlab.grading' has no attribute {name!r}")
