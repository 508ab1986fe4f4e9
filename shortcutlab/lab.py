"""``shortcutlab lab``: the lessons opened in JupyterLab, in a working copy that ``release`` never overwrites.

``shortcutlab release`` rewrites ``lessons/`` from ``solutions/``, so work done there can be lost. The working copy
(``work/`` at the course root, ignored by git) gets each lesson the first time; after that a lesson is never copied
over the student's, and if ``lessons/`` changed since it was copied the student is told which and how to start that
lesson again. Only what the copy needs is recorded: the sha256 of each lesson as copied, in
``work/.shortcutlab-lessons.json``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from shortcutlab.errors import ShortcutlabError

WORK_FOLDER = "work"  # at the course root; .gitignore lists it
COPIED_FILE = ".shortcutlab-lessons.json"  # in the working copy: {lesson file name: sha256 of it as copied}


class LabError(ShortcutlabError):
    """The lab cannot open: no lessons to copy, or JupyterLab missing."""


@dataclass(frozen=True)
class WorkingCopy:
    """The working copy after ``prepare``: the lessons copied now, those kept as the student left them, and of
    those, the ones whose original in lessons/ changed since they were copied."""

    folder: Path
    copied: tuple[str, ...]
    kept: tuple[str, ...]
    changed_upstream: tuple[str, ...]

    def summary(self) -> list[str]:
        """What to tell the student, one line each."""
        lines = [f"lessons in {self.folder}: {len(self.copied)} copied now, {len(self.kept)} kept as you left them"]
        for name in self.changed_upstream:
            lines.append(f"lessons/{name} changed since you copied it; yours is kept. To start that lesson again, "
                         f"delete {self.folder / name} and run this again")
        return lines


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare(lessons: Path, folder: Path) -> WorkingCopy:
    """Copy each ``lessons/*.ipynb`` missing from ``folder`` into it; never overwrite one that is there."""
    originals = sorted(lessons.glob("*.ipynb"))
    if not originals:
        raise LabError(f"no lesson notebooks in {lessons}; run this from the course's folder (the one with "
                       "course.yml and lessons/)")
    folder.mkdir(parents=True, exist_ok=True)
    record = folder / COPIED_FILE
    try:
        as_copied = json.loads(record.read_text()) if record.is_file() else {}
    except (OSError, ValueError):
        as_copied = {}
    copied, kept, changed = [], [], []
    for original in originals:
        mine = folder / original.name
        if mine.exists():
            kept.append(original.name)
            if original.name in as_copied and as_copied[original.name] != _digest(original):
                changed.append(original.name)
            continue
        shutil.copyfile(original, mine)
        as_copied[original.name] = _digest(original)
        copied.append(original.name)
    record.write_text(json.dumps(as_copied, indent=1, sort_keys=True) + "\n")
    return WorkingCopy(folder, tuple(copied), tuple(kept), tuple(changed))


def lab_command(folder: Path, extra: list[str]) -> list[str]:
    """The JupyterLab command serving ``folder`` (``extra``: JupyterLab's own options, e.g. --no-browser)."""
    if importlib.util.find_spec("jupyterlab") is None:
        raise LabError("JupyterLab is not installed here: run `make lab` (or `pip install -e .`) in the course's "
                       "folder")
    # As root (a container, a VM's only user) JupyterLab refuses to start unless told that is meant.
    as_root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    return [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={folder}", *as_root, *extra]


def open_lab(root: Path, extra: list[str]) -> int:
    """Prepare the working copy under ``root`` and serve it in JupyterLab until it is stopped (Ctrl-C)."""
    copy = prepare(root / "lessons", root / WORK_FOLDER)
    for line in copy.summary():
        print(line, flush=True)
    command = lab_command(copy.folder, extra)
    if os.name == "posix":
        # Become JupyterLab, so that stopping this process (Ctrl-C, a terminal closed, a service manager's SIGTERM)
        # stops the server too, instead of leaving it orphaned and serving.
        sys.stdout.flush()
        os.execv(command[0], command)
    return subprocess.call(command)
