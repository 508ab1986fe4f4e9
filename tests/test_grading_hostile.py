"""Does one batch of hostile lesson-00 submissions finish, grade the honest ones fully, and give the rest 0 on
exactly the checks their hostility touches, without writing a file outside the grader's scratch folders?

The submissions are tests/submissions/hostile/*, each the correct submission with one hostile change
(make_hostile.py says which, and what grading must make of it). The batch is graded twice, two at a time,
with the same seed (the second time without the submission that kills its grading server, the slowest one
to grade): the grades must be identical.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import pytest

from shortcutlab.course import load_course
from shortcutlab.grading.registry import plan_checks
from shortcutlab.grading.runner import grade

ROOT = Path(__file__).resolve().parents[1]
HOSTILE_DIR = ROOT / "tests" / "submissions" / "hostile"
CORRECT = ROOT / "tests" / "submissions" / "00_colored_mnist.py"
LESSON = "00_colored_mnist"
SEED = 20241128
TIMEOUT = 3.0  # seconds per check (course.yml says 30): the endless loop costs one of them

_spec = importlib.util.spec_from_file_location("make_hostile", HOSTILE_DIR / "make_hostile.py")
make_hostile = importlib.util.module_from_spec(_spec)
sys.modules["make_hostile"] = make_hostile
_spec.loader.exec_module(make_hostile)
HOSTILE, BROKEN = make_hostile.HOSTILE, make_hostile.BROKEN_NOTEBOOKS


def _course():
    """course.yml with a short per-check timeout for lesson 00 and only what lesson 00 needs preloaded (so
    grading servers start faster); everything else as instructors get it."""
    course = load_course(ROOT / "course.yml")
    lessons = tuple(lesson.model_copy(update={"timeout": TIMEOUT}) if lesson.id == LESSON else lesson
                    for lesson in course.lessons)
    preload = ("numpy", "torch", "torch.nn.functional", "shortcutlab.data")
    return course.model_copy(update={"lessons": lessons,
                                     "grading": course.grading.model_copy(update={"preload": preload})})


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if "__pycache__" not in p.parts)


def _repo() -> list[str]:
    """Where a submission graded from the repository could write: its top level and the submissions."""
    return sorted(os.listdir(ROOT)) + _files(ROOT / "tests" / "submissions")


def _named_hostile(folder: Path, deep: bool = True) -> list[str]:
    found = folder.rglob("HOSTILE_*") if deep else folder.glob("HOSTILE_*")
    return [str(p) for p in found if ".venv" not in p.parts and ".git" not in p.parts]


KILLER = f"{LESSON}__kills_grading_server.py"


def _paths() -> list[Path]:
    """The batch, slowest first (a grading server to restart, an endless loop), so the rest overlaps them."""
    slow = [HOSTILE_DIR / KILLER, HOSTILE_DIR / f"{LESSON}__infinite_loop.py"]
    return slow + [CORRECT] + sorted(p for p in HOSTILE_DIR.glob(f"{LESSON}__*") if p not in slow)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """The batch graded twice from an empty working folder, with TMPDIR pointing at an empty folder."""
    base = tmp_path_factory.mktemp("hostile")
    cwd, tmp = base / "cwd", base / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    paths = _paths()
    before_repo = _repo()
    saved_cwd, saved_tmp = os.getcwd(), os.environ.get("TMPDIR")
    os.chdir(cwd)
    os.environ["TMPDIR"] = str(tmp)  # the grading servers (new processes) make their scratch folders here
    try:
        start = time.monotonic()
        first = grade(paths, course=_course(), jobs=2, seed=SEED)
        seconds = time.monotonic() - start
        # Again, all but the submission that kills its grading server (a server restart is the slowest thing
        # here; that its grade is an error both times is shown by the first run alone).
        second = grade([p for p in paths if p.name != KILLER], course=_course(), jobs=2, seed=SEED)
    finally:
        os.chdir(saved_cwd)
        if saved_tmp is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_tmp
    return {"first": first, "second": second, "seconds": seconds, "cwd": cwd, "tmp": tmp,
            "before_repo": before_repo, "after_repo": _repo(),
            "by_name": {Path(r.path).name: r for r in first.submissions}}


def _result(batch, name: str):
    return batch["by_name"][f"{LESSON}__{name}.py"]


def test_the_hostile_submissions_are_generated_from_the_correct_one():
    assert make_hostile.main(["--check"]) == 0, "run python tests/submissions/hostile/make_hostile.py"


@pytest.mark.slow
def test_the_batch_finishes_and_reports_every_submission_in_order(batch):
    names = [Path(r.path).name for r in batch["first"].submissions]
    assert names == [p.name for p in _paths()] and len(names) == len(HOSTILE) + len(BROKEN) + 2
    assert batch["seconds"] < 120, f"the hostile batch took {batch['seconds']:.0f} s"


@pytest.mark.slow
@pytest.mark.parametrize("name", [CORRECT.name, f"{LESSON}__notebook.ipynb", f"{LESSON}__prints_50mb.py"])
def test_correct_submissions_get_full_marks_among_hostile_ones(batch, name):
    result = batch["by_name"][name]
    failing = [f"{c.name} [{c.status}]: {c.output[:300]}" for c in result.checks if c.status != "passed"]
    assert result.error is None and not failing and result.score == pytest.approx(result.max_score) == 12, failing


@pytest.mark.slow
def test_fifty_megabytes_of_printing_leave_the_feedback_short(batch):
    result = _result(batch, "prints_50mb")
    assert len(json.dumps(result.to_dict())) < 10_000


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_submission_loses_exactly_the_points_its_hostility_touches(batch, name):
    """Every check of an untouched function passes; every check of a touched one fails (bar honest passes)."""
    spec, result = HOSTILE[name], _result(batch, name)
    if name == "kills_grading_server" and result.sandbox == "bubblewrap":
        # In the OS sandbox student code runs as a user of its own: it cannot signal the grading server at all, so
        # only the function that tried loses its points.
        spec = dataclasses.replace(spec, zero=("color_given_digit",), error=False, status="error",
                                   says="PermissionError")
    if name == "fake_results" and result.sandbox == "bubblewrap":
        # Its forging code reads course.yml, which the sandbox does not show: that ends its file's loading there,
        # so its stubs are not even defined (still 0 everywhere, as errors rather than failures).
        spec = dataclasses.replace(spec, status="error", says="is not defined in your submission")
    if spec.error:
        assert result.error and spec.says in result.error, result.error
    else:
        assert result.error is None, result.error
    for check in result.checks:
        should_pass = check.function not in spec.zero or check.name in spec.still_passes
        assert (check.status == "passed") == should_pass, f"{check.name} [{check.status}]: {check.output[:400]}"
        if not should_pass and not spec.error:
            if spec.status:
                assert check.status == spec.status, f"{check.name}: {check.output[:400]}"
            assert spec.says in check.output, f"{check.name}: {check.output[:400]}"
    scores = result.function_scores()
    for function in spec.zero:
        if not any(c.function == function and c.name in spec.still_passes for c in result.checks):
            assert scores[function][0] == 0, (function, scores[function])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_malformed_notebook_gets_zero_and_an_error_saying_what_is_wrong(batch, name):
    result = batch["by_name"][f"{LESSON}__{name}.ipynb"]
    assert result.error and BROKEN[name][1] in result.error, result.error
    assert result.score == 0 and result.max_score == pytest.approx(12)
    assert len(result.checks) == len(plan_checks(_course(), LESSON))


@pytest.mark.slow
def test_forged_results_and_patched_graders_never_make_a_check_pass(batch):
    """Printed, written and sprayed fake result lines; a grader whose check runner always says passed."""
    for name in ("fake_results", "patched_grader"):
        result = _result(batch, name)
        assert result.score == 0 and all(c.status != "passed" for c in result.checks), name


@pytest.mark.slow
def test_a_patched_reference_is_caught_by_the_re_run_where_no_student_code_ran(batch):
    result = _result(batch, "patched_reference")
    failing = [c for c in result.checks if c.function == "color_given_digit"]
    assert failing and all(c.status == "failed" for c in failing)
    assert any("P(color | digit)" in c.output for c in failing), [c.output for c in failing]


@pytest.mark.slow
def test_nothing_is_written_outside_the_scratch_folders(batch):
    """The forging submission writes files into its working, temp and home folders: all are its scratch
    folder, removed afterwards; the working folder, TMPDIR and the repository stay as they were."""
    assert _files(batch["cwd"]) == []
    assert _files(batch["tmp"]) == [], "a scratch folder was left behind"
    assert batch["after_repo"] == batch["before_repo"]
    assert _named_hostile(ROOT / "tests") == [] and _named_hostile(ROOT, deep=False) == []
    assert _named_hostile(Path.home(), deep=False) == []


@pytest.mark.slow
def test_grading_the_same_batch_twice_with_the_same_seed_gives_identical_grades(batch):
    def grades(report):
        return [(Path(r.path).name, r.error is None, round(r.score, 6),
                 [(c.name, c.status, round(c.score, 6)) for c in r.checks]) for r in report.submissions]

    assert batch["first"].seed == batch["second"].seed == SEED
    assert [g for g in grades(batch["first"]) if g[0] != KILLER] == grades(batch["second"])


LYING_TENSOR = '''
import torch


class Liar(torch.Tensor):
    """Answers every comparison a check could make with 'equal'."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in ("allclose", "equal"):
            return True
        if name in ("isclose", "eq", "__eq__"):
            return torch.ones((), dtype=torch.bool)
        return super().__torch_function__(func, types, args, kwargs or {})


def grad_cam(model, layer, images, targets=None):
    return torch.full((images.shape[0], images.shape[2], images.shape[3]), 0.01){wrap}
'''


def test_a_lying_tensor_subclass_earns_no_more_than_the_plain_tensor_it_wraps(tmp_path):
    """A grad_cam whose (near-blank) map is a tensor subclass answering every comparison with 'equal' scores
    exactly what the same map as a plain tensor scores: checks run with subclass overrides switched off."""
    from shortcutlab.grading.runner import grade

    liar, plain = tmp_path / "liar_03_gradcam.py", tmp_path / "plain_03_gradcam.py"
    liar.write_text(LYING_TENSOR.replace("{wrap}", ".as_subclass(Liar)"))
    plain.write_text(LYING_TENSOR.replace("{wrap}", ""))
    report = grade([liar, plain], lesson="03_gradcam", jobs=2, seed=5, course=load_course(ROOT / "course.yml"))
    lying, honest = report.submissions
    assert lying.error is None and honest.error is None
    assert [c.status for c in lying.checks] == [c.status for c in honest.checks]
    assert lying.score == honest.score < lying.max_score / 2
