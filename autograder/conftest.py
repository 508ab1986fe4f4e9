"""Fixtures that let the check files run under plain pytest.

    pytest autograder                                   # checks the library reference (every check must pass)
    pytest autograder --submission lessons/03_gradcam.ipynb [--lesson 03_gradcam] [--seed 7]

A check's parameters are filled by name: ``seed`` (derived from --seed, else random per run, as the grader
does) and each graded function of course.yml, taken from the submission if one is given (only that
lesson's checks run, in this process), else from its library reference.
"""
from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from shortcutlab.course import import_object, load_course
from shortcutlab.grading.execute import CheckContext, exec_cells, missing_message
from shortcutlab.grading.registry import check_seed
from shortcutlab.grading.submission import load_submission

COURSE = load_course()
SUBMISSION_NAME = "__submission__"


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


@pytest.fixture(scope="session")
def submission(pytestconfig: pytest.Config) -> tuple[str, CheckContext] | None:
    """(lesson id, the submission's objects) after running its setup and graded cells; None without --submission."""
    path = pytestconfig.getoption("--submission")
    if path is None:
        return None
    loaded = load_submission(path, COURSE, pytestconfig.getoption("--lesson"))
    cells = [cell.to_dict() for cell in loaded.cells]
    namespace: dict = {"__name__": SUBMISSION_NAME}
    notes, _ = exec_cells(cells, namespace, cell_timeout=None, budget=None, limit=COURSE.grading.output_limit)
    return loaded.lesson, CheckContext(namespace, {c["filename"] for c in cells}, notes)


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
    def fixture(request: pytest.FixtureRequest, submission: tuple[str, CheckContext] | None):
        lesson = _lesson_of(request.path)
        if submission is not None:
            context = submission[1]
            if name not in context.namespace:
                pytest.fail(missing_message(name, context), pytrace=False)
            return context.namespace[name]
        if lesson is None:
            pytest.fail(f"{request.path} is no lesson's check file in course.yml", pytrace=False)
        return import_object(COURSE.function(lesson, name).reference)

    fixture.__name__ = f"student_{name}"
    fixture.__doc__ = f"The submission's {name}, else the library reference."
    return pytest.fixture(name=name)(fixture)


for _name in sorted({name for lesson in COURSE.lessons for name in lesson.functions}):
    globals()[f"_fixture_{_name}"] = _student_object(_name)
