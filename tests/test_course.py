"""Is course.yml validated on load, with errors that name the key and what is allowed there?"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from shortcutlab.course import COURSE_ENV, CourseError, import_object, load_course, parse_course
from shortcutlab.errors import ShortcutlabError

ROOT = Path(__file__).resolve().parents[1]

VALID = """\
version: 1
title: A course
lessons:
  - id: 00_first
    title: First
    notebook: 00_first.ipynb
    functions:
      f: {points: 2, reference: operator.add}
"""


def problems(text: str) -> str:
    with pytest.raises(CourseError) as info:
        parse_course(text)
    return str(info.value)


def test_a_valid_file_loads_with_defaults_and_resolves_paths(tmp_path):
    (tmp_path / "course.yml").write_text(VALID)
    course = load_course(tmp_path / "course.yml")
    lesson = course.lesson("00_first")
    assert course.check_file(lesson) == (tmp_path / "autograder" / "test_00_first.py").resolve()
    assert course.solution_notebook(lesson) == tmp_path / "solutions" / "00_first.ipynb"
    assert course.lesson_notebook(lesson) == tmp_path / "lessons" / "00_first.ipynb"
    assert course.timeout(lesson, "f") == 60 and course.load_timeout(lesson) == 120
    assert "torch" in course.grading.preload


@pytest.mark.parametrize("edit, expected", [
    (("version: 1", "version: 2"), "version: must be 1, got 2"),
    (("      f: {points: 2", "      f: {pointz: 2"),
     "lessons[0] (00_first).functions.f.pointz: unknown key; allowed keys here: points, reference, timeout"),
    (("    title: First\n", "    title: First\n    timout: 3\n"),
     "lessons[0] (00_first).timout: unknown key; allowed keys here: id, title, notebook, checks, timeout"),
    (("title: A course\n", "title: A course\ngradng: {}\n"), "gradng: unknown key; allowed keys here: version, title"),
    (("points: 2", "points: -1"), "lessons[0] (00_first).functions.f.points: must be a number > 0, got -1"),
    (("points: 2", "points: lots"), "functions.f.points: must be a number, got str 'lots'"),
    (("    title: First\n", ""), "lessons[0] (00_first).title: required key is missing"),
    (("id: 00_first", "id: Lesson One"), "lesson id must be two digits, an underscore and lowercase words"),
    (("notebook: 00_first.ipynb", "notebook: solutions/00_first.py"), "must be a notebook file name ending in .ipynb"),
    (("      f: {points: 2, reference: operator.add}", "      f: 3"),
     "functions.f: must be a mapping with keys points, reference, timeout; got int 3"),
    (("reference: operator.add", "reference: not a path"), "must be a dotted path module.name"),
    (("    functions:\n      f: {points: 2, reference: operator.add}\n", "    functions: {}\n"),
     "functions: must not be empty"),
    (("lessons:\n", "grading: {timeout: 0}\nlessons:\n"), "grading.timeout: must be a number > 0, got 0"),
    (("lessons:\n", "grading: {preload: torch}\nlessons:\n"), "grading.preload: must be a list, got str 'torch'"),
    (("title: First", "title: First\n    hidden: [not a name]"), "hidden lists check function names"),
])
def test_each_bad_key_is_named_with_what_is_allowed(edit, expected):
    old, new = edit
    assert old in VALID
    message = problems(VALID.replace(old, new, 1))
    assert expected in message, message
    assert message.startswith("course.yml is invalid")


@pytest.mark.parametrize("reference, expected", [
    ("operator.addd", "operator.addd does not exist (module operator has no attribute addd)"),
    ("operatr.add", "operatr.add does not exist (no module named operatr)"),
    ("os.sep", "os.sep is not callable"),
    ("shortcutlab.interpret.gradcam",
     "shortcutlab.interpret.gradcam does not exist (module shortcutlab.interpret has no attribute gradcam)"),
    ("shortcutlab.nope.grad_cam", "shortcutlab.nope.grad_cam does not exist (no module named shortcutlab.nope)"),
    ("shortcutlab.data.COLOR_NAMES", "shortcutlab.data.COLOR_NAMES is not callable"),
])
def test_a_reference_that_does_not_import_or_is_not_callable_is_named(reference, expected):
    message = problems(VALID.replace("reference: operator.add", f"reference: {reference}"))
    assert f"lessons[0] (00_first).functions.f.reference: {expected}" in message, message


def test_references_are_checked_without_importing_torch():
    """The grading parent loads the course and must not import torch: modules not yet imported are read with ast."""
    code = ("import sys\n"
            "from shortcutlab.course import CourseError, load_course, parse_course\n"
            "load_course()\n"
            "text = open('course.yml').read()\n"
            "text = text.replace('shortcutlab.interpret.grad_cam', 'shortcutlab.interpret.gradcam')\n"
            "try:\n"
            "    parse_course(text)\n"
            "except CourseError as exc:\n"
            "    print(exc)\n"
            "assert 'torch' not in sys.modules, 'loading the course imported torch'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ("lessons[3] (03_gradcam).functions.grad_cam.reference: shortcutlab.interpret.gradcam does not exist "
            "(module shortcutlab.interpret has no attribute gradcam)") in done.stdout


def test_the_course_remembers_its_file(tmp_path):
    (tmp_path / "points.yml").write_text(VALID)
    assert load_course(tmp_path / "points.yml").file == (tmp_path / "points.yml").resolve()
    assert load_course().file == ROOT / "course.yml"


def test_every_problem_is_reported_at_once():
    text = VALID.replace("version: 1", "version: 3").replace("points: 2", "points: 0")
    assert "(2 problems)" in problems(text)


def test_duplicate_lesson_ids_are_an_error():
    lesson = VALID.split("lessons:\n")[1]
    assert "lesson id '00_first' appears twice" in problems(VALID + lesson)


def test_yaml_syntax_errors_and_duplicate_keys_give_the_line():
    assert re.search(r"line \d+, column \d+: not valid YAML", problems(VALID + "  - [unclosed\n"))
    assert "line 2: key 'version' appears twice" in problems("version: 1\nversion: 1\n")
    assert "must be a mapping" in problems("- just\n- a list\n")


def test_course_errors_are_shortcutlab_errors():
    assert issubclass(CourseError, ShortcutlabError)


def test_the_course_file_is_found_explicitly_through_the_environment_or_at_the_repository_root(tmp_path, monkeypatch):
    monkeypatch.delenv(COURSE_ENV, raising=False)
    assert load_course().root == ROOT
    (tmp_path / "course.yml").write_text(VALID)
    monkeypatch.setenv(COURSE_ENV, str(tmp_path / "course.yml"))
    assert load_course().lesson_ids == ("00_first",)
    assert load_course(tmp_path).lesson_ids == ("00_first",)  # a folder holding course.yml
    with pytest.raises(CourseError, match="no course file at"):
        load_course(tmp_path / "absent.yml")
    monkeypatch.setenv(COURSE_ENV, str(tmp_path / "absent.yml"))
    with pytest.raises(CourseError, match=COURSE_ENV):
        load_course()


def test_an_edited_file_is_reloaded(tmp_path):
    path = tmp_path / "course.yml"
    path.write_text(VALID)
    assert load_course(path).title == "A course"
    path.write_text(VALID.replace("A course", "Another course, longer"))
    assert load_course(path).title == "Another course, longer"


def test_unknown_lessons_and_functions_name_the_known_ones():
    course = load_course()
    with pytest.raises(CourseError, match="choose one of: 00_colored_mnist, 01_cheater"):
        course.lesson("07_extra")
    with pytest.raises(CourseError, match="grades grad_cam"):
        course.function("03_gradcam", "gradcam")


def contract_table() -> dict[str, set[str]]:
    """Lesson id -> graded functions, from the table in docs/grading-contract.md."""
    table = {}
    for line in (ROOT / "docs" / "grading-contract.md").read_text().splitlines():
        match = re.match(r"\| (\d\d_\w+) \| ([^|]+)\|", line)
        if match:
            names = re.sub(r"\([^)]*\)", "", match.group(2))  # drop "(shortcutlab.x ...)" notes
            table[match.group(1)] = {name.strip() for name in re.split(r"[,;]", names) if name.strip()}
    return table


def test_the_repository_course_lists_the_contracts_lessons_and_functions():
    course = load_course()
    assert {lesson.id: set(lesson.functions) for lesson in course.lessons} == contract_table()
    for lesson in course.lessons:
        assert course.solution_notebook(lesson).name == f"{lesson.id}.ipynb"
        assert 30 <= course.timeout(lesson) <= 120
        for name, spec in lesson.functions.items():
            assert 1 <= spec.points <= 5
            assert import_object(spec.reference).__name__ == name
