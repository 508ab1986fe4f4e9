"""Does one batch of hostile lesson-00 submissions finish, grade the honest ones fully, and give the rest 0 on
exactly the checks their hostility touches, without writing a file outside the grader's scratch folders?

The submissions are tests/submissions/hostile/*, each the correct submission with one hostile change
(make_hostile.py says which, and what grading must make of it). The batch is graded twice, two at a time,
with the same seed: first in the OS sandbox where bubblewrap can run, then without it (SHORTCUTLAB_SANDBOX=none),
so that both ways of grading meet the hostile submissions; the grades must agree (bar the statuses the sandbox
changes). The second run leaves out the submission that kills its grading server: restarting the server costs
about 17 s there, so that case is graded without the sandbox only where bubblewrap cannot run. The pickle payloads are graded
from copies that also leave their marker in a folder of the test's: nothing may ever unpickle, copy or pickle them.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from shortcutlab.course import load_course
from shortcutlab.grading.engine import sandbox
from shortcutlab.grading.registry import plan_checks
from shortcutlab.grading.engine.runner import grade

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
PICKLES = ("pickle_payload", "pickle_bytes")


def _paths(pickles: Path | None = None) -> list[Path]:
    """The batch, slowest first (a grading server to restart, an endless loop), so the rest overlaps them; the
    pickle payloads from ``pickles`` if given (their copies leaving a marker there)."""
    slow = [HOSTILE_DIR / KILLER, HOSTILE_DIR / f"{LESSON}__infinite_loop.py"]
    paths = slow + [CORRECT] + sorted(p for p in HOSTILE_DIR.glob(f"{LESSON}__*") if p not in slow)
    if pickles is not None:
        for name in PICKLES:
            path = pickles / f"{LESSON}__{name}.py"
            path.write_text(make_hostile.with_marker_dir(make_hostile.hostile_source(name), str(pickles / "marker")))
            paths[paths.index(HOSTILE_DIR / path.name)] = path
    return paths


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """The batch graded twice from an empty working folder, with TMPDIR pointing at an empty folder."""
    base = tmp_path_factory.mktemp("hostile")
    cwd, tmp, pickles = base / "cwd", base / "tmp", base / "pickles"
    for folder in (cwd, tmp, pickles, pickles / "marker"):
        folder.mkdir()
    paths = _paths(pickles)
    before_repo = _repo()
    saved_cwd, saved_tmp = os.getcwd(), os.environ.get("TMPDIR")
    saved_sandbox = os.environ.pop(sandbox.SANDBOX_ENV, None)
    os.chdir(cwd)
    os.environ["TMPDIR"] = str(tmp)  # the grading servers (new processes) make their scratch folders here
    try:
        first = grade(paths, course=_course(), jobs=2, seed=SEED)
        # Again without the OS sandbox (where there is none, the first run was already without it), all but the
        # submission that kills its grading server (a server restart is the slowest thing here).
        os.environ[sandbox.SANDBOX_ENV] = sandbox.NONE
        second = grade([p for p in paths if p.name != KILLER], course=_course(), jobs=2, seed=SEED,
                       warn=lambda message: None)
    finally:
        os.environ.pop(sandbox.SANDBOX_ENV, None)
        if saved_sandbox is not None:
            os.environ[sandbox.SANDBOX_ENV] = saved_sandbox
        os.chdir(saved_cwd)
        if saved_tmp is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_tmp
    return {"first": first, "second": second, "cwd": cwd, "tmp": tmp, "paths": paths,
            "marker": pickles / "marker", "before_repo": before_repo, "after_repo": _repo(),
            "by_name": {Path(r.path).name: r for r in first.submissions},
            "by_name_second": {Path(r.path).name: r for r in second.submissions}}


def _result(batch, name: str, run: str = "first"):
    return batch["by_name" if run == "first" else "by_name_second"][f"{LESSON}__{name}.py"]


def test_the_hostile_submissions_are_generated_from_the_correct_one():
    assert make_hostile.main(["--check"]) == 0, "run python tests/submissions/hostile/make_hostile.py"


@pytest.mark.slow
def test_the_batch_finishes_and_reports_every_submission_in_order(batch):
    names = [Path(r.path).name for r in batch["first"].submissions]
    assert names == [p.name for p in batch["paths"]] and len(names) == len(HOSTILE) + len(BROKEN) + 2
    assert [Path(r.path).name for r in batch["second"].submissions] == [n for n in names if n != KILLER]
    assert {r.sandbox for r in batch["second"].submissions} == {"none"}


@pytest.mark.slow
@pytest.mark.parametrize("run", ["first", "second"])
@pytest.mark.parametrize("name", [CORRECT.name, f"{LESSON}__notebook.ipynb", f"{LESSON}__prints_50mb.py"])
def test_correct_submissions_get_full_marks_among_hostile_ones(batch, name, run):
    result = batch["by_name" if run == "first" else "by_name_second"][name]
    failing = [f"{c.name} [{c.status}]: {c.output[:300]}" for c in result.checks if c.status != "passed"]
    assert result.error is None and not failing and result.score == pytest.approx(result.max_score) == 12, failing


@pytest.mark.slow
def test_fifty_megabytes_of_printing_leave_the_feedback_short(batch):
    result = _result(batch, "prints_50mb")
    assert len(json.dumps(result.to_dict())) < 10_000


@pytest.mark.slow
@pytest.mark.parametrize("run", ["first", "second"])
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_submission_loses_exactly_the_points_its_hostility_touches(batch, name, run):
    """Every check of an untouched function passes; every check of a touched one fails (bar honest passes)."""
    if run == "second" and name == "kills_grading_server":
        pytest.skip("left out of the second run (a grading server restart is slow)")
    spec, result = HOSTILE[name], _result(batch, name, run)
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
        for run in ("first", "second"):
            result = _result(batch, name, run)
            assert result.score == 0 and all(c.status != "passed" for c in result.checks), (name, run)


@pytest.mark.slow
def test_a_pickle_payload_answer_is_never_pickled_copied_or_unpickled(batch):
    """colorize's answer is a tensor subclass, or the bytes of a pickle, that runs code (leaving a marker in the
    test's folder, printing a phrase, and unpickling into the correct answer) wherever it is pickled, copied or
    unpickled: the grader carries answers as data only, so colorize gets 0 (see above) and the code never runs."""
    assert _files(batch["marker"]) == []
    for run in ("first", "second"):
        for name in PICKLES:
            result = _result(batch, name, run)
            assert make_hostile.PICKLE_SAYS not in json.dumps(result.to_dict()), (name, run)
            assert result.function_scores()["colorize"][0] == 0 and result.error is None, (name, run)


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
    """In the sandbox and without it (where the sandbox ran first, the forger's checks are errors there rather
    than failures, see above)."""
    sandboxed = batch["first"].submissions[0].sandbox == "bubblewrap"

    def grades(report):
        return [(Path(r.path).name, r.error is None, round(r.score, 6),
                 [(c.name, c.status if not (sandboxed and "fake_results" in r.path) else "", round(c.score, 6))
                  for c in r.checks]) for r in report.submissions if Path(r.path).name != KILLER]

    assert batch["first"].seed == batch["second"].seed == SEED
    assert grades(batch["first"]) == grades(batch["second"])
