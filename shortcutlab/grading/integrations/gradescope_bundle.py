"""Gradescope: ``shortcutlab gradescope DIR`` writes an autograder bundle; ``run_autograder`` grades one upload.

Gradescope runs each submission in its own container, so a class of any size is graded on as many machines
at once as Gradescope gives it. The bundle (``DIR/autograder.zip``, and the same files unpacked in DIR)::

    setup.sh                     pip-installs shortcutlab from package/ (dependencies from PyPI)
    run_autograder               grades /autograder/submission/, writes /autograder/results/results.json
    package/                     shortcutlab's source (pyproject.toml + the shortcutlab package)
    course/course.yml            the course manifest and its check files
    shortcutlab_autograder.json  which lesson to grade, the base seed, where the course is

``$AUTOGRADER_ROOT`` replaces /autograder (to test the bundle against a fake tree laid out as Gradescope does: the
zip unpacked in ROOT/source/, run_autograder copied to ROOT/, the upload in ROOT/submission/; README.md's
Gradescope section shows how), ``$SHORTCUTLAB_PYTHON`` the Python interpreter, and ``SHORTCUTLAB_SETUP_DRY_RUN=1``
makes setup.sh print its commands instead.
"""
from __future__ import annotations

import argparse
import json
import secrets
import shutil
import time
import zipfile
from pathlib import Path

from shortcutlab import PACKAGE_DIR
from shortcutlab.course import COURSE_FILE, Course, CourseError, load_course
from shortcutlab.errors import ShortcutlabError
from shortcutlab.grading.outputs.files import write_text
from shortcutlab.grading.outputs.gradescope import gradescope_results, results_document
from shortcutlab.grading.wording import points
from shortcutlab.grading.results import SubmissionResult
from shortcutlab.grading.engine.submission import SUFFIXES, expand_paths, infer_lesson

CONFIG_FILE = "shortcutlab_autograder.json"
ZIP_NAME = "autograder.zip"
_ZIP_TIME = (2024, 1, 1, 0, 0, 0)  # fixed, so the same bundle zips to the same bytes

SETUP_SH = r"""#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder image: install shortcutlab and its dependencies.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${SHORTCUTLAB_PYTHON:-python3}"
RUN=()
if [ "${SHORTCUTLAB_SETUP_DRY_RUN:-0}" = 1 ]; then RUN=(echo); fi
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    "${RUN[@]}" apt-get update
    "${RUN[@]}" apt-get install -y python3-pip
fi
# Dependencies come from PyPI; set PIP_EXTRA_INDEX_URL (e.g. PyTorch's CPU wheels) to pick another torch build.
"${RUN[@]}" "$PYTHON" -m pip install --no-cache-dir "$HERE/package"
"${RUN[@]}" "$PYTHON" -c "import shortcutlab.grading.engine.runner"
"""

RUN_AUTOGRADER = r"""#!/usr/bin/env bash
# Gradescope runs this for every submission: grade /autograder/submission, write /autograder/results/results.json.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PYTHON="${SHORTCUTLAB_PYTHON:-python3}"
export SHORTCUTLAB_OFFLINE="${SHORTCUTLAB_OFFLINE:-1}" MPLBACKEND=Agg
mkdir -p "$ROOT/results"
"$PYTHON" -m shortcutlab.grading.integrations.gradescope_bundle run --root "$ROOT" --config "$ROOT/source/shortcutlab_autograder.json"
status=$?
if [ ! -s "$ROOT/results/results.json" ]; then
    printf '{"score": 0, "output": "The autograder failed before it could grade this submission (exit code %s). Please tell your instructor.", "tests": []}\n' "$status" > "$ROOT/results/results.json"
fi
exit 0
"""


# ----------------------------------------------------------------------------- writing the bundle


def _copy_tree(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "*.egg-info"))


def write_bundle(folder: str | Path, course: Course | str | Path | None = None, lesson: str | None = None,
                 seed: int | None = None) -> Path:
    """Write the bundle's files into ``folder`` and zip them as ``folder/autograder.zip``; returns the zip.

    ``lesson`` fixes the lesson of every upload (one Gradescope assignment per lesson); without it the lesson
    comes from each uploaded file's name.
    """
    course = course if isinstance(course, Course) else load_course(course)
    if lesson is not None:
        course.lesson(lesson)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("package", "course"):
        shutil.rmtree(folder / name, ignore_errors=True)
    package = folder / "package"
    package.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (PACKAGE_DIR.parent / name).is_file():
            shutil.copyfile(PACKAGE_DIR.parent / name, package / name)
    _copy_tree(PACKAGE_DIR.parent / "shortcutlab", package / "shortcutlab")
    target = folder / "course"
    target.mkdir()
    shutil.copyfile(course.file, target / COURSE_FILE)  # the file the course was read from: its points
    for spec in course.lessons:
        check_file = course.check_file(spec)
        if not check_file.is_file():
            continue
        try:
            relative = check_file.relative_to(course.root.resolve())
        except ValueError:
            raise CourseError(f"check file {check_file} is outside the course folder {course.root}; move it under "
                              "the folder of course.yml") from None
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(check_file, target / relative)
    seed = int(seed) if seed is not None else course.grading.seed if course.grading.seed is not None else \
        secrets.randbelow(2**31)  # the bundle's secret: students never see the autograder's files
    write_text(folder / CONFIG_FILE, json.dumps({"lesson": lesson, "seed": seed, "course": f"course/{COURSE_FILE}"},
                                                indent=2) + "\n")
    for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
        write_text(folder / name, text)
        (folder / name).chmod(0o755)
    archive = folder / ZIP_NAME
    parts = [folder / name for name in ("setup.sh", "run_autograder", CONFIG_FILE, "package", "course")]
    files = sorted(p for part in parts for p in ([part] if part.is_file() else part.rglob("*")) if p.is_file())
    temp = archive.with_suffix(".zip.tmp")
    with zipfile.ZipFile(temp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), _ZIP_TIME)
            info.external_attr = ((0o755 if path.name in ("setup.sh", "run_autograder") else 0o644) | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    temp.replace(archive)
    return archive


# ----------------------------------------------------------------------------- grading one upload


def _uploads(folder: Path) -> list[Path]:
    return [p for p in expand_paths([folder]) if "__MACOSX" not in p.parts and not p.name.startswith("._")]


def _choose(files: list[Path], course: Course, lesson: str | None) -> list[Path]:
    """The files to grade: with a fixed lesson the one upload meant for it, else every file of a known lesson."""
    if lesson is None:
        known = []
        for path in files:
            try:
                infer_lesson(path, course)
                known.append(path)
            except CourseError:
                continue
        if not known:
            raise CourseError(f"none of the uploaded files ({', '.join(p.name for p in files)}) is named after a "
                              f"lesson; name your notebook after it, e.g. {course.lesson_ids[0]}.ipynb")
        return known
    for test in (lambda p: p.stem == lesson, lambda p: lesson in p.stem):
        for suffix in SUFFIXES:
            found = [p for p in files if p.suffix == suffix and test(p)]
            if len(found) == 1:
                return found
    for suffix in SUFFIXES:
        found = [p for p in files if p.suffix == suffix]
        if len(found) == 1:
            return found
    raise CourseError(f"upload one notebook for {lesson} (e.g. {lesson}.ipynb); got "
                      f"{', '.join(p.name for p in files) or 'no .ipynb or .py file'}")


def combine(results: list[SubmissionResult], seconds: float, course: Course | None = None) -> dict:
    """One results.json for the graded files (tests prefixed by lesson when there are several); with ``course``,
    each upload's written answers follow its checks, 0 of their points from the course file and "awaiting
    manual grading" (scored by hand on Gradescope)."""
    from shortcutlab.grading.store.answers import upload_answers

    answers = [upload_answers(r, course) if course is not None else () for r in results]
    if len(results) == 1:
        return gradescope_results(results[0], seconds, answers[0])
    parts = [gradescope_results(r, answers=a) for r, a in zip(results, answers)]
    tests = []
    for result, part in zip(results, parts):
        for test in part["tests"]:
            tests.append({**test, "name": f"{result.lesson} / {test['name']}", "number": str(len(tests) + 1)})
    return results_document(sum(p["score"] for p in parts), seconds, "\n\n".join(p["output"] for p in parts), tests)


def run_autograder(root: str | Path, config: str | Path, jobs: int = 1) -> dict:
    """Grade ``root/submission`` as the bundle's config says and write ``root/results/results.json``.

    Never raises for a bad upload: the problem becomes the results' output, with score 0."""
    from shortcutlab.grading.engine.runner import grade

    start = time.monotonic()
    root, config = Path(root), Path(config)
    try:
        settings = json.loads(config.read_text(encoding="utf-8"))
        course = load_course(config.parent / settings.get("course", f"course/{COURSE_FILE}"))
        lesson = settings.get("lesson")
        files = _choose(_uploads(root / "submission"), course, lesson)
        report = grade(files, lesson=lesson, jobs=jobs, seed=int(settings["seed"]), course=course)
        results = combine(list(report.submissions), time.monotonic() - start, course)
    except (ShortcutlabError, OSError, ValueError) as exc:
        results = results_document(0.0, time.monotonic() - start, f"This submission could not be graded: {exc}", [])
    write_text(root / "results" / "results.json", json.dumps(results, indent=2) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shortcutlab.grading.integrations.gradescope_bundle",
                                     description="Grade a Gradescope upload (what run_autograder calls).")
    verbs = parser.add_subparsers(dest="verb", required=True)
    run = verbs.add_parser("run", help="grade ROOT/submission into ROOT/results/results.json")
    run.add_argument("--root", default="/autograder", help="the autograder folder (default /autograder)")
    run.add_argument("--config", help=f"the bundle's {CONFIG_FILE} (default ROOT/source/{CONFIG_FILE})")
    args = parser.parse_args(argv)
    config = args.config or str(Path(args.root) / "source" / CONFIG_FILE)
    results = run_autograder(args.root, config)
    print(f"score {points(results['score'])}: {len(results['tests'])} tests, results in "
          f"{Path(args.root) / 'results' / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
