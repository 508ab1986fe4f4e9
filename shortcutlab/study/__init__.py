"""The whole study end to end (``shortcutlab reproduce``): one module per task (0-6, as the lessons),
the model cache in ``cache``, a run's shared state in ``context``, the driver in ``run``, several seeds with their
confidence intervals in ``seeds``, the correlation sweep in ``sweep``, a run's expected cost in ``estimate``.

Outside the study only the CLI (``run_study``) and ``shortcutlab.pretrained`` import from here; measures
that lessons and explorers share live in ``shortcutlab.metrics``.
"""
from __future__ import annotations

from shortcutlab.study.cache import pretrained
from shortcutlab.study.context import StudyConfig
from shortcutlab.study.run import TASKS, parse_tasks, run_study

__all__ = ["TASKS", "StudyConfig", "parse_tasks", "pretrained", "run_study"]
