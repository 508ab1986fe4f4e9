"""The user's cache folder, without importing torch (the grading parent uses it too)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    """Writable user cache folder: $SHORTCUTLAB_CACHE, else $XDG_CACHE_HOME/shortcutlab, else ~/.cache."""
    explicit = os.environ.get("SHORTCUTLAB_CACHE")
    base = Path(explicit) if explicit else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "shortcutlab"
    try:
        base.mkdir(parents=True, exist_ok=True)
        probe = base / ".write-test"
        probe.touch()
        probe.unlink()
        return base
    except OSError:
        # A read-only home (some grading sandboxes) must not stop the course from running.
        fallback = Path(tempfile.gettempdir()) / "shortcutlab-cache"
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback
