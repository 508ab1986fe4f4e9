"""Editions of the course: which library code holds the answer key (``answer_code``), how a module loses it
(``withhold``), what stands in its place in a student's wheel (``withheld``) and how that wheel is built
(``build``). The repository itself is the full edition."""
from __future__ import annotations

import functools
import json
from pathlib import Path

MANIFEST = "edition.json"  # in a student edition's package: the lessons it releases and what it withholds


@functools.lru_cache(maxsize=1)
def student_edition() -> dict | None:
    """The installed student edition's manifest ({"released": [lesson ids], "withheld": [names]}); None in the
    full edition (the repository, or a wheel built from it)."""
    path = Path(__file__).resolve().parent.parent / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
