"""What a grading server starts with: its environment, and the folder holding shortcutlab/ (first on its path, and
bound read-only into the OS sandbox)."""
from __future__ import annotations

import os

from shortcutlab import PACKAGE_DIR

PACKAGE_ROOT = PACKAGE_DIR.parent
# The engine's own folder: its frames are left out of what a student's traceback shows.
ENGINE_DIR = os.path.dirname(os.path.abspath(__file__))
# What grading sets in every server and keeps inside the OS sandbox: one thread per process, headless plotting,
# no progress bars, no bytecode files, unbuffered output.
GRADING_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg",
               "SHORTCUTLAB_GRADING": "1", "TQDM_DISABLE": "1", "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONUNBUFFERED": "1"}


def server_env() -> dict[str, str]:
    """Environment of a grading server: one thread per process, headless plotting, no progress bars,
    and this very copy of shortcutlab first on the path."""
    env = dict(os.environ)
    env.update(GRADING_ENV)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    return env
