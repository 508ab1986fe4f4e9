"""Does `shortcutlab export-nbgrader` give a course root nbgrader can release, autograde and export, with the
same scores as `shortcutlab grade`; do check cells score partial credit under nbgrader autograde?"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import make_toy_course

import shortcutlab
from shortcutlab.cli import main
from shortcutlab.course import CourseError, load_course
from shortcutlab.grading.integrations.nbgrader import COURSE_FOLDER, export_nbgrader, generate_assignment_preprocessors
from shortcutlab.grading.integrations.notebook import ChecksFailed, check_in_notebook
from shortcutlab.install_cell import INSTALL_CELL_ID
from shortcutlab.release import ANSWER_PROMPT, with_generated_cells

ROOT = Path(__file__).resolve().parents[1]
LESSON = "00_colored_mnist"  # the lightest lesson: its exploration cells take seconds

@pytest.fixture()
def toy(tmp_path) -> Path:
    return make_toy_course(tmp_path)


# ----------------------------------------------------------------------------- the course root


def test_export_lays_out_config_sources_and_the_courses_checks(tmp_path, monkeypatch):
    root = tmp_path / "nbgrader"
    assert main(["export-nbgrader", str(root), "--lessons", f"{LESSON},03_gradcam"]) == 0
    assert sorted(p.name for p in (root / "source").iterdir()) == [LESSON, "03_gradcam"]
    source = root / "source" / LESSON / f"{LESSON}.ipynb"
    # the solution notebook, with the install cell and the expected output under each example (as in the lesson)
    solution = nbformat.read(ROOT / "solutions" / f"{LESSON}.ipynb", as_version=4)
    assert source.read_text(encoding="utf-8") == nbformat.writes(
        with_generated_cells(solution, edition=load_course(ROOT / "course.yml").student_edition), version=4) + "\n"
    assert [c.id for c in nbformat.read(source, as_version=4).cells
            if not c.id.endswith("-expected") and c.id != INSTALL_CELL_ID] == [c.id for c in solution.cells]
    copied = load_course(root / COURSE_FOLDER / "course.yml")
    assert all(copied.check_file(lesson).is_file() for lesson in copied.lessons)

    from traitlets.config import Config

    config = Config()
    monkeypatch.setenv("SHORTCUTLAB_COURSE", "overwritten by the config")  # restored after the test
    config_file = root / "nbgrader_config.py"
    exec(compile(config_file.read_text(), str(config_file), "exec"),  # noqa: S102 - our own generated file
         {"get_config": lambda: config, "__file__": str(config_file)})
    assert Path(os.environ["SHORTCUTLAB_COURSE"]) == (root / COURSE_FOLDER / "course.yml").resolve()
    assert config.CourseDirectory.root == str(root.resolve()) and config.Execute.timeout >= 300
    steps = [step.__name__ for step in config.GenerateAssignment.preprocessors]
    assert "ClearSolutionsKeepingHints" in steps and "ClearSolutions" not in steps and "SaveCells" in steps


def check_points(path: Path) -> dict[str, float]:
    return {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"]["points"]
            for c in nbformat.read(path, as_version=4).cells if c.metadata.get("nbgrader", {}).get("grade")}


def test_export_takes_points_from_the_course_file_it_is_given(tmp_path):
    """Points come from course.yml even when solutions/ was not released again; the course copied is that file."""
    course_dir = tmp_path / "course"
    (course_dir / "solutions").mkdir(parents=True)
    shutil.copytree(ROOT / "autograder", course_dir / "autograder")
    shutil.copyfile(ROOT / "solutions" / "03_gradcam.ipynb", course_dir / "solutions" / "03_gradcam.ipynb")
    changed = (ROOT / "course.yml").read_text().replace("grad_cam: {points: 5,", "grad_cam: {points: 7,")
    changed = changed.replace("answers: {q1: {points: 1}, q2: {points: 1}, q3: {points: 1}, q4: {points: 1}}",
                              "answers: {q1: {points: 3}, q2: {points: 1}, q3: {points: 1}, q4: {points: 1}}")
    (course_dir / "course.yml").write_text("stale: a file export must not copy\n")
    (course_dir / "points.yml").write_text(changed)
    root = tmp_path / "nbgrader"
    assert main(["export-nbgrader", str(root), "--lessons", "03_gradcam", "--course",
                 str(course_dir / "points.yml")]) == 0
    assert check_points(root / "source" / "03_gradcam" / "03_gradcam.ipynb") == {
        "check_grad_cam": 7, "answer_q1": 3, "answer_q2": 1, "answer_q3": 1, "answer_q4": 1}
    assert (root / COURSE_FOLDER / "course.yml").read_text() == changed
    assert load_course(root / COURSE_FOLDER / "course.yml").function("03_gradcam", "grad_cam").points == 7


@pytest.mark.parametrize("lesson", ["01_cheater", "04_debiasing"])
def test_nbgraders_student_stubs_keep_the_hints_lessons_give(lesson):
    """generate_assignment's ClearSolutions (as the exported config sets it) writes release's stubs."""
    nb = nbformat.read(ROOT / "solutions" / f"{lesson}.ipynb", as_version=4)
    step = next(step for step in generate_assignment_preprocessors() if step.__name__ == "ClearSolutionsKeepingHints")
    nb, _ = step().preprocess(nb, {})
    stubs = {c.id: c for c in nbformat.read(ROOT / "lessons" / f"{lesson}.ipynb", as_version=4).cells}
    solution_cells = [i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("solution")]
    assert solution_cells
    for index in solution_cells:
        assert nb.cells[index].source == stubs[nb.cells[index].id].source
        if nb.cells[index].cell_type == "markdown":  # a written answer: release's prompt, no model answer
            assert nb.cells[index].source == ANSWER_PROMPT
        else:
            assert 'raise NotImplementedError("' in nb.cells[index].source


def test_exporting_an_unknown_lesson_is_an_error_naming_the_lessons(tmp_path):
    with pytest.raises(CourseError, match="choose one of"):
        export_nbgrader(tmp_path, lessons=["42_nope"])


# ----------------------------------------------------------------------------- check cells under autograde


def test_a_check_cell_run_in_a_kernel_under_autograde_awards_nothing_and_says_to_export_again(toy, monkeypatch,
                                                                                                capsys):
    """Points under autograde come from the engine only: a kernel's check cell (an old course root's config) is
    forgeable, so it scores 0, on stdout (nbgrader gives 0 to a cell writing to stderr anyway)."""
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert check_in_notebook("90_toy.scale", lambda x, k: x * k, course=toy) == 0.0
    assert shortcutlab.check("90_toy.scale", lambda x, k: x * k, course=toy) == 0.0
    printed = capsys.readouterr()
    assert printed.err == "" and printed.out.count("shortcutlab export-nbgrader") == 2


def test_fill_check_cells_gives_each_check_cell_its_report_and_points_and_an_error_when_not_graded(toy):
    from shortcutlab.grading.engine.runner import grade
    from shortcutlab.grading.integrations.nbgrader import NOT_GRADED, checked_function, fill_check_cells

    course = load_course(toy)
    submission = toy.parent / "90_toy.py"
    submission.write_text("def scale(x, k):\n    return x * k if x < 100 else 0\n\ndef add(a, b):\n    return a + b\n")
    result = grade([submission], lesson="90_toy", seed=3, course=course, jobs=1, warn=lambda m: None).submissions[0]
    cells = [nbformat.v4.new_code_cell(source) for source in
             ('shortcutlab.check("90_toy.scale", scale)', "print('exploring')", "shortcutlab.check(x)")]
    cells[0].metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "check_scale", "points": 2}
    cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="stale\n")]
    cells[2].metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "check_add", "points": 3}
    assert [checked_function(c) for c in cells] == ["scale", None, "add"]
    notebook = nbformat.v4.new_notebook(cells=cells)
    fill_check_cells(notebook, result, course)
    report, points = notebook.cells[0].outputs
    assert "1/2 checks passed" in report["text"] and "hidden check (failed)" in report["text"]
    assert "secret" not in report["text"] and points["data"]["text/plain"] == "1.0"  # the hidden check failed
    assert notebook.cells[1].outputs == [] and notebook.cells[2].outputs[1]["data"]["text/plain"] == "3.0"
    import dataclasses

    fill_check_cells(notebook, dataclasses.replace(result, error="the notebook is not valid JSON"), course)
    assert [o["output_type"] for o in notebook.cells[0].outputs] == ["error"]
    assert notebook.cells[0].outputs[0]["ename"] == NOT_GRADED


def test_outside_autograde_a_check_cell_still_raises(toy, monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "validate")
    with pytest.raises(ChecksFailed):
        check_in_notebook("90_toy.scale", lambda x, k: 0, course=toy)


# ----------------------------------------------------------------------------- the round trip


def nbgrader(root: Path, *args: str) -> subprocess.CompletedProcess:
    executable = Path(sys.executable).with_name("nbgrader")
    if not executable.exists():
        pytest.skip("nbgrader is not installed (pip install -e '.[test]')")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SHORTCUTLAB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYDEVD_DISABLE_FILE_VALIDATION": "1",
           # nbgrader runs `alembic` from PATH: the environment's scripts must come first, activated or not
           "PATH": os.pathsep.join([str(executable.parent), os.environ.get("PATH", "")])}
    env.pop("SHORTCUTLAB_COURSE", None)
    done = subprocess.run([str(executable), *args], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def csv_scores(path: Path) -> dict[str, tuple[float, float]]:
    return {row["student_id"]: (float(row["raw_score"]), float(row["max_score"]))
            for row in csv.DictReader(path.open()) if row["assignment"] == LESSON}


def without_exploration(text: str) -> str:
    """The notebook without its exploration code cells (neither setup nor nbgrader cells), as a student may
    delete them: nbgrader then runs only what is graded. (tests/test_notebooks.py runs whole notebooks.)"""
    notebook = json.loads(text)
    notebook["cells"] = [c for c in notebook["cells"] if c["cell_type"] != "code" or "nbgrader" in c["metadata"]
                         or "setup" in c["metadata"].get("tags", [])]
    return json.dumps(notebook, indent=1)


@pytest.mark.slow
@pytest.mark.heavy  # make test-slow: a whole nbgrader round (the README's round stays in make test)
def test_nbgrader_round_trip_gives_the_same_scores_as_shortcutlab_grade(tmp_path, capsys):
    """Change points in (a copy of) course.yml, then release -> export -> generate_assignment -> autograde (a
    solution, an untouched lesson, a solution missing one clamp, which a visible check names) -> export
    CSV: the solution gets the new full marks, and shortcutlab grade on the same notebooks agrees. Written
    answers are nbgrader's manually graded cells: an answered one needs a manual grade, an untouched prompt
    scores 0, and both count in max_score as in shortcutlab grade's (0 until graded by hand)."""
    course_dir = tmp_path / "course_repo"
    for folder in ("solutions", "lessons"):
        (course_dir / folder).mkdir(parents=True)
        shutil.copyfile(ROOT / folder / f"{LESSON}.ipynb", course_dir / folder / f"{LESSON}.ipynb")
    shutil.copytree(ROOT / "autograder", course_dir / "autograder")
    text = (ROOT / "course.yml").read_text()
    assert "assign_colors: {points: 4," in text
    course_file = course_dir / "course.yml"
    course_file.write_text(text.replace("assign_colors: {points: 4,", "assign_colors: {points: 6,"))  # 12 -> 14
    release = ["release", "--course", str(course_file), "--solutions", str(course_dir / "solutions"),
               "--lessons", str(course_dir / "lessons")]
    assert main([*release, "--check"]) == 1  # the notebooks still say 4
    assert main(release) == 0 and main([*release, "--check"]) == 0

    root = tmp_path / "course"
    assert main(["export-nbgrader", str(root), "--lessons", LESSON, "--course", str(course_file)]) == 0
    nbgrader(root, "generate_assignment", LESSON)
    released = (root / "release" / LESSON / f"{LESSON}.ipynb").read_text()
    assert "BEGIN SOLUTION" not in released and "NotImplementedError" in released
    # students get the same stubs, hints included, as lessons/
    ours_nb = nbformat.read(course_dir / "lessons" / f"{LESSON}.ipynb", as_version=4)
    theirs_nb = nbformat.reads(released, as_version=4)
    stub_cells = [i for i, c in enumerate(ours_nb.cells) if c.metadata.get("nbgrader", {}).get("solution")]
    assert [theirs_nb.cells[i].source for i in stub_cells] == [ours_nb.cells[i].source for i in stub_cells]
    assert "YOUR CODE HERE" not in released and "YOUR ANSWER HERE" not in released

    solution = (root / "source" / LESSON / f"{LESSON}.ipynb").read_text()
    unclamped = solution.replace(".clamp(0, 1)", "")
    assert unclamped != solution
    for student, text in (("alice", solution), ("bob", released), ("carol", unclamped)):
        folder = root / "submitted" / student / LESSON
        folder.mkdir(parents=True)
        (folder / f"{LESSON}.ipynb").write_text(without_exploration(text))
        (folder / "timestamp.txt").write_text("2024-05-01 10:00:00.000000 UTC")
    nbgrader(root, "autograde", LESSON)
    nbgrader(root, "export")
    theirs = csv_scores(root / "grades.csv")
    answers = sum(spec.points for spec in load_course(course_file).lesson(LESSON).answers.values())
    assert answers == 4  # the check cells score as before; the answers add to max_score only
    assert theirs["alice"] == (14.0, 18.0) and theirs["bob"] == (0.0, 18.0)
    assert 0 < theirs["carol"][0] < 14 and theirs["carol"][1] == 18.0
    from nbgrader.api import Gradebook as NbgraderGradebook

    with NbgraderGradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        alice = gradebook.find_submission_notebook(LESSON, LESSON, "alice")
        bob = gradebook.find_submission_notebook(LESSON, LESSON, "bob")
        assert alice.needs_manual_grade and not bob.needs_manual_grade  # bob left the prompts as they were
        manual = {g.name: (g.score, g.max_score, g.needs_manual_grade) for g in alice.grades
                  if g.name.startswith("answer_")}
        assert manual == {f"answer_q{n}": (0.0, 1.0, True) for n in range(1, 5)}
        assert {g.name: g.score for g in alice.grades if g.name.startswith("check_")} == {
            "check_assign_colors": 6.0, "check_smooth_texture": 3.0, "check_colorize": 3.0,
            "check_color_given_digit": 2.0}

    capsys.readouterr()
    assert main(["grade", str(root / "submitted"), "--out", str(tmp_path / "grades"), "--jobs", "2",
                 "--course", str(course_file), "--quiet", "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    ours = csv_scores(tmp_path / "grades" / "grades.csv")
    assert ours == theirs
    answered = (tmp_path / "grades" / "answers" / f"{LESSON}.md").read_text()
    assert "### alice: awaiting manual grading" in answered and "### bob: no answer" in answered
    rows = list(csv.DictReader((tmp_path / "grades" / "grades.csv").open()))
    assert {r["timestamp"].removesuffix(" UTC") for r in rows} == {"2024-05-01 10:00:00.000000"}
    assert all(s["error"] is None for s in run["submissions"])

    autograded = json.loads((root / "autograded" / "carol" / LESSON / f"{LESSON}.ipynb").read_text())
    outputs = json.dumps(autograded["cells"])
    assert "clamp the result" in outputs  # a visible check's message reaches the student, hint included


# ----------------------------------------------------------------------------- hostile notebooks under autograde

HOSTILE_LESSON = "03_gradcam"
STUB = '''
def grad_cam(model, layer, images, targets=None):
    raise NotImplementedError
'''
HOSTILE_CELLS = {
    # the check cell's function, replaced in the kernel by one that claims every point
    "forges_check": "import shortcutlab\nshortcutlab.check = lambda *args, **kwargs: 5.0\n" + STUB,
    # the grading modules the check cell would use, patched in the kernel
    "patches_grading": (
        "import shortcutlab.grading.integrations.notebook as cells\n"
        "import shortcutlab.grading.engine.verdict as verdict\n"
        "cells.check_in_notebook = lambda *args, **kwargs: 5.0\n"
        "verdict.score = lambda planned, reports, *args, **kwargs: []\n" + STUB),
    # the library's reference, imported under the graded name
    "delegates": "from shortcutlab.interpret import grad_cam\n",
    # a tensor whose comparisons all say "equal"
    "lying_tensor": (
        "import torch\n"
        "class Liar(torch.Tensor):\n"
        "    def __eq__(self, other): return True\n"
        "    def allclose(self, *args, **kwargs): return True\n"
        "    @classmethod\n"
        "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
        "        return True if 'close' in getattr(func, '__name__', '') else super().__torch_function__(\n"
        "            func, types, args, kwargs or {})\n"
        "def grad_cam(model, layer, images, targets=None):\n"
        "    return torch.zeros(images.shape[0], *images.shape[-2:]).as_subclass(Liar)\n"),
    # the course's files and nbgrader's gradebook, written to from the notebook
    "writes_course_files": (
        "import os, pathlib\n"
        "for target in [os.environ.get('SHORTCUTLAB_COURSE', ''), {gradebook!r}, {course_file!r}, {escape!r}]:\n"
        "    try:\n"
        "        with open(target, 'a') as handle:\n"
        "            handle.write('FORGED-BY-STUDENT')\n"
        "    except OSError:\n"
        "        pass\n" + STUB),
}


@pytest.mark.slow
@pytest.mark.heavy  # make test-slow: an nbgrader round of seven notebooks
def test_under_nbgrader_autograde_no_student_cell_can_forge_its_score(tmp_path):
    """The README's commands (export-nbgrader, generate_assignment, autograde, export) on lesson 03: a notebook that
    replaces shortcutlab.check, patches the grading modules, delegates to the reference, returns a lying tensor or
    writes to the course's files and gradebook.db earns 0 automatic points; the solution earns all 5, and
    shortcutlab grade gives the same scores."""
    root = tmp_path / "nbgrader-course"
    assert main(["export-nbgrader", str(root), "--lessons", HOSTILE_LESSON]) == 0
    nbgrader(root, "generate_assignment", HOSTILE_LESSON)
    solution = json.loads((root / "source" / HOSTILE_LESSON / f"{HOSTILE_LESSON}.ipynb").read_text())
    course_file = root / COURSE_FOLDER / "course.yml"
    protected = {path: path.read_bytes() for path in (root / COURSE_FOLDER).rglob("*") if path.is_file()}
    escape = tmp_path / "escaped.txt"
    students = {"alice": None, **{name: cell.format(gradebook=str(root / "gradebook.db"),
                                                    course_file=str(course_file), escape=str(escape))
                                  if name == "writes_course_files" else cell for name, cell in HOSTILE_CELLS.items()}}
    for student, code in students.items():
        notebook = json.loads(json.dumps(solution))
        if code is not None:
            (cell,) = [c for c in notebook["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "grad_cam"]
            cell["source"] = code
        folder = root / "submitted" / student / HOSTILE_LESSON
        folder.mkdir(parents=True)
        (folder / f"{HOSTILE_LESSON}.ipynb").write_text(without_exploration(json.dumps(notebook)))
    nbgrader(root, "autograde", HOSTILE_LESSON)
    nbgrader(root, "export")
    from nbgrader.api import Gradebook as NbgraderGradebook

    with NbgraderGradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        scores = {student: {g.name: g.score for g in gradebook.find_submission_notebook(
            HOSTILE_LESSON, HOSTILE_LESSON, student).grades if g.name.startswith("check_")} for student in students}
    assert scores == {"alice": {"check_grad_cam": 5.0}, **{name: {"check_grad_cam": 0.0} for name in HOSTILE_CELLS}}
    assert not escape.exists()
    assert {path: path.read_bytes() for path in protected} == protected
    assert b"FORGED-BY-STUDENT" not in (root / "gradebook.db").read_bytes()
    autograded = json.loads((root / "autograded" / "delegates" / HOSTILE_LESSON / f"{HOSTILE_LESSON}.ipynb").read_text())
    (check,) = [c for c in autograded["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "check_grad_cam"]
    assert "0/5 points" in "".join(check["outputs"][0]["text"])
    assert main(["grade", str(root / "submitted"), "--out", str(tmp_path / "grades"), "--quiet"]) == 0
    theirs = {row["student_id"]: float(row["raw_score"]) for row in csv.DictReader((root / "grades.csv").open())}
    ours = {row["student_id"]: float(row["raw_score"])
            for row in csv.DictReader((tmp_path / "grades" / "grades.csv").open())}
    assert ours == theirs == {"alice": 5.0, **{name: 0.0 for name in HOSTILE_CELLS}}
