"""The checks' version: a hash of everything that decides a lesson's grades (its course.yml entry and the grading
limits, its check file, the library code the checks, the references and the engine import, and the torch/numpy
versions). The gradebook keys grades by it and the derived timeouts are cached by it."""
from __future__ import annotations

import ast
import functools
import hashlib
import json
from importlib import metadata
from pathlib import Path

from shortcutlab import PACKAGE_DIR
from shortcutlab.course import Course, LessonSpec
from shortcutlab.edition.answer_code import module_path

# Modules whose code decides whether a check passes, besides the check file and what it imports.
ENGINE_MODULES = ("shortcutlab.grading.asserts", "shortcutlab.grading.engine.execute", "shortcutlab.grading.registry",
                  "shortcutlab.grading.engine.runner", "shortcutlab.grading.engine.worker",
                  "shortcutlab.grading.engine.job")
# Modules and packages that never decide whether a check passes (the command line, release, the gradebook, outputs
# and integrations): editing them keeps the class's grades.
NOT_GRADING = ("shortcutlab.cli", "shortcutlab.release", "shortcutlab.grading.store", "shortcutlab.grading.outputs",
               "shortcutlab.grading.integrations")
VERSION_SALT = "shortcutlab-gradebook-1"  # every hash's prefix since the first gradebook: change it to regrade all
VERSIONED_DISTRIBUTIONS = ("torch", "numpy")


def decides_grades(name: str) -> bool:
    """Whether module ``name`` can change a check's verdict (everything but ``NOT_GRADING`` and what is under it)."""
    return not any(name == other or name.startswith(other + ".") for other in NOT_GRADING)


def _imported_modules(path: Path, module: str) -> set[str]:
    """Names of modules ``path`` imports anywhere in its code (relative imports resolved against ``module``)."""
    try:
        stat = path.stat()
    except OSError:
        return set()
    return set(_imports_of(path, module, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=256)
def _imports_of(path: Path, module: str, mtime_ns: int, size: int) -> frozenset[str]:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return frozenset()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)] if node.level > 1 else anchor
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return frozenset(found)


def library_sources(start: set[str], roots: set[Path] = frozenset()) -> dict[str, bytes]:
    """Source bytes of the shortcutlab modules reachable by import from ``start`` (module names) and from the
    files ``roots``, by module name."""
    sources: dict[str, bytes] = {}
    todo = set(start)
    for root in roots:
        todo |= _imported_modules(root, "__check__")
    while todo:
        name = todo.pop()
        if name in sources or not name.startswith("shortcutlab") or not decides_grades(name):
            continue
        path = module_path(PACKAGE_DIR, name)
        if path is None:
            continue
        sources[name] = path.read_bytes()
        todo |= _imported_modules(path, name)
        # importing a.b.c runs a/__init__ and a/b/__init__ too
        parts = name.split(".")
        todo |= {".".join(parts[:i]) for i in range(1, len(parts))}
    return sources


@functools.lru_cache(maxsize=1)
def _distribution_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED_DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def checks_version(course: Course, lesson: LessonSpec | str) -> str:
    """A hash of everything that decides a lesson's grades: its course.yml entry and the grading limits, its
    check file, the library code the checks and references import, and the torch/numpy versions. Change
    any of them and the lesson's submissions are graded again. Written answers (``answers``) are graded by hand
    and left out: changing their points regrades nothing."""
    lesson = course.lesson(lesson) if isinstance(lesson, str) else lesson
    check_file = course.check_file(lesson)
    try:
        check_bytes = check_file.read_bytes()
    except OSError:
        check_bytes = b"<missing>"
    return _checks_version(json.dumps({"lesson": lesson.model_dump(mode="json", exclude={"answers"}),
                                       "grading": course.grading.model_dump(mode="json")}, sort_keys=True),
                           check_file, check_bytes)


@functools.lru_cache(maxsize=64)
def _checks_version(spec: str, check_file: Path, check_bytes: bytes) -> str:
    lesson = json.loads(spec)["lesson"]
    references = {f["reference"].replace(":", ".").rpartition(".")[0] for f in lesson["functions"].values()}
    roots = {check_file} if check_bytes != b"<missing>" else set()
    sources = library_sources(references | set(ENGINE_MODULES), roots)
    digest = hashlib.sha256()
    digest.update(f"{VERSION_SALT}\n".encode())
    digest.update(spec.encode() + b"\n")
    digest.update(hashlib.sha256(check_bytes).hexdigest().encode() + b"\n")
    for name in sorted(sources):
        digest.update(f"{name} {hashlib.sha256(sources[name]).hexdigest()}\n".encode())
    digest.update(json.dumps(_distribution_versions(), sort_keys=True).encode())
    return digest.hexdigest()[:16]
