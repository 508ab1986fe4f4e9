"""Does a student see every mistake in the notebook, before the grade, whatever the seed?

Policy (docs/grading-contract.md, "Visible where stressed"): every property a lesson asks for has a visible check,
hidden checks only repeat visible properties on further random instances, and a visible check's outcome does not
depend on its seed. So every mutant in tests/mutants/ (one plausible mistake each) must fail a visible check of its
function for every seed, and the correct submissions must pass every visible check for every seed. The checks run
in this process, as ``shortcutlab.check`` runs them in a notebook. SHORTCUTLAB_VISIBLE_SEEDS=N sets how
many seeds each case gets (by default 1 per mutant, 2 per correct submission); run it with 25 before changing
a check.
"""
from __future__ import annotations

import contextlib
import io
import os
import runpy
from pathlib import Path

import pytest

from shortcutlab.course import load_course
from shortcutlab.grading.integrations.notebook import ChecksFailed, check_in_notebook

ROOT = Path(__file__).resolve().parents[1]
COURSE = load_course(ROOT / "course.yml")
MUTANTS = sorted(p for p in (ROOT / "tests" / "mutants").glob("*/*.py") if p.parent.name in COURSE.lesson_ids)
SUBMISSIONS = sorted(p for p in (ROOT / "tests" / "submissions").glob("*.py") if p.stem in COURSE.lesson_ids)
# Fixed seeds, so a failure can be replayed. By default the many mutants get one seed and the correct submissions
# two (the suite's time); SHORTCUTLAB_VISIBLE_SEEDS=N gives every case N seeds.
SEED_COUNT = os.environ.get("SHORTCUTLAB_VISIBLE_SEEDS")
SEEDS = [1000003 * index + 17 for index in range(int(SEED_COUNT or 2))]
MUTANT_SEEDS = SEEDS if SEED_COUNT else SEEDS[:1]


def _namespace(path: Path) -> dict:
    """The submission's globals after running it as the grader does (trusted test files only)."""
    return runpy.run_path(str(path), run_name="__submission__")


def _visible_checks_pass(lesson: str, function: str, namespace: dict, seed: int) -> tuple[bool, str]:
    """(every visible check of ``function`` passed, the printed report) for one seed."""
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        try:
            check_in_notebook(f"{lesson}.{function}", namespace[function], seed=seed, namespace=namespace)
        except ChecksFailed:
            return False, report.getvalue()
    return True, report.getvalue()


@pytest.mark.parametrize("path", MUTANTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_mutant_fails_a_visible_check_for_every_seed(path):
    lesson, function = path.parent.name, path.stem.split("__", 1)[0]
    namespace = _namespace(path)
    escaped = []
    for seed in MUTANT_SEEDS:
        passed, _ = _visible_checks_pass(lesson, function, namespace, seed)
        if passed:
            escaped.append(seed)
    assert not escaped, (f"{path.relative_to(ROOT)} passes every visible check of {function} for seeds {escaped}: "
                         f"the mistake is only caught by hidden checks, or not for every seed")


@pytest.mark.parametrize("path", SUBMISSIONS, ids=lambda p: p.stem)
def test_a_correct_submission_passes_every_visible_check_for_every_seed(path):
    lesson = path.stem
    namespace = _namespace(path)
    for function in COURSE.lesson(lesson).functions:
        for seed in SEEDS:
            passed, report = _visible_checks_pass(lesson, function, namespace, seed)
            assert passed, f"correct {function} fails a visible check for seed {seed}:\n{report}"


def test_grad_cam_under_no_grad_blames_enable_grad_only_when_it_works_outside_no_grad():
    """A message names a cause only on evidence: a grad_cam that raises everywhere is not told to use enable_grad."""
    def raises_everywhere(model, target_layer, images, targets=None):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    passed, report = _visible_checks_pass("03_gradcam", "grad_cam", {"grad_cam": raises_everywhere}, SEEDS[0])
    assert not passed and "fails outside it too" in report and "enable_grad" not in report


GRADED = [(lesson.id, function) for lesson in COURSE.lessons for function in lesson.functions]


@pytest.mark.parametrize("lesson,function", GRADED, ids=lambda value: value)
def test_the_reference_itself_fails_every_visible_check_with_the_message_grading_gives(lesson, function):
    """Full edition: the library's reference imported under the graded name earns ✗ in the notebook, as in grading."""
    from shortcutlab.course import import_object
    from shortcutlab.grading.engine.guard import ReferenceGuard

    dotted = COURSE.function(lesson, function).reference
    reference = import_object(dotted)
    namespace = {"__name__": "__main__", function: reference}
    passed, report = _visible_checks_pass(lesson, function, namespace, SEEDS[0])
    message = ReferenceGuard(function, reference, dotted, set()).message("is")
    assert not passed and "0/" in report.splitlines()[0]
    assert report.count(message) == report.count("✗")


def test_a_notebook_function_that_calls_the_reference_fails_with_the_message_grading_gives():
    namespace = {"__name__": "__main__"}
    exec(compile("import shortcutlab.interpret as interpret\n"  # noqa: S102 - the test's own code
                 "def grad_cam(model, layer, images, targets=None):\n"
                 "    return interpret.grad_cam(model, layer, images, targets)\n", "<cell 3>", "exec"), namespace)
    passed, report = _visible_checks_pass("03_gradcam", "grad_cam", namespace, SEEDS[0])
    assert not passed and "grad_cam calls the shortcutlab reference `shortcutlab.interpret.grad_cam`" in report
