"""Do the autograder checks catch wrong-but-plausible code, and only in the function that is wrong?

Each tests/mutants/<lesson>/<function>__<what_is_wrong>.py is a complete submission with exactly one graded
function broken: it must lose points on that function and keep full points on every other one, also on a
function that calls the broken one (one mistake, one penalty: while a function's checks run, the other graded
functions its code calls are the library's references, docs/grading-contract.md). For the README's test command's
time, this module grades one mutant per graded function (and the one whose callee is broken);
tests/test_fairness.py (``make test-slow``, in CI) holds every mutant to the same rules under seeds 0-9. As controls, the correct
submissions tests/submissions/<lesson>.py and the library reference itself must get full marks, every
solutions/ notebook must too (graded end to end by the CLI, in under two minutes), and every untouched
lessons/ notebook must get 0 without a grader error. Lessons whose check file does not exist yet are skipped.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from shortcutlab.course import load_course
from shortcutlab.grading.registry import plan_checks
from shortcutlab.grading.engine.runner import grade

pytestmark = pytest.mark.slow  # grades whole batches end to end

ROOT = Path(__file__).resolve().parents[1]
COURSE = load_course(ROOT / "course.yml")
LESSONS = COURSE.lesson_ids
ALL_MUTANTS = sorted(p for p in (ROOT / "tests" / "mutants").glob("*/*.py") if p.parent.name in COURSE.lesson_ids)
CALLEE_BROKEN = "grad_reverse__no_sign_flip"  # GRLNet calls it: the test below needs this one


def _one_per_function(paths: list[Path]) -> list[Path]:
    chosen: dict[tuple[str, str], Path] = {}
    for path in paths:
        chosen.setdefault((path.parent.name, path.stem.partition("__")[0]), path)
    return sorted({*chosen.values(), *(p for p in paths if p.stem == CALLEE_BROKEN)})


MUTANTS = _one_per_function(ALL_MUTANTS)
SUBMISSIONS = sorted(p for p in (ROOT / "tests" / "submissions").glob("*.py") if p.stem in COURSE.lesson_ids)
SEED = int(os.environ.get("SHORTCUTLAB_TEST_SEED", "20241128"))  # fixed, so a failure can be replayed


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def _reference_submission(folder: Path, lesson: str) -> Path:
    """A .py submission that imports every graded function of ``lesson`` from its library reference."""
    path = folder / lesson / "reference.py"
    path.parent.mkdir(parents=True)
    lines = []
    for name, spec in COURSE.lesson(lesson).functions.items():
        module, _, attr = spec.reference.replace(":", ".").rpartition(".")
        lines.append(f"from {module} import {attr} as {name}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict[Path, object]:
    """Mutants, correct submissions, references and untouched lessons, graded in one batch (2 at a time)."""
    folder = tmp_path_factory.mktemp("references")
    references = [_reference_submission(folder, lesson) for lesson in LESSONS]
    lessons = [COURSE.lesson_notebook(lesson) for lesson in LESSONS]
    paths = MUTANTS + SUBMISSIONS + references + lessons
    # The reference submissions import the library's own functions, which course.yml's default scores 0
    # (grading.allow_reference: false); here they are the control, so this batch allows them.
    course = COURSE.model_copy(update={"grading": COURSE.grading.model_copy(update={"allow_reference": True})})
    report = grade(paths, course=course, jobs=2, seed=SEED)
    return {Path(result.path): result for result in report.submissions}


def test_every_lesson_has_its_check_file_and_its_notebook():
    """A lesson of course.yml without them would grade nothing: never a skip, always a failure."""
    absent = [str(path) for lesson in LESSONS
              for path in (COURSE.check_file(COURSE.lesson(lesson)), COURSE.lesson_notebook(lesson)) if not path.exists()]
    assert not absent, f"missing: {absent}"


@pytest.mark.parametrize("lesson", COURSE.lesson_ids)
def test_a_check_takes_no_other_graded_function(lesson):
    """A check handed another student function would grade it too: it uses that function's reference instead."""
    names = set(COURSE.lesson(lesson).functions)
    others = {c.name: sorted(names & set(c.params) - {c.function}) for c in plan_checks(COURSE, lesson)
              if names & set(c.params) - {c.function}}
    assert not others, f"checks of {lesson} take another graded function (use its library reference): {others}"


@pytest.mark.parametrize("path", MUTANTS, ids=_id)
def test_a_mutant_loses_points_on_its_function_and_keeps_them_elsewhere(path, graded):
    lesson = path.parent.name
    function, sep, _ = path.stem.partition("__")
    assert sep and function in COURSE.lesson(lesson).functions, \
        f"name mutants <function>__<what_is_wrong>.py with a graded function of {lesson}: {path.name}"
    result = graded[path]
    assert result.error is None, result.error
    scores = result.function_scores()
    got, most = scores[function]
    assert got < most, f"{path.name} keeps full points on {function} (seed {SEED}): the checks miss this mistake"
    collateral = {name: s for name, s in scores.items() if name != function and s[0] < s[1]}
    details = [f"{c.name}: {c.output.splitlines()[0] if c.output else c.status}"
               for c in result.checks if c.function in collateral and c.status != "passed"]
    assert not collateral, f"{path.name} broke only {function} but lost points on {collateral}: {details}"


def test_a_wrong_sign_in_grad_reverse_costs_points_on_grad_reverse_only(graded):
    """GRLNet calls grad_reverse: its checks run it with the reference grad_reverse, so GRLNet keeps full marks."""
    result = graded[ROOT / "tests" / "mutants" / "04_debiasing" / "grad_reverse__no_sign_flip.py"]
    assert result.error is None, result.error
    scores = result.function_scores()
    assert scores["grad_reverse"][0] < scores["grad_reverse"][1]
    grl = [c for c in result.checks if c.function == "GRLNet"]
    assert grl and all(c.status == "passed" for c in grl), [(c.name, c.status, c.output[:200]) for c in grl]
    assert scores["GRLNet"][1] > 0 and scores["GRLNet"][0] == pytest.approx(scores["GRLNet"][1])
    assert all(got == pytest.approx(most) for name, (got, most) in scores.items() if name != "grad_reverse"), scores


def _full_marks(result) -> None:
    failing = [f"{c.name} [{c.status}]: {c.output[:300]}" for c in result.checks if c.status != "passed"]
    assert result.error is None and result.score == pytest.approx(result.max_score) and not failing, \
        f"{result.path} (seed {SEED}): {result.error or ''}\n" + "\n".join(failing)


@pytest.mark.parametrize("path", SUBMISSIONS, ids=lambda p: p.stem)
def test_a_correct_submission_gets_full_marks(path, graded):
    _full_marks(graded[path])


@pytest.mark.parametrize("path", SUBMISSIONS, ids=lambda p: p.stem)
def test_every_check_of_a_correct_submission_is_judged_where_no_student_code_ran(path, graded):
    """Each pass comes from the judge's re-run (recorded answers, model states and probe data), never from the
    process that ran the student's code alone."""
    unjudged = [c.name for c in graded[path].checks if not c.judged]
    assert not unjudged, f"{path.stem}: passed without the judge: {unjudged}"


@pytest.mark.parametrize("lesson", COURSE.lesson_ids)
def test_the_library_reference_gets_full_marks(lesson, graded):
    (result,) = [r for p, r in graded.items() if p.name == "reference.py" and p.parent.name == lesson]
    _full_marks(result)


@pytest.mark.parametrize("lesson", COURSE.lesson_ids)
def test_an_untouched_lesson_gets_zero_without_a_grader_error(lesson, graded):
    path = COURSE.lesson_notebook(lesson)
    if not path.exists():
        pytest.skip(f"{path} is not generated yet")
    result = graded[path]
    assert result.error is None, result.error
    assert result.score == 0 and result.max_score > 0
    assert all(c.status == "failed" and "not implemented yet" in c.output for c in result.checks), \
        [c.output for c in result.checks if "not implemented yet" not in c.output]


def test_grading_every_solution_notebook_gives_full_marks(tmp_path):
    notebooks = [str(ROOT / "solutions" / COURSE.lesson(lesson).notebook) for lesson in LESSONS]
    done = subprocess.run([sys.executable, "-m", "shortcutlab", "grade", "--json", "--quiet", "--seed", str(SEED),
                           "--out", str(tmp_path / "grades"), *notebooks], capture_output=True, text=True, cwd=ROOT,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    document = json.loads(done.stdout)
    assert sorted(r["lesson"] for r in document["submissions"]) == sorted(LESSONS), done.stderr[-2000:]
    for result in document["submissions"]:
        failing = [f"{c['name']}: {c['output'][:300]}" for c in result["checks"] if c["status"] != "passed"]
        assert result["error"] is None and result["score"] == result["max_score"] and not failing, \
            f"{result['path']}: {result['error']} {failing}"


def test_mutation_score(graded):
    """Print killed / total mutants per lesson (the per-mutant tests above assert each kill); at least one per
    graded function is graded."""
    killed: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    covered: dict[str, set[str]] = defaultdict(set)
    for path in MUTANTS:
        lesson, function = path.parent.name, path.stem.partition("__")[0]
        got, most = graded[path].function_scores().get(function, (0.0, 0.0))
        killed[lesson][0] += got < most
        killed[lesson][1] += 1
        covered[lesson].add(function)
    lines, uncovered = [], []
    for lesson, (dead, total) in sorted(killed.items()):
        missing = sorted(set(COURSE.lesson(lesson).functions) - covered[lesson])
        uncovered += missing
        lines.append(f"{lesson}: {dead}/{total} mutants killed ({100 * dead / total:.0f}%)"
                     + (f"; no mutant of {', '.join(missing)}" if missing else ""))
    print("\nmutation score (seed %d):\n  " % SEED + "\n  ".join(lines))
    assert sorted(killed) == sorted(LESSONS) and not uncovered, f"graded functions without a mutant: {uncovered}"
    assert all(dead == total for dead, total in killed.values())
