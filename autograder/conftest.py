"""Fixtures that let the check files run under plain pytest.

    pytest autograder                                   # checks the library reference (every check must pass)
    pytest autograder --submission lessons/03_gradcam.ipynb [--lesson 03_gradcam] [--seed 7]

Without --submission, a check's parameters are filled by name, here: ``seed`` (derived from --seed, else random
per run) and each graded function of course.yml from its library reference. With --submission, only that lesson's
checks are collected and the submission is graded once by the grading engine itself (``shortcutlab grade``: its
code runs in the sandboxed runner, every verdict comes from the judge, property checks are gated); each check
then passes or fails with the engine's verdict and message. Student code never runs in the pytest process.
"""
from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from shortcutlab.course import import_object, load_course
from shortcutlab.grading.registry import check_seed
from shortcutlab.grading.engine.submission import load_submission

COURSE = load_course()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("shortcutlab", "shortcutlab autograder")
    group.addoption("--submission", metavar="PATH", help="check this .ipynb or .py instead of the library reference")
    group.addoption("--lesson", metavar="ID", help="lesson of --submission (default: from its file name)")
    group.addoption("--seed", type=int, metavar="N", help="seed of the checks' random inputs (default: random)")


def pytest_configure(config: pytest.Config) -> None:
    seed = config.getoption("--seed")
    config.stash[_SEED] = secrets.randbelow(2**31) if seed is None else seed


_SEED = pytest.StashKey[int]()


def pytest_report_header(config: pytest.Config) -> str:
    target = config.getoption("--submission") or "the library reference"
    return f"shortcutlab autograder: checking {target}, seed {config.stash[_SEED]} (rerun with --seed to repeat)"


def _lesson_of(path: str | Path) -> str | None:
    path = Path(path).resolve()
    for lesson in COURSE.lessons:
        if COURSE.check_file(lesson) == path:
            return lesson.id
    return None


_GRADED = pytest.StashKey[object]()


def _graded(config: pytest.Config):
    """The engine's result for --submission (graded once, on first use)."""
    if _GRADED not in config.stash:
        from shortcutlab.grading.engine.runner import grade

        path = config.getoption("--submission")
        lesson = load_submission(path, COURSE, config.getoption("--lesson")).lesson
        report = grade([path], lesson=lesson, jobs=1, seed=config.stash[_SEED], course=COURSE)
        config.stash[_GRADED] = report.submissions[0]
    return config.stash[_GRADED]


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """With --submission, a check's outcome is the grading engine's verdict (its body runs in the engine)."""
    if pyfuncitem.config.getoption("--submission") is None or _lesson_of(pyfuncitem.path) is None:
        return None
    result = _graded(pyfuncitem.config)
    found = [c for c in result.checks if c.name == pyfuncitem.originalname]
    if not found:
        pytest.fail(f"not graded: {result.error or 'the engine reported no result for this check'}", pytrace=False)
    check = found[0]
    if check.status != "passed":
        pytest.fail(f"[{check.status}] {check.output}", pytrace=False)
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With --submission, only the submission's lesson is checked."""
    path = config.getoption("--submission")
    if path is None:
        return
    lesson = load_submission(path, COURSE, config.getoption("--lesson")).lesson
    keep = [item for item in items if _lesson_of(item.path) == lesson]
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = keep


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """The check's seed, derived from the run's seed as `shortcutlab grade` derives it."""
    return check_seed(request.config.stash[_SEED], _lesson_of(request.path) or "", request.node.originalname)


def _student_object(name: str):
    def fixture(request: pytest.FixtureRequest):
        lesson = _lesson_of(request.path)
        if request.config.getoption("--submission") is not None:
            return None  # the engine runs the check with the submission's object (pytest_pyfunc_call)
        if lesson is None:
            pytest.fail(f"{request.path} is no lesson's check file in course.yml", pytrace=False)
        return import_object(COURSE.function(lesson, name).reference)

    fixture.__name__ = f"student_{name}"
    fixture.__doc__ = f"The library reference of {name} (with --submission, the engine supplies the submission's)."
    return pytest.fixture(name=name)(fixture)


for _name in sorted({name for lesson in COURSE.lessons for name in lesson.functions}):
    globals()[f"_fixture_{_name}"] = _student_object(_name)
