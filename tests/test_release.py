"""Does `shortcutlab release` make lessons from solutions exactly and reproducibly; do notebooks keep the contract?"""
from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path

import nbformat
import pytest

from shortcutlab.cli import main
from shortcutlab.course import load_course
from shortcutlab.errors import ShortcutlabError
from shortcutlab.cells import EXAMPLE_TAG
from shortcutlab.install_cell import INSTALL_CELL_ID
from shortcutlab.release import (DEFAULT_HINT, EXPECTED_SUMMARY, NotebookError, check_release, points_problems, release,
                                 release_notebook, release_text, stub_source)

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS, LESSONS = ROOT / "solutions", ROOT / "lessons"
CHECK_CALL = re.compile(r'^shortcutlab\.check\("(?P<lesson>[\w]+)\.(?P<function>\w+)", (?P<argument>\w+)\)$')


def contract_functions() -> dict[str, list[str]]:
    """Lesson id -> graded function names, read from the table in docs/grading-contract.md."""
    table = {}
    for line in (ROOT / "docs" / "grading-contract.md").read_text().splitlines():
        match = re.match(r"^\| (\d\d_\w+) \| (.+) \|$", line)
        if match:
            # "a, b (shortcutlab.x); c (shortcutlab.y)" -> [a, b, c]
            names = re.sub(r"\([^)]*\)", "", match.group(2))
            table[match.group(1)] = [n.strip() for n in re.split(r"[,;]", names) if n.strip()]
    return table


CONTRACT = contract_functions()


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def make_notebook(*cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    for index, cell in enumerate(cells):
        cell.id = f"c{index}"
    nb.cells = list(cells)
    return nb


SOLUTION_SOURCE = '''class Model:
    """A docstring that stays."""

    def forward(self, x):
        """Also stays."""
        y = x + 1
        ### BEGIN SOLUTION
        ### HINT: add "two", then double
        z = y + 2
        return 2 * z
        ### END SOLUTION'''


def solution_cell(source: str = SOLUTION_SOURCE, grade_id: str = "Model") -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False, "grade_id": grade_id,
                                 "schema_version": 3}
    return cell


def executed(cell: nbformat.NotebookNode, count: int = 3) -> nbformat.NotebookNode:
    cell.execution_count = count
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    cell.metadata["execution"] = {"iopub.status.busy": "2024-01-01T00:00:00"}
    return cell


def write(path: Path, nb: nbformat.NotebookNode) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


# ----------------------------------------------------------------------------- stubs


def test_a_region_becomes_a_raise_with_the_hint_at_the_region_indentation():
    stub = stub_source(SOLUTION_SOURCE)
    assert stub.splitlines() == [
        "class Model:",
        '    """A docstring that stays."""',
        "",
        "    def forward(self, x):",
        '        """Also stays."""',
        "        y = x + 1",
        '        raise NotImplementedError("add \\"two\\", then double")',
    ]
    namespace: dict = {}
    exec(stub, namespace)  # the stub is valid Python and raises the hint
    with pytest.raises(NotImplementedError, match='add "two", then double'):
        namespace["Model"]().forward(1)


def test_each_region_of_a_cell_gets_its_own_stub_and_a_missing_hint_gets_the_default():
    source = ("def f():\n    ### BEGIN SOLUTION\n    ### HINT: first\n    return 1\n    ### END SOLUTION\n\n\n"
              "def g():\n    ### BEGIN SOLUTION\n    return 2\n    ### END SOLUTION\n")
    stub = stub_source(source)
    assert stub == (f'def f():\n    raise NotImplementedError("first")\n\n\n'
                    f'def g():\n    raise NotImplementedError("{DEFAULT_HINT}")\n')
    ast.parse(stub)


def test_code_outside_regions_is_left_byte_for_byte():
    source = "import torch\n\nX = 3  # a constant\n"
    assert stub_source(source) == source


@pytest.mark.parametrize("source, problem", [
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "without a matching"),
    ("def f():\n    return 1\n    ### END SOLUTION\n", "without a ### BEGIN"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n", "inside another"),
])
def test_unbalanced_regions_raise_an_error_naming_the_cell(source, problem):
    with pytest.raises(NotebookError, match=problem) as info:
        stub_source(source, where="lesson.ipynb, cell 4 (id 'f')")
    assert "lesson.ipynb, cell 4 (id 'f')" in str(info.value)
    assert isinstance(info.value, ShortcutlabError)


# ----------------------------------------------------------------------------- notebooks


def test_release_strips_outputs_and_keeps_metadata_ids_and_markdown(tmp_path):
    setup = executed(nbformat.v4.new_code_cell("import math"), 1)
    setup.metadata["tags"] = ["setup"]
    check = executed(nbformat.v4.new_code_cell('shortcutlab.check("x.Model", Model)'), 2)
    check.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": 3,
                                  "grade_id": "check_Model", "schema_version": 3}
    text = nbformat.v4.new_markdown_cell("# Title\n\n$x^2$ and ### BEGIN SOLUTION in prose stays")
    solutions = tmp_path / "solutions"
    write(solutions / "x.ipynb", make_notebook(text, setup, executed(solution_cell()), check))

    assert release(solutions, tmp_path / "lessons") == [tmp_path / "lessons" / "x.ipynb"]
    lesson = read(tmp_path / "lessons" / "x.ipynb")
    assert [c.id for c in lesson.cells] == ["c0", "c1", "c2", "c3"]
    assert lesson.cells[0].source == text.source
    for cell in lesson.cells[1:]:
        assert cell.outputs == [] and cell.execution_count is None and "execution" not in cell.metadata
    assert lesson.cells[1].metadata == {"tags": ["setup"]}
    assert lesson.cells[2].metadata["nbgrader"]["grade_id"] == "Model"
    assert "raise NotImplementedError" in lesson.cells[2].source and "z = y + 2" not in lesson.cells[2].source
    assert lesson.cells[3].metadata["nbgrader"]["points"] == 3
    assert lesson.metadata["kernelspec"]["name"] == "python3"


def example_cell(source: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = [EXAMPLE_TAG]
    return cell


def test_release_shows_after_each_example_what_it_prints_with_the_solution_collapsed_and_only_there(tmp_path):
    setup = nbformat.v4.new_code_cell("OFFSET = 10")
    setup.metadata["tags"] = ["setup"]
    solution = solution_cell("def add(a):\n    ### BEGIN SOLUTION\n    ### HINT: add the offset\n    return a + OFFSET\n"
                             "    ### END SOLUTION", grade_id="add")
    explore = nbformat.v4.new_code_cell("raise RuntimeError('release must not run explore cells')")
    nb = make_notebook(setup, solution, example_cell("print(add(1))\nprint(add(2))"), explore,
                       example_cell("print([add(3)])"))
    lesson = release_notebook(nb, "x.ipynb")
    assert [c.id for c in lesson.cells] == ["c0", "c1", "c2", "c2-expected", "c3", "c4", "c4-expected"]
    assert lesson.cells[3].source == f"<details>\n<summary>{EXPECTED_SUMMARY}</summary>\n\n```\n11\n12\n```\n\n</details>"
    assert "[13]" in lesson.cells[6].source and lesson.cells[6].cell_type == "markdown"
    assert "raise NotImplementedError" in lesson.cells[1].source  # the lesson's example calls the stub


def test_an_example_that_fails_with_the_solution_is_an_error_naming_its_cell():
    nb = make_notebook(solution_cell("def add(a):\n    ### BEGIN SOLUTION\n    return a\n    ### END SOLUTION", "add"),
                       example_cell("print(add(1, 2))"))
    with pytest.raises(NotebookError, match=r"x\.ipynb, cell 1 .*TypeError"):
        release_notebook(nb, "x.ipynb")


def test_release_is_deterministic_and_idempotent(tmp_path):
    solutions = tmp_path / "solutions"
    write(solutions / "a.ipynb", make_notebook(executed(solution_cell())))
    write(solutions / "b.ipynb", make_notebook(nbformat.v4.new_markdown_cell("only prose")))
    first = release(solutions, tmp_path / "one")
    again = release(solutions, tmp_path / "one")
    other = release(solutions, tmp_path / "two")
    assert len(first) == 2 and again == [] and len(other) == 2
    for name in ("a.ipynb", "b.ipynb"):
        data = (tmp_path / "one" / name).read_bytes()
        assert data == (tmp_path / "two" / name).read_bytes()
        assert data.endswith(b"}\n")
        assert list(json.loads(data)) == sorted(json.loads(data))  # sorted keys
    # releasing a lesson again changes nothing: stubs contain no regions
    assert release_text(read(tmp_path / "one" / "a.ipynb")) == (tmp_path / "one" / "a.ipynb").read_text()


def test_cells_without_ids_get_stable_ids(tmp_path):
    nb = make_notebook(solution_cell())
    nb.nbformat_minor = 4
    raw = json.loads(nbformat.writes(nb))
    for cell in raw["cells"]:
        del cell["id"]
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps(raw))
    texts = {release_text(read(path), str(path)) for _ in range(2)}
    assert len(texts) == 1
    assert json.loads(texts.pop())["cells"][0]["id"] == "cell-0"


def test_check_reports_stale_missing_and_orphaned_lessons_without_writing(tmp_path, capsys):
    solutions, lessons = tmp_path / "solutions", tmp_path / "lessons"
    course = load_course(ROOT / "course.yml")  # what the command line releases with
    write(solutions / "a.ipynb", make_notebook(solution_cell()))
    write(solutions / "b.ipynb", make_notebook(solution_cell()))
    release(solutions, lessons, course)
    assert check_release(solutions, lessons, course) == []
    assert main(["release", "--solutions", str(solutions), "--lessons", str(lessons), "--check"]) == 0

    write(solutions / "a.ipynb", make_notebook(solution_cell(SOLUTION_SOURCE.replace("double", "triple"))))
    (lessons / "b.ipynb").unlink()
    write(lessons / "orphan.ipynb", make_notebook())
    before = {p.name: p.read_bytes() for p in lessons.iterdir()}
    assert check_release(solutions, lessons, course) == ["a.ipynb", "b.ipynb", "orphan.ipynb"]
    assert main(["release", "--solutions", str(solutions), "--lessons", str(lessons), "--check"]) == 1
    err = capsys.readouterr().err
    assert "a.ipynb" in err and "b.ipynb" in err and "orphan.ipynb" in err
    assert {p.name: p.read_bytes() for p in lessons.iterdir()} == before

    assert main(["release", "--solutions", str(solutions), "--lessons", str(lessons)]) == 0
    assert check_release(solutions, lessons, course) == ["orphan.ipynb"]  # never deletes a file it did not write


def test_malformed_notebooks_raise_errors_naming_notebook_and_cell_and_write_nothing(tmp_path, capsys):
    solutions, lessons = tmp_path / "solutions", tmp_path / "lessons"
    write(solutions / "good.ipynb", make_notebook(solution_cell()))
    (solutions / "broken.ipynb").write_text('{"cells": [')
    with pytest.raises(NotebookError, match=r"broken\.ipynb is not a valid notebook"):
        release(solutions, lessons)
    assert not lessons.exists()
    assert main(["release", "--solutions", str(solutions), "--lessons", str(lessons)]) == 2
    assert "broken.ipynb" in capsys.readouterr().err

    (solutions / "broken.ipynb").unlink()
    unclosed = solution_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n")
    write(solutions / "open.ipynb", make_notebook(nbformat.v4.new_markdown_cell("x"), unclosed))
    with pytest.raises(NotebookError, match=r"open\.ipynb, cell 1 \(id 'c1'\).*without a matching"):
        release(solutions, lessons)
    assert not lessons.exists()


def test_a_missing_solutions_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ShortcutlabError, match="does not exist"):
        release(tmp_path / "nope", tmp_path / "lessons")


# ----------------------------------------------------------------------------- points come from course.yml


TINY_COURSE = """\
version: 1
title: Tiny
lessons:
  - id: 90_x
    title: X
    notebook: x.ipynb
    functions:
      Model: {points: POINTS, reference: operator.add}
"""


def tiny_course(tmp_path: Path, points: float = 3):
    path = tmp_path / "course.yml"
    path.write_text(TINY_COURSE.replace("POINTS", str(points)))
    return load_course(path)


def check_cell(function: str = "Model", points: float = 3, lesson: str = "90_x") -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(f'shortcutlab.check("{lesson}.{function}", {function})')
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": points,
                                 "grade_id": f"check_{function}", "schema_version": 3}
    return cell


def test_release_writes_course_points_into_solutions_and_lessons(tmp_path):
    solutions, lessons = tmp_path / "solutions", tmp_path / "lessons"
    write(solutions / "x.ipynb", make_notebook(solution_cell(), check_cell(points=3)))
    write(solutions / "other.ipynb", make_notebook(solution_cell(), check_cell(points=9)))  # no lesson: left alone
    release(solutions, lessons, tiny_course(tmp_path, 3))
    before = (solutions / "x.ipynb").read_text()
    assert points_problems(solutions, lessons, tiny_course(tmp_path, 3)) == []

    course = tiny_course(tmp_path, 4.5)
    problems = points_problems(solutions, lessons, course)
    assert problems == [f"{solutions / 'x.ipynb'}: Model has 3 points in the notebook (cell 1, check_Model) but 4.5 "
                        "in course.yml",
                        f"{lessons / 'x.ipynb'}: Model has 3 points in the notebook (cell 2, check_Model) but 4.5 "
                        "in course.yml"]  # the lesson opens with the install cell
    assert check_release(solutions, lessons, course) == ["x.ipynb"]
    assert sorted(release(solutions, lessons, course)) == [lessons / "x.ipynb", solutions / "x.ipynb"]
    for folder, index in ((solutions, 1), (lessons, 2)):
        assert read(folder / "x.ipynb").cells[index].metadata["nbgrader"]["points"] == 4.5
    # the solution notebook changed in that one value only
    assert (solutions / "x.ipynb").read_text() == before.replace('"points": 3,', '"points": 4.5,')
    assert read(solutions / "other.ipynb").cells[1].metadata["nbgrader"]["points"] == 9
    assert points_problems(solutions, lessons, course) == [] and check_release(solutions, lessons, course) == []
    assert release(solutions, lessons, course) == []  # idempotent
    release(solutions, lessons, tiny_course(tmp_path, 6.0))
    assert '"points": 6,' in (solutions / "x.ipynb").read_text()  # a whole number is written as one


def test_release_check_names_notebook_function_and_both_points_and_fails(tmp_path, capsys):
    solutions, lessons = tmp_path / "solutions", tmp_path / "lessons"
    write(solutions / "x.ipynb", make_notebook(solution_cell(), check_cell(points=3)))
    tiny_course(tmp_path, 3)
    args = ["release", "--solutions", str(solutions), "--lessons", str(lessons),
            "--course", str(tmp_path / "course.yml")]
    assert main(args) == 0 and main([*args, "--check"]) == 0
    tiny_course(tmp_path, 5)
    before = {p: p.read_bytes() for p in (solutions / "x.ipynb", lessons / "x.ipynb")}
    capsys.readouterr()
    assert main([*args, "--check"]) == 1
    err = capsys.readouterr().err
    assert f"{solutions / 'x.ipynb'}: Model has 3 points in the notebook" in err and "but 5 in course.yml" in err
    assert f"{lessons / 'x.ipynb'}: Model has 3 points" in err
    assert {p: p.read_bytes() for p in before} == before  # --check writes nothing
    assert main(args) == 0 and main([*args, "--check"]) == 0


@pytest.mark.parametrize("cells, problem", [
    ([solution_cell()], "no check cell for Model"),
    ([solution_cell(), check_cell(), check_cell()], "checks Model again"),
    ([solution_cell(), check_cell(), check_cell("Other")], "checks Other, which course.yml does not grade"),
    ([solution_cell(), check_cell(lesson="91_y")], "checks 91_y.Model, but this is lesson 90_x's notebook"),
])
def test_check_cells_must_match_the_functions_course_yml_grades(tmp_path, capsys, cells, problem):
    solutions, lessons = tmp_path / "solutions", tmp_path / "lessons"
    write(solutions / "x.ipynb", make_notebook(*cells))
    course = tiny_course(tmp_path)
    with pytest.raises(NotebookError, match=problem):
        release(solutions, lessons, course)
    assert not lessons.exists()
    assert any(problem in line for line in points_problems(solutions, lessons, course))
    assert main(["release", "--check", "--solutions", str(solutions), "--lessons", str(lessons),
                 "--course", str(tmp_path / "course.yml")]) == 1
    assert problem in capsys.readouterr().err


def test_the_repositorys_points_round_trip_through_a_copy_of_course_yml(tmp_path):
    """Change a function's points in a copy of course.yml: release --check fails, release fixes both notebooks."""
    course_file = tmp_path / "course.yml"
    course_file.write_text((ROOT / "course.yml").read_text().replace(
        "grad_cam: {points: 5,", "grad_cam: {points: 8,"))
    solutions, lessons = tmp_path / "solutions", tmp_path / "lessons"
    for folder, source in ((solutions, SOLUTIONS), (lessons, LESSONS)):
        folder.mkdir()
        for path in source.glob("*.ipynb"):
            (folder / path.name).write_bytes(path.read_bytes())
    args = ["release", "--solutions", str(solutions), "--lessons", str(lessons), "--course", str(course_file)]
    assert main([*args, "--check"]) == 1
    assert main(args) == 0
    assert main([*args, "--check"]) == 0
    for folder in (solutions, lessons):
        cells = read(folder / "03_gradcam.ipynb").cells
        assert [c.metadata["nbgrader"]["points"] for c in cells if c.cell_type == "code"
                and c.metadata.get("nbgrader", {}).get("grade")] == [8]
    changed = sorted(p.name for p in solutions.iterdir() if p.read_bytes() != (SOLUTIONS / p.name).read_bytes())
    assert changed == ["03_gradcam.ipynb"]


# ----------------------------------------------------------------------------- the committed course


def lesson_ids() -> list[str]:
    return sorted(CONTRACT)


def test_the_contract_table_was_read():
    assert lesson_ids() == ["00_colored_mnist", "01_cheater", "02_activation_maximization", "03_gradcam",
                            "04_debiasing", "05_adversarial", "06_sparse_autoencoder"]
    assert CONTRACT["04_debiasing"] == ["symmetric_kl", "consistency_loss", "grl_loss", "grad_reverse", "GRLNet"]


def test_solutions_and_lessons_are_the_same_set_of_notebooks():
    # the graded lessons, and explore.ipynb: the ungraded dashboard of the explorers (`voila lessons/explore.ipynb`)
    expected = sorted([f"{lesson}.ipynb" for lesson in lesson_ids()] + ["explore.ipynb"])
    assert sorted(p.name for p in SOLUTIONS.glob("*.ipynb")) == expected
    assert sorted(p.name for p in LESSONS.glob("*.ipynb")) == expected


def test_committed_lessons_are_exactly_what_release_generates(tmp_path):
    course = load_course(ROOT / "course.yml")
    release(SOLUTIONS, tmp_path, course)
    for solution in sorted(SOLUTIONS.glob("*.ipynb")):
        assert (LESSONS / solution.name).read_bytes() == (tmp_path / solution.name).read_bytes(), (
            f"lessons/{solution.name} is out of sync with solutions/; run `shortcutlab release`")
    assert check_release(SOLUTIONS, LESSONS, course) == []


@pytest.mark.parametrize("folder", [SOLUTIONS, LESSONS], ids=["solutions", "lessons"])
def test_notebooks_are_committed_without_outputs(folder):
    for path in sorted(folder.glob("*.ipynb")):
        nb = read(path)
        nbformat.validate(nb)
        assert nb.metadata["kernelspec"]["name"] == "python3", path.name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: cell {cell.id} has output"


@pytest.mark.parametrize("lesson", lesson_ids())
def test_every_graded_function_has_a_solution_cell_and_a_check_cell(lesson):
    solution_nb, lesson_nb = read(SOLUTIONS / f"{lesson}.ipynb"), read(LESSONS / f"{lesson}.ipynb")
    # the lesson has the solution's cells, plus the expected output after each example
    assert [c.id for c in solution_nb.cells] == [c.id for c in lesson_nb.cells
                                                 if not c.id.endswith("-expected") and c.id != INSTALL_CELL_ID]
    lesson_by_id = {c.id: c for c in lesson_nb.cells}
    cells = solution_nb.cells
    solution_cells = {c.metadata["nbgrader"]["grade_id"]: i for i, c in enumerate(cells)
                      if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")}
    check_cells = {c.metadata["nbgrader"]["grade_id"]: i for i, c in enumerate(cells)
                   if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")}
    functions = CONTRACT[lesson]
    assert sorted(solution_cells) == sorted(functions), "solution cells (grade_id) differ from the contract"
    assert sorted(check_cells) == sorted(f"check_{f}" for f in functions)
    for function in functions:
        index = solution_cells[function]
        cell = cells[index]
        assert cell.metadata["nbgrader"] == {"grade": False, "solution": True, "locked": False,
                                             "grade_id": function, "schema_version": 3}
        assert "### BEGIN SOLUTION" in cell.source and "### HINT:" in cell.source
        assert re.search(rf"^(def|class) {function}\b", cell.source, re.M), f"{function} is not defined in its cell"
        check = cells[check_cells[f"check_{function}"]]
        assert check_cells[f"check_{function}"] > index, f"the check of {function} comes before its solution"
        meta = check.metadata["nbgrader"]
        assert meta["locked"] and not meta["solution"] and meta["points"] > 0 and meta["schema_version"] == 3
        assert CHECK_CALL.match(check.source).groupdict() == {"lesson": lesson, "function": function,
                                                              "argument": function}
        stub = lesson_by_id[cell.id].source
        assert "raise NotImplementedError(" in stub and "### BEGIN SOLUTION" not in stub and "### HINT" not in stub


@pytest.mark.parametrize("lesson", lesson_ids())
def test_check_points_match_course_yml(lesson):
    yaml = pytest.importorskip("yaml")
    course_file = ROOT / "course.yml"
    if not course_file.exists():
        pytest.skip("no course.yml")
    course = {entry["id"]: entry for entry in yaml.safe_load(course_file.read_text())["lessons"]}
    points = {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"]["points"]
              for c in read(SOLUTIONS / f"{lesson}.ipynb").cells if c.metadata.get("nbgrader", {}).get("grade")}
    expected = {f"check_{name}": spec["points"] for name, spec in course[lesson]["functions"].items()}
    expected |= {f"answer_{question}": spec["points"] for question, spec in course[lesson].get("answers", {}).items()}
    assert points == expected


def graded_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The cells the grader runs: setup cells and solution cells, in notebook order."""
    return [c for c in nb.cells if c.cell_type == "code" and (
        "setup" in c.metadata.get("tags", []) or c.metadata.get("nbgrader", {}).get("solution"))]


@pytest.mark.parametrize("lesson", lesson_ids())
def test_setup_cells_are_cheap_imports_and_constants_before_the_graded_cells(lesson):
    nb = read(SOLUTIONS / f"{lesson}.ipynb")
    setup = [i for i, c in enumerate(nb.cells) if "setup" in c.metadata.get("tags", [])]
    first_solution = min(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("solution"))
    assert setup and max(setup) < first_solution
    for index in setup:
        for statement in ast.parse(nb.cells[index].source).body:
            assert isinstance(statement, (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign)), (
                f"setup cell {nb.cells[index].id} does more than import and define constants: {ast.unparse(statement)}")


@pytest.mark.parametrize("lesson", lesson_ids())
def test_solutions_are_written_from_scratch_not_imported_from_the_library(lesson):
    for cell in graded_cells(read(SOLUTIONS / f"{lesson}.ipynb")):
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shortcutlab"):
                imported = {alias.name for alias in node.names}
                assert not imported & set(CONTRACT[lesson]), f"{lesson} imports a graded function from {node.module}"
            if isinstance(node, ast.Attribute):
                assert node.attr not in CONTRACT[lesson] or not ast.unparse(node).startswith("shortcutlab"), (
                    f"{lesson} calls the library's {ast.unparse(node)}")


@pytest.mark.parametrize("lesson", lesson_ids())
def test_lesson_stubs_define_every_graded_name_and_raise_not_implemented(lesson):
    namespace: dict = {}
    for cell in graded_cells(read(LESSONS / f"{lesson}.ipynb")):
        exec(compile(cell.source, f"{lesson}:{cell.id}", "exec"), namespace)  # the grader runs exactly these
    for function in CONTRACT[lesson]:
        assert callable(namespace.get(function)), f"lessons/{lesson}.ipynb does not define {function}"
        required = [p for p in inspect.signature(namespace[function]).parameters.values()
                    if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
        # A stub raises before it looks at its arguments (a class: in __init__).
        with pytest.raises(NotImplementedError):
            namespace[function](*[None] * len(required))


@pytest.mark.parametrize("lesson", lesson_ids())
def test_nbgrader_accepts_the_solution_notebook(lesson):
    preprocessors = pytest.importorskip("nbgrader.preprocessors")
    nb = read(SOLUTIONS / f"{lesson}.ipynb")
    resources: dict = {}
    for step in (preprocessors.CheckCellMetadata(), preprocessors.ClearSolutions(), preprocessors.LockCells(),
                 preprocessors.ComputeChecksums()):
        nb, resources = step.preprocess(nb, resources)
    assert all("### BEGIN SOLUTION" not in c.source for c in nb.cells)
