"""``shortcutlab release --student-edition OUT [--through LESSON]``: what an instructor hands to students, the
lesson notebooks and one wheel of the library built by pip, whose modules hold no answer of a lesson not yet
released (each withheld definition is a stand-in, see ``withhold``). The repository stays the full edition."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shortcutlab.course import COURSE_FILE, Course
from shortcutlab.data import EMBEDDED
from shortcutlab.edition import MANIFEST
from shortcutlab.edition.answer_code import PACKAGE, PACKAGE_DIR, AnswerDefinition, LibraryText, answer_definitions
from shortcutlab.edition.checks import write_edition_checks
from shortcutlab.edition.withhold import withhold
from shortcutlab.errors import ShortcutlabError

EDITION_CHECKS = "checks"  # in the wheel's package: each lesson's visible checks and their recorded values
# Never copied from the repository: build outputs, and what the builder writes itself.
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", "rendered", "pretrained", EDITION_CHECKS, MANIFEST,
                                  COURSE_FILE)


class EditionError(ShortcutlabError):
    """A student edition cannot be built as asked."""


@dataclass(frozen=True)
class StudentEdition:
    """A built edition: its wheel, its lesson notebooks, the lessons it releases and what it withholds."""

    wheel: Path
    lessons: tuple[Path, ...]
    released: tuple[str, ...]
    withheld: tuple[AnswerDefinition, ...]


def released_lessons(course: Course, through: str | None) -> tuple[str, ...]:
    """The lesson ids up to and including ``through`` in course order; none when ``through`` is None."""
    if through is None:
        return ()
    ids = course.lesson_ids
    if through not in ids:
        raise EditionError(f"--through {through!r} is not a lesson of the course; give one of {', '.join(ids)}")
    return ids[:ids.index(through) + 1]


def edition_version(version: str, released: tuple[str, ...]) -> str:
    """The wheel's version: the library's, with a local label saying how many lessons it releases."""
    return f"{version}+student.{len(released)}"


def _pyproject(repository: Path, version: str) -> str:
    text = (repository / "pyproject.toml").read_text(encoding="utf-8")
    text, count = re.subn(r'(?m)^version = "[^"]*"', f'version = "{version}"', text, count=1)
    if not count:
        raise EditionError("pyproject.toml has no version line to stamp the edition on")
    text = re.sub(r'(?m)^readme = .*\n', 'readme = "README.md"\n', text, count=1)
    section = '[tool.setuptools.package-data]\n'
    data = f'"{PACKAGE}" = ["{COURSE_FILE}", "{MANIFEST}", "rendered/*.pt", "pretrained/*.pt2", "checks/*"]\n'
    return text.replace(section, section + data) if section in text else text + "\n" + section + data


def _stage(course: Course, released: tuple[str, ...], withheld: list[AnswerDefinition], stage: Path,
           library: LibraryText, models: Sequence[str], artifacts: Path | None) -> None:
    package = stage / PACKAGE
    shutil.copytree(library.package_dir, package, ignore=_IGNORED)
    by_module: dict[str, dict[str, AnswerDefinition]] = {}
    for answer in withheld:
        by_module.setdefault(answer.module, {})[answer.qualname] = answer
    for module, answers in by_module.items():
        parsed = library.module(module)
        target = package / parsed.path.relative_to(library.package_dir)
        target.write_text(withhold(parsed, answers), encoding="utf-8")
    if _renders_with(withheld, library):
        _write_prerendered(package)
    _write_models(package, models, artifacts)
    write_edition_checks(package / EDITION_CHECKS, course, withheld, library)
    (package / COURSE_FILE).write_text(_edition_course_text(course.file.read_text(encoding="utf-8")),
                                       encoding="utf-8")
    (package / MANIFEST).write_text(json.dumps({
        "edition": "student", "released": list(released), "withheld": [a.name for a in withheld],
    }, indent=1) + "\n", encoding="utf-8")
    repository = library.package_dir.parent
    version = edition_version(_version(library), released)
    (stage / "pyproject.toml").write_text(_pyproject(repository, version), encoding="utf-8")
    (stage / "README.md").write_text(
        f"# {course.title}: student edition\n\nThe shortcutlab library for the lessons you were given"
        + (f", released through lesson {released[-1]}" if released else "") + ". It holds no answer of a lesson "
        "still to do: those functions say so when called.\n", encoding="utf-8")


def _edition_course_text(text: str) -> str:
    """course.yml as the edition ships it: its check files are the edition's (``EDITION_CHECKS``)."""
    text, count = re.subn(r"(?m)^(\s+autograder:\s*)[^\s#]+", rf"\g<1>{EDITION_CHECKS}", text, count=1)
    if not count:
        text = text.replace("paths:\n", f"paths:\n  autograder: {EDITION_CHECKS}\n", 1) if "paths:\n" in text \
            else f"paths:\n  autograder: {EDITION_CHECKS}\n" + text
    return text


def _renders_with(withheld: list[AnswerDefinition], library: LibraryText) -> bool:
    """Whether rendering a Colored MNIST split needs a withheld answer (lesson 00's, until it is released)."""
    needed = {f"{module}:{qualname}" for module, qualname in library.uses("shortcutlab.data:ColoredMNIST")}
    return any(answer.name in needed for answer in withheld)


def _write_prerendered(package: Path) -> None:
    """The embedded digits' splits, rendered here by the full library, as the edition's data (``ColoredMNIST``
    reads them instead of rendering)."""
    import torch

    from shortcutlab.data import RENDERED_DIR, SPLITS, prerender, prerendered_path

    folder = package / RENDERED_DIR.name
    folder.mkdir(exist_ok=True)
    for split in SPLITS:
        torch.save(prerender(split), folder / prerendered_path(split).name)


def _write_models(package: Path, names: Sequence[str], artifacts: Path | None) -> None:
    """Each study model in ``names``, trained on the embedded digits (taken from ``artifacts``' cache, the
    instructor's by default, trained there if missing), as the exported program ``shortcutlab.pretrained`` loads in
    the edition."""
    if not names:
        return
    from shortcutlab import pretrained
    from shortcutlab.exported import SHIPPED_MODELS, export_model, shipped_model_path

    folder = package / SHIPPED_MODELS.name
    folder.mkdir(exist_ok=True)
    for name in names:
        model = pretrained(name, data=EMBEDDED, out=artifacts, quiet=True, device="cpu")
        export_model(model, folder / shipped_model_path(name).name)


def _version(library: LibraryText) -> str:
    match = re.search(r'(?m)^__version__ = "([^"]+)"', library.module(PACKAGE).text)
    if not match:
        raise EditionError("shortcutlab/__init__.py has no __version__")
    return match.group(1)


def _build_wheel(stage: Path, out: Path) -> Path:
    """One wheel of ``stage`` into ``out``, built by pip offline with the setuptools already installed."""
    before = set(out.glob("*.whl"))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
               "--wheel-dir", str(out), str(stage)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise EditionError(f"pip could not build the edition's wheel (needs setuptools and wheel installed):\n"
                           f"{done.stderr.strip()[-2000:]}")
    built = sorted(set(out.glob("*.whl")) - before) or sorted(out.glob(f"{PACKAGE}-*.whl"))
    return built[-1]


def build_student_edition(out: str | Path, course: Course, through: str | None = None,
                          package_dir: str | Path = PACKAGE_DIR, models: Sequence[str] | None = None,
                          artifacts: str | Path | None = None) -> StudentEdition:
    """Write OUT/lessons/*.ipynb and exactly one OUT/shortcutlab-*.whl; see the module's docstring. ``models``:
    the study models to ship (default course.yml's ``student_edition.models``), from ``artifacts`` (default the
    instructor's artifacts folder, see ``shortcutlab.pretrained``)."""
    models = course.student_edition.models if models is None else list(models)
    artifacts = Path(artifacts) if artifacts is not None else None
    out = Path(out)
    elsewhere = [lesson.id for lesson in course.lessons if lesson.checks]
    if elsewhere:  # the edition's check files live in one folder of its package, which course.yml names
        raise EditionError(f"lessons {', '.join(elsewhere)} set `checks:` in course.yml; a student edition ships every "
                           f"check file in its own folder: move them to paths.autograder and remove `checks:`")
    released = released_lessons(course, through)
    library = LibraryText(package_dir)
    withheld = [answer for answer in answer_definitions(course, library) if answer.lesson not in released]
    if out.exists() and any(out.iterdir()):
        stale = [p for p in out.iterdir() if p.name != "lessons" and not p.name.endswith(".whl")]
        if stale:
            raise EditionError(f"{out} holds other files ({', '.join(p.name for p in stale[:5])}); give an empty or "
                               f"new folder, or one a previous edition was written to")
        for old in out.glob("*.whl"):
            old.unlink()
        shutil.rmtree(out / "lessons", ignore_errors=True)
    (out / "lessons").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="shortcutlab-edition-") as tmp:
        stage = Path(tmp) / "stage"
        _stage(course, released, withheld, stage, library, models, artifacts)
        wheel = _build_wheel(stage, out)
    lessons = []
    for lesson in course.lessons:
        source = course.lesson_notebook(lesson)
        if not source.is_file():
            raise EditionError(f"{source} is missing; run `shortcutlab release` to generate the lessons first")
        lessons.append(Path(shutil.copy2(source, out / "lessons" / source.name)))
    return StudentEdition(wheel, tuple(lessons), released, tuple(withheld))
