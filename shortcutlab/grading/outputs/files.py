"""Writing an output file: atomically, readable like any file the user creates (0666 less the umask), and only when
its text changed (a rerun leaves untouched files as they were, modification times included, for the tools that
sync or upload what changed)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


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


def write_text(path: Path, text: str) -> bool:
    """Write a file atomically (a run killed meanwhile leaves the old file or the new one, never half), with
    the permissions of a file created normally (0666 less the umask; mkstemp alone would give 0600), unless it
    already holds ``text``; True if it was written."""
    try:
        if path.read_bytes() == text.encode("utf-8"):
            return False
    except (OSError, ValueError):
        pass
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
    return True
