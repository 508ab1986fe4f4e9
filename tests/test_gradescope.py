"""Does `shortcutlab gradescope` write a bundle Gradescope can install and run: setup.sh installs the bundled
package, run_autograder grades the upload in /autograder/submission into /autograder/results/results.json
(tested against a fake /autograder tree), with the scores `shortcutlab grade` gives?"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import make_toy_course, toy_course_yml

from shortcutlab.cli import main
from shortcutlab.grading.integrations.batch import grade_class
from shortcutlab.grading.integrations.gradescope_bundle import CONFIG_FILE, run_autograder, write_bundle

ROOT = Path(__file__).resolve().parents[1]

TOY_COURSE = toy_course_yml()

UPLOAD = json.dumps({"cells": [
    {"cell_type": "code", "metadata": {"tags": ["setup"]}, "source": "LIMIT = 100", "outputs": [],
     "execution_count": None},
    {"cell_type": "code", "source": "def add(a, b):\n    return a + b\n", "outputs": [], "execution_count": None,
     "metadata": {"nbgrader": {"grade": False, "solution": True, "grade_id": "add", "schema_version": 3}}},
    {"cell_type": "code", "source": "def scale(x, k):\n    return x * k if x < LIMIT else 0\n", "outputs": [],
     "execution_count": None,
     "metadata": {"nbgrader": {"grade": False, "solution": True, "grade_id": "scale", "schema_version": 3}}},
], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@pytest.fixture()
def toy(tmp_path) -> Path:
    return make_toy_course(tmp_path / "course")


def fake_autograder(tmp_path: Path, bundle: Path, uploads: dict[str, str]) -> Path:
    """/autograder as Gradescope lays it out: the zip unpacked in source/, run_autograder copied to the top,
    the upload in submission/, an empty results/."""
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    (root / "results").mkdir()
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(root / "source")
    for name in ("run_autograder", "setup.sh"):  # zipfile does not restore permissions
        (root / "source" / name).chmod(0o755)
    (root / "run_autograder").write_bytes((root / "source" / "run_autograder").read_bytes())
    (root / "run_autograder").chmod(0o755)
    for name, text in uploads.items():
        (root / "submission" / name).write_text(text)
    return root


def run_bundle(root: Path, script: str = "run_autograder", **extra: str) -> subprocess.CompletedProcess:
    """Run a bundle script with this interpreter and the bundle's own copy of shortcutlab first on the path."""
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "SHORTCUTLAB_PYTHON": sys.executable,
           "PYTHONPATH": str(root / "source" / "package"), **extra}
    env.pop("SHORTCUTLAB_COURSE", None)
    path = root / script if script == "run_autograder" else root / "source" / script
    return subprocess.run([str(path)], env=env, capture_output=True, text=True, timeout=300, cwd=root)


# ----------------------------------------------------------------------------- the bundle


def test_the_bundle_zips_setup_run_autograder_the_package_and_the_course(tmp_path, capsys):
    folder = tmp_path / "bundle"
    assert main(["gradescope", str(folder), "--lesson", "03_gradcam"]) == 0
    assert "autograder.zip" in capsys.readouterr().out
    with zipfile.ZipFile(folder / "autograder.zip") as archive:
        names = set(archive.namelist())
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
    assert {"setup.sh", "run_autograder", CONFIG_FILE, "package/pyproject.toml", "course/course.yml",
            "course/autograder/test_03_gradcam.py", "package/shortcutlab/grading/engine/runner.py"} <= names
    assert not any("__pycache__" in name for name in names)
    assert modes["setup.sh"] & stat.S_IXUSR and modes["run_autograder"] & stat.S_IXUSR
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["lesson"] == "03_gradcam"
    # the seed of the checks' inputs is the bundle's secret, drawn for it; given, the bundle is reproducible
    other = tmp_path / "other"
    write_bundle(other, lesson="03_gradcam")
    assert json.loads((other / CONFIG_FILE).read_text())["seed"] != config["seed"]
    first, again = tmp_path / "first", tmp_path / "again"
    write_bundle(first, lesson="03_gradcam", seed=11)
    write_bundle(again, lesson="03_gradcam", seed=11)
    assert (again / "autograder.zip").read_bytes() == (first / "autograder.zip").read_bytes()


def test_setup_sh_pip_installs_the_bundled_package(tmp_path, toy):
    root = fake_autograder(tmp_path, write_bundle(tmp_path / "bundle", course=toy), {})
    done = run_bundle(root, "setup.sh", SHORTCUTLAB_SETUP_DRY_RUN="1")
    assert done.returncode == 0, done.stderr
    assert f"{sys.executable} -m pip install --no-cache-dir {root / 'source' / 'package'}" in done.stdout


def test_the_bundled_package_builds_offline(tmp_path, toy):
    pytest.importorskip("setuptools")
    bundle = tmp_path / "bundle"
    write_bundle(bundle, course=toy)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "--quiet", "-w", str(tmp_path / "wheels"), str(bundle / "package")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    wheel, = (tmp_path / "wheels").glob("shortcutlab-*.whl")
    assert "shortcutlab/grading/integrations/gradescope_bundle.py" in zipfile.ZipFile(wheel).namelist()


# ----------------------------------------------------------------------------- run_autograder


def test_run_autograder_grades_the_upload_into_results_json(tmp_path, toy):
    root = fake_autograder(tmp_path, write_bundle(tmp_path / "bundle", course=toy, lesson="90_toy"),
                           {"my notebook.ipynb": UPLOAD})
    done = run_bundle(root)
    assert done.returncode == 0, done.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 4 and results["execution_time"] > 0
    assert [(t["name"], t["score"], t["max_score"], t["status"], t["visibility"]) for t in results["tests"]] == [
        ("add: small numbers", 1.5, 1.5, "passed", "visible"),
        ("add: hidden check", 1.5, 1.5, "passed", "after_published"),
        ("scale: small", 1, 1, "passed", "visible"),
        ("scale: hidden check", 0, 1, "failed", "after_published")]
    assert "secret" not in json.dumps(results)
    probe = subprocess.run([sys.executable, "-c", "import shortcutlab; print(shortcutlab.__file__)"],
                           env={**os.environ, "PYTHONPATH": str(root / "source" / "package")},
                           capture_output=True, text=True, timeout=60, cwd=root)
    assert probe.stdout.strip().startswith(str(root / "source" / "package"))  # the bundle's copy did the grading


def test_the_bundle_takes_points_from_the_course_file_it_is_given(tmp_path, toy):
    """The course copied into the bundle is the file given (not a course.yml beside it), so its points grade."""
    (toy.parent / "points.yml").write_text(TOY_COURSE.replace("scale: {points: 2,", "scale: {points: 6,"))
    toy.write_text("stale: a file the bundle must not copy\n")
    root = fake_autograder(tmp_path, write_bundle(tmp_path / "bundle", course=toy.parent / "points.yml",
                                                  lesson="90_toy"), {"my notebook.ipynb": UPLOAD})
    assert (root / "source" / "course" / "course.yml").read_text() == (toy.parent / "points.yml").read_text()
    results = run_autograder(root, root / "source" / CONFIG_FILE)
    assert [(t["name"], t["max_score"]) for t in results["tests"]] == [
        ("add: small numbers", 1.5), ("add: hidden check", 1.5), ("scale: small", 3), ("scale: hidden check", 3)]
    assert results["score"] == 6


@pytest.mark.parametrize("uploads, message", [
    ({}, "upload one notebook for 90_toy"),
    ({"90_toy.ipynb": '{"cells": ['}, "not a valid notebook"),
])
def test_a_bad_upload_gets_0_points_and_says_why(tmp_path, toy, uploads, message):
    root = fake_autograder(tmp_path, write_bundle(tmp_path / "bundle", course=toy, lesson="90_toy"), uploads)
    results = run_autograder(root, root / "source" / CONFIG_FILE)
    assert results["score"] == 0 and message in results["output"]
    assert json.loads((root / "results" / "results.json").read_text()) == results


def test_an_upload_that_cannot_be_loaded_still_gets_results_and_never_fails_the_upload(tmp_path, toy):
    """Its code ends the grading process while loading: `shortcutlab grade` would exit 1; run_autograder writes the
    student's results.json (0 points, why) and exits 0, as Gradescope needs."""
    root = fake_autograder(tmp_path, write_bundle(tmp_path / "bundle", course=toy, lesson="90_toy"),
                           {"90_toy.py": "import os\nos._exit(3)\n"})
    done = run_bundle(root)
    assert done.returncode == 0, done.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 0 and "could not be graded normally" in results["output"]
    assert "while loading" in results["output"] and len(results["tests"]) == 4


def test_run_autograder_writes_results_even_if_python_cannot_start(tmp_path, toy):
    root = fake_autograder(tmp_path, write_bundle(tmp_path / "bundle", course=toy), {"90_toy.py": "x = 1"})
    done = run_bundle(root, SHORTCUTLAB_PYTHON=str(tmp_path / "no-python-here"))
    assert done.returncode == 0
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 0 and "tell your instructor" in results["output"]


@pytest.mark.slow
@pytest.mark.heavy  # make test-slow: a real lesson through the bundle (the toy bundle stays in make test)
def test_a_real_lesson_scores_as_shortcutlab_grade_does(tmp_path):
    """The 00_colored_mnist mutant without a clamp loses the clamp check's points, the same in both; the upload's
    unanswered written answers follow the checks as tests of their own."""
    mutant = (ROOT / "tests" / "mutants" / "00_colored_mnist" / "colorize__no_clamp.py").read_text()
    root = fake_autograder(tmp_path, write_bundle(tmp_path / "bundle", lesson="00_colored_mnist"),
                           {"submission.py": mutant})
    done = run_bundle(root)
    assert done.returncode == 0, done.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    (tmp_path / "class").mkdir()
    (tmp_path / "class" / "00_colored_mnist.py").write_text(mutant)
    ours = grade_class([tmp_path / "class"], tmp_path / "grades").report.submissions[0]
    assert results["score"] == pytest.approx(ours.score) and ours.score < 12
    checks = results["tests"][:len(ours.checks)]
    assert [t["status"] for t in checks] == ["passed" if c.status == "passed" else "failed" for c in ours.checks]


@pytest.mark.slow
@pytest.mark.heavy  # make test-slow: six uploads of a real lesson through the bundle
def test_the_hostile_notebooks_nbgrader_cannot_be_forged_with_earn_zero_through_the_bundle_too(tmp_path):
    """The notebooks of tests/test_nbgrader_export.py (replacing shortcutlab.check, patching the grading modules,
    delegating to the reference, a lying tensor, writing to the course's files and to results.json) earn 0 through
    run_autograder, the solution 5, and results.json is the grader's."""
    from test_nbgrader_export import HOSTILE_CELLS

    bundle = write_bundle(tmp_path / "bundle", lesson="03_gradcam")
    solution = json.loads((ROOT / "solutions" / "03_gradcam.ipynb").read_text())
    scores = {}
    for name, cell_code in {"solution": None, **HOSTILE_CELLS}.items():
        work = tmp_path / name
        root = work / "autograder"
        notebook = json.loads(json.dumps(solution))
        if name == "writes_course_files":
            cell_code = cell_code.format(gradebook=str(root / "results" / "results.json"),
                                         course_file=str(root / "source" / "course" / "course.yml"),
                                         escape=str(tmp_path / "escaped.txt"))
        if cell_code is not None:
            (cell,) = [c for c in notebook["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "grad_cam"]
            cell["source"] = cell_code
        root = fake_autograder(work, bundle, {"03_gradcam.ipynb": json.dumps(notebook)})
        course_before = (root / "source" / "course" / "course.yml").read_bytes()
        done = run_bundle(root)
        assert done.returncode == 0, done.stderr
        results = json.loads((root / "results" / "results.json").read_text())
        assert "FORGED" not in json.dumps(results)
        assert (root / "source" / "course" / "course.yml").read_bytes() == course_before
        scores[name] = results["score"]  # the checks' points (the written answers await manual grading: 0)
    assert not (tmp_path / "escaped.txt").exists()
    assert scores == pytest.approx({"solution": 5.0, **{name: 0.0 for name in HOSTILE_CELLS}}), scores
