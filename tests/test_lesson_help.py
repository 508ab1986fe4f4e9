"""Help in layers: every exercise has a header and staged hints, a stub says what to implement (never how), and the
self-study edition adds every solution and model answer, collapsed, that the lessons never contain."""
from __future__ import annotations

import ast
import hashlib
import re
import textwrap
from pathlib import Path

import nbformat
import pytest

from shortcutlab.cli import main
from shortcutlab.course import load_course
from shortcutlab.cells import EXAMPLE_TAG
from shortcutlab.release import (CHECK_CALL, EXPECTED_SUMMARY, MODEL_ANSWER_SUMMARY, SOLUTION_SUMMARY, model_answer,
                                 release_self_study, solution_regions, solution_source)

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS, LESSONS = ROOT / "solutions", ROOT / "lessons"
COURSE = load_course(ROOT / "course.yml")
HEADER = re.compile(r"^> \*\*Difficulty\*\* (?P<level>●+○*) · \*\*Time\*\* about (?P<minutes>\d+) min · "
                    r"\*\*You learn\*\* \S.*$", re.MULTILINE)
HINT = re.compile(r"<details>\n<summary>Hint (?P<number>\d): (?P<title>[^<]+)</summary>\n\n(?P<body>.+?)\n\n</details>",
                  re.DOTALL)


def exercises() -> list[tuple[str, str, int]]:
    """(lesson id, graded function, index of its solution cell) for every graded function of the course."""
    found = []
    for lesson in COURSE.lessons:
        cells = nbformat.read(SOLUTIONS / lesson.notebook, as_version=4).cells
        for index, cell in enumerate(cells):
            call = CHECK_CALL.search(cell.source) if cell.cell_type == "code" else None
            if call:
                solution = max(i for i in range(index) if cells[i].cell_type == "code"
                               and solution_regions(cells[i].source))
                found.append((lesson.id, call["function"], solution))
    return found


EXERCISES = exercises()


def cells_of(lesson: str, folder: Path = SOLUTIONS) -> list:
    return nbformat.read(folder / f"{lesson}.ipynb", as_version=4).cells


def test_every_graded_function_is_an_exercise():
    assert sorted(f for _, f, _ in EXERCISES) == sorted(f for lesson in COURSE.lessons for f in lesson.functions)


@pytest.mark.parametrize("lesson, function, index", EXERCISES, ids=[f for _, f, _ in EXERCISES])
def test_each_exercise_opens_with_difficulty_time_and_what_it_teaches(lesson, function, index):
    intro = cells_of(lesson)[index - 1]
    assert intro.cell_type == "markdown" and intro.source.startswith("## "), f"{function}: no section before its stub"
    header = HEADER.search(intro.source)
    assert header, f"{lesson}: the section of {function} has no header line (> **Difficulty** ... · **Time** ...)"
    assert len(header["level"]) == 5 and 1 <= int(header["minutes"]) <= 60
    assert intro.source.index(header.group()) < intro.source.index("\n\n", len(intro.source.split("\n")[0])) + 3, (
        f"{function}: the header must come right after the section title")


@pytest.mark.parametrize("lesson, function, index", EXERCISES, ids=[f for _, f, _ in EXERCISES])
def test_each_exercise_has_two_or_three_collapsed_hints_in_order(lesson, function, index):
    intro = cells_of(lesson)[index - 1].source
    hints = list(HINT.finditer(intro))
    assert 2 <= len(hints) <= 3, f"{function}: {len(hints)} hints in <details>, expected 2 or 3"
    assert [int(h["number"]) for h in hints] == list(range(1, len(hints) + 1))
    assert intro.count("<details>") == intro.count("</details>") == len(hints), f"{function}: a malformed <details>"
    assert "```" not in hints[0]["body"], f"{function}: the first hint gives the idea, not code"
    assert hints[-1]["title"] == "near-code" and "```python" in hints[-1]["body"], (
        f"{function}: the last hint is the near-code one")


# ----------------------------------------------------------------------------------------- stubs: what, not how


def _parsed(code: str) -> ast.Module:
    return ast.parse(textwrap.dedent(code))


def how_in_message(message: str, code: str) -> list[str]:
    """The parts of a solution ``code`` that its stub ``message`` gives away: a call of one of its functions, one of
    its dotted names, an identifier of a function it calls that is not a plain word, or one of its expressions."""
    tree = _parsed(code)
    arguments = {a.arg for node in ast.walk(tree) if isinstance(node, ast.arguments)
                 for a in node.args + node.kwonlyargs}
    called, dotted, expressions = set(), set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
            if name and name not in arguments:
                called.add(name)
        if isinstance(node, ast.Attribute):
            dotted.add(ast.unparse(node))
        if isinstance(node, (ast.BinOp, ast.Compare, ast.Subscript, ast.Call, ast.UnaryOp)):
            expressions.add(ast.unparse(node))
    flat = " ".join(message.split())
    found = [f"{name}(" for name in called if re.search(rf"\b{re.escape(name)}\s*\(", flat)]
    found += [name for name in called if re.search(r"_|[a-z][A-Z]", name) and re.search(rf"\b{re.escape(name)}\b", flat)]
    found += [name for name in dotted if name in flat]
    found += [expression for expression in expressions if len(expression) >= 6 and " ".join(expression.split()) in flat]
    return sorted(set(found))


@pytest.mark.parametrize("message, code", [
    ("x = x - alpha * grad.sign(), then clamp", "x = x - alpha * grad.sign()\nx = x.clamp(0, 1)"),
    ("count pairs with torch.bincount", "counts = torch.bincount(labels * 10 + color_ids, minlength=100)"),
    ("labels * num_classes + predictions, then count", "index = labels * num_classes + predictions"),
    ("remember it with register_forward_hook", "hook = layer.register_forward_hook(keep)"),
    ('upsample with interpolate(..., mode="bilinear")', "smooth = F.interpolate(noise, size=(28, 28))"),
])
def test_the_comparison_catches_a_stub_message_that_gives_the_solution_away(message, code):
    assert how_in_message(message, code)


@pytest.mark.parametrize("lesson, function, index", EXERCISES, ids=[f for _, f, _ in EXERCISES])
def test_each_stub_says_what_to_implement_and_nothing_of_its_solution(lesson, function, index):
    cell = cells_of(lesson)[index]
    for region in solution_regions(cell.source):
        assert region.message and not region.message.startswith("replace this line"), f"{function}: no stub message"
        leaked = how_in_message(region.message, region.code)
        assert not leaked, f"{function}: the stub message {region.message!r} gives away {leaked}"


# ----------------------------------------------------------------------------------------- the self-study edition


@pytest.fixture(scope="module")
def self_study(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("self-study")
    release_self_study(SOLUTIONS, out, COURSE)
    return out


def _collapsed_bodies(cells: list, summary: str) -> list[str]:
    prefix = f"<details>\n<summary>{summary}</summary>\n\n"
    return [c.source[len(prefix):] for c in cells if c.cell_type == "markdown" and c.source.startswith(prefix)]


@pytest.mark.parametrize("lesson", [lesson.id for lesson in COURSE.lessons])
def test_the_self_study_edition_has_every_solution_after_its_check_and_every_model_answer(lesson, self_study):
    solutions = cells_of(lesson)
    edition = cells_of(lesson, self_study)
    shown = _collapsed_bodies(edition, SOLUTION_SUMMARY)
    for _, function, index in (e for e in EXERCISES if e[0] == lesson):
        code = solution_source(solutions[index].source).strip()
        position = next(i for i, c in enumerate(edition) if CHECK_CALL.search(c.source) and c.cell_type == "code"
                        and CHECK_CALL.search(c.source)["function"] == function)
        assert edition[position + 1].source.startswith(f"<details>\n<summary>{SOLUTION_SUMMARY}"), (
            f"{function}: its solution does not follow its check cell")
        assert code in edition[position + 1].source
        assert "### BEGIN SOLUTION" not in edition[position + 1].source
    assert len(shown) == len([e for e in EXERCISES if e[0] == lesson])
    answers = [model_answer(c.source) for c in solutions if c.metadata.get("nbgrader", {}).get("solution")
               and c.cell_type == "markdown"]
    assert answers and all(answers)
    assert [body.removesuffix("\n\n</details>") for body in _collapsed_bodies(edition, MODEL_ANSWER_SUMMARY)] == answers


@pytest.mark.parametrize("lesson", [lesson.id for lesson in COURSE.lessons])
def test_the_lessons_hold_no_solution_and_no_model_answer(lesson):
    text = (LESSONS / f"{lesson}.ipynb").read_text(encoding="utf-8")
    cells = cells_of(lesson, LESSONS)
    assert SOLUTION_SUMMARY not in text and MODEL_ANSWER_SUMMARY not in text
    sources = "\n".join(c.source for c in cells)
    code = "\n".join(c.source for c in cells if c.cell_type == "code")  # the last hint's near-code is markdown
    for cell in cells_of(lesson):
        if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
            assert model_answer(cell.source).split("\n")[0] not in sources
        for region in solution_regions(cell.source) if cell.cell_type == "code" else ():
            # statements that compute something; a line such as `with torch.no_grad():` is common to many cells
            body = [line.strip() for line in region.code.split("\n")
                    if len(line.strip()) > 20 and re.search(r"[^=!<>]=[^=]|\breturn\b", line)]
            assert not [line for line in body if line in code], f"{lesson}: a solution line is in a code cell"


def test_release_self_study_on_the_command_line_writes_the_edition_and_leaves_the_sources_alone(tmp_path, capsys):
    def digests(folder: Path) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.ipynb"))}

    before = digests(SOLUTIONS), digests(LESSONS)
    assert main(["release", "--self-study", str(tmp_path / "edition")]) == 0
    assert (digests(SOLUTIONS), digests(LESSONS)) == before
    assert sorted(digests(tmp_path / "edition")) == sorted(digests(SOLUTIONS))
    assert "self-study edition" in capsys.readouterr().out
    assert main(["release", "--self-study", str(tmp_path / "edition"), "--check"]) == 2


# ----------------------------------------------------------------------------------------- expected output


@pytest.mark.parametrize("lesson, function, index", EXERCISES, ids=[f for _, f, _ in EXERCISES])
def test_each_exercise_has_an_example_and_the_lesson_shows_its_expected_output(lesson, function, index):
    solution = cells_of(lesson)
    check = next(i for i in range(index + 1, len(solution)) if CHECK_CALL.search(solution[i].source))
    example = solution[check + 1]
    assert example.cell_type == "code" and EXAMPLE_TAG in example.metadata.get("tags", []), (
        f"{function}: no example cell (tag {EXAMPLE_TAG!r}) right after its check cell")
    assert re.search(rf"\b{function}\(", example.source), f"{function}: its example does not call it"
    lesson_cells = cells_of(lesson, LESSONS)
    position = next(i for i, c in enumerate(lesson_cells) if c.id == example.id)
    shown = lesson_cells[position + 1]
    assert shown.cell_type == "markdown" and shown.source.startswith(f"<details>\n<summary>{EXPECTED_SUMMARY}")
    assert shown.source.count("```") == 2 and len(shown.source.split("```")[1].strip()) > 0
