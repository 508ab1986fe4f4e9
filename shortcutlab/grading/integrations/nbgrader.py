"""nbgrader: ``shortcutlab export-nbgrader DIR`` lays out a course root, and check cells score under autograde.

The course root::

    DIR/nbgrader_config.py            points kernels at the course files below, per-cell timeout
    DIR/source/<id>/<id>.ipynb        each lesson's solution notebook, its check and answer cells' points from
                                      course.yml
    DIR/shortcutlab_course/course.yml the course manifest and its check files (autograder/test_<id>.py)
    DIR/shortcutlab_course/seed.json  the base seed of the checks' inputs: course.yml's ``grading.seed``, else a
                                      secret drawn at the first export and kept by later ones

Then ``nbgrader generate_assignment <id>``, ``nbgrader autograde <id>`` (notebooks in
``submitted/<student>/<id>/<id>.ipynb``) and ``nbgrader export`` work as usual, offline. The config has
``generate_assignment`` write the same stubs as ``shortcutlab release`` (``raise NotImplementedError("<hint>")``),
so students keep the hints ``lessons/`` gives them, and a written-answer cell's model answer becomes the same
prompt as in ``lessons/`` (``*Your answer here.*``). Answer cells (grade id ``answer_<question>``) keep their
points from course.yml's ``answers``; they are nbgrader's manually graded cells, so ``nbgrader autograde`` marks
them "needs manual grade" and the formgrader shows them.

Scores are ``shortcutlab grade``'s, because they are its: the config replaces autograde's Execute step with
``GradeWithShortcutlab``, which runs no cell in a kernel. It grades the (sanitized) notebook file through the engine
(the student's cells run in the runner, sandboxed where bubblewrap runs; the judge decides), then fills each check
cell (``shortcutlab.check("<id>.<function>", fn)``) with the report a student sees (hidden checks: passed or failed
only) and the points earned as the cell's result, which nbgrader records as its partial credit. So nothing a
student cell does (replace ``shortcutlab.check``, patch grading modules, write to the course files or
gradebook.db) reaches the verdict. The inputs derive from ``$SHORTCUTLAB_SEED``, which the config sets from
seed.json; checks are written so their verdicts do not depend on the seed.
"""
from __future__ import annotations

import functools
import json
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

import nbformat

from shortcutlab.course import COURSE_FILE, Course, CourseError, load_course
from shortcutlab.grading.integrations.notebook import SEED_ENV, CellRun, cell_report
from shortcutlab.grading.results import SubmissionResult
from shortcutlab.grading.wording import points
from shortcutlab.release import (ANSWER_PROMPT, NotebookError, notebook_text, notebook_with_points, stub_source,
                                 with_generated_cells)

COURSE_FOLDER = "shortcutlab_course"
SEED_FILE = "seed.json"
CELL_TIMEOUT = 600  # seconds per cell under nbgrader; exploration cells train small models on 2 CPU cores

CONFIG = '''\
"""nbgrader configuration of a shortcutlab course root (written by `shortcutlab export-nbgrader`).

Run nbgrader from this folder: nbgrader generate_assignment <id>, nbgrader autograde <id>, nbgrader export.
"""
import json
import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent

# Check cells (shortcutlab.check) read this course.yml and its check files, and the base seed of their inputs;
# kernels inherit the variables.
os.environ["SHORTCUTLAB_COURSE"] = str(_HERE / {folder!r} / {course_file!r})
os.environ["SHORTCUTLAB_SEED"] = str(json.loads((_HERE / {folder!r} / {seed_file!r}).read_text())["seed"])

from shortcutlab.grading.integrations.nbgrader import (autograde_preprocessors,  # noqa: E402
                                                        generate_assignment_preprocessors)

c = get_config()  # noqa: F821 - provided by nbgrader
c.CourseDirectory.root = str(_HERE)
c.CourseDirectory.course_id = {course_id!r}
c.Execute.timeout = {timeout}
# Student stubs as in lessons/: each solution region becomes raise NotImplementedError("<its ### HINT>").
c.GenerateAssignment.preprocessors = generate_assignment_preprocessors()
# No student cell runs in a kernel here: the notebook file is graded by shortcutlab's engine (sandboxed runner,
# judge), which fills the check cells' results. True refuses to grade without the OS sandbox (bubblewrap).
c.GradeWithShortcutlab.require_sandbox = {require_sandbox}
c.Autograde.autograde_preprocessors = autograde_preprocessors()
'''


class ExportError(CourseError):
    """The nbgrader course root cannot be written (a missing solution notebook, a check file outside the course)."""


def _relative(path: Path, root: Path, what: str) -> Path:
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        raise ExportError(f"{what} {path} is outside the course folder {root}; move it under the folder of "
                          "course.yml so it can be copied with it") from None


def export_nbgrader(folder: str | Path, course: Course | str | Path | None = None,
                    lessons: list[str] | None = None, course_id: str = "shortcutlab", seed: int | None = None) -> list[Path]:
    """Write an nbgrader course root into ``folder`` for ``lessons`` (default: all); returns the files written.

    Existing files are replaced; nbgrader's own folders (release/, submitted/, autograded/, gradebook.db)
    are left alone, so exporting again after editing a solution keeps the class's work, and so is the base seed of
    an earlier export unless ``seed`` (or course.yml's ``grading.seed``) sets one.
    """
    course = course if isinstance(course, Course) else load_course(course)
    chosen = [course.lesson(lesson_id) for lesson_id in (lessons or course.lesson_ids)]
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def copy(src: Path, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        written.append(dest)

    target = root / COURSE_FOLDER
    copy(course.file, target / COURSE_FILE)
    for lesson in course.lessons:  # every check file, so the copied course.yml is whole
        check_file = course.check_file(lesson)
        if check_file.is_file():
            copy(check_file, target / _relative(check_file, course.root, "check file"))
    for lesson in chosen:
        notebook = course.solution_notebook(lesson)
        if not notebook.is_file():
            raise ExportError(f"no solution notebook {notebook} for lesson {lesson.id}; write it or fix `notebook:` "
                              "in course.yml")
        dest = root / "source" / lesson.id / f"{lesson.id}.ipynb"
        try:
            text, changed = notebook_with_points(notebook, lesson)  # points from course.yml, whatever the notebook says
            # release's cells (the install cell, the expected outputs), as in lessons/: generate_assignment keeps them
            solution = nbformat.reads(text, as_version=4)
            expanded = with_generated_cells(solution, str(notebook), course.student_edition)
        except NotebookError as exc:
            raise ExportError(f"cannot export lesson {lesson.id}: {exc}") from None
        if len(expanded.cells) != len(solution.cells):
            text, changed = notebook_text(expanded), True
        if changed:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text, encoding="utf-8")
            written.append(dest)
        else:
            copy(notebook, dest)
    seed_file = target / SEED_FILE
    if seed is None:
        seed = course.grading.seed
    if seed is None:
        try:
            seed = int(json.loads(seed_file.read_text(encoding="utf-8"))["seed"])  # an earlier export's secret
        except (OSError, ValueError, KeyError, TypeError):
            seed = secrets.randbelow(2**31)
    seed_file.write_text(json.dumps({"seed": int(seed)}) + "\n", encoding="utf-8")
    written.append(seed_file)
    config = root / "nbgrader_config.py"
    config.write_text(CONFIG.format(folder=COURSE_FOLDER, course_file=COURSE_FILE, course_id=course_id,
                                    timeout=CELL_TIMEOUT, seed_file=SEED_FILE,
                                    require_sandbox=course.grading.require_sandbox), encoding="utf-8")
    written.append(config)
    return written


@functools.cache
def _clear_solutions_keeping_hints() -> type:
    from nbgrader.preprocessors import ClearSolutions
    from traitlets import Unicode

    class ClearSolutionsKeepingHints(ClearSolutions):
        """nbgrader's ClearSolutions, but a Python solution region becomes ``shortcutlab release``'s stub,
        ``raise NotImplementedError("<the region's ### HINT>")``, instead of the same bare stub everywhere, and
        a written answer's region becomes ``release``'s prompt."""

        text_stub = Unicode(ANSWER_PROMPT, help="The text snippet that will replace written solutions"
                            ).tag(config=True)

        def _replace_solution_region(self, cell, language):  # noqa: ANN001 - nbgrader's signature
            if cell.cell_type == "code" and language == "python":
                stub = stub_source(cell.source, f"cell {cell.metadata.get('nbgrader', {}).get('grade_id', '?')}")
                if stub != cell.source:
                    cell.source = stub
                    return True
            return super()._replace_solution_region(cell, language)

    return ClearSolutionsKeepingHints


def generate_assignment_preprocessors() -> list[type]:
    """nbgrader's ``GenerateAssignment.preprocessors`` with ClearSolutions replaced by one that keeps each
    region's hint (set by the exported nbgrader_config.py)."""
    from nbgrader.converters import GenerateAssignment
    from nbgrader.preprocessors import ClearSolutions

    default = GenerateAssignment.class_traits()["preprocessors"].default()
    return [_clear_solutions_keeping_hints() if step is ClearSolutions else step for step in default]


# ----------------------------------------------------------------------------- autograde through the engine

_CHECK_CALL = re.compile(r"""shortcutlab\.check\(\s*["']([^"'.]+)\.([^"']+)["']""")
NOT_GRADED = "NotGraded"  # the error a check cell shows when the submission could not be graded (0 points)


def checked_function(cell: nbformat.NotebookNode) -> str | None:
    """The graded function a check cell scores: the name in its ``shortcutlab.check("<id>.<function>", ...)`` call,
    else its grade id's (``check_<function>``); None for a cell that is no check cell."""
    nbgrader = cell.get("metadata", {}).get("nbgrader", {})
    if cell.get("cell_type") != "code" or not nbgrader.get("grade") or nbgrader.get("solution"):
        return None
    found = _CHECK_CALL.search(cell.get("source", ""))
    if found:
        return found.group(2)
    grade_id = str(nbgrader.get("grade_id", ""))
    return grade_id.removeprefix("check_") if grade_id.startswith("check_") else None


def fill_check_cells(notebook: nbformat.NotebookNode, result: SubmissionResult, course: Course) -> None:
    """Give each check cell of ``notebook`` the outputs nbgrader scores: the function's report as printed output
    and its points (``result``'s, the engine's) as the cell's result; an error (0 points) if it was not graded."""
    lesson = course.lesson(result.lesson) if result.lesson else None
    count = 0
    for cell in notebook.cells:
        function = checked_function(cell)
        if function is None:
            if cell.get("cell_type") == "code":
                cell.outputs, cell.execution_count = [], None
            continue
        count += 1
        cell.execution_count = count
        if result.error is not None or lesson is None or function not in lesson.functions:
            why = result.error or f"{function} is not a graded function of this lesson in course.yml"
            cell.outputs = [nbformat.v4.new_output("error", ename=NOT_GRADED, evalue=why,
                                                   traceback=[f"{NOT_GRADED}: {why}"])]
            continue
        checks = tuple(c for c in result.checks if c.function == function)
        total = lesson.functions[function].points
        earned = min(round(result.function_scores().get(function, (0.0, 0.0))[0], 6), float(total))
        report = cell_report(function, CellRun(checks, 0.0, course.graded_names),
                             f"{points(earned)}/{points(total)} points", sep=", ")
        if result.load.failed:
            report.append(f"(the notebook's cells stopped at cell {result.load.cell}: {result.load.message})"
                          if result.load.cell else f"({result.load.message})")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="\n".join(report) + "\n"),
                        nbformat.v4.new_output("execute_result", data={"text/plain": repr(float(earned))},
                                               execution_count=count)]


@functools.cache
def _grade_with_shortcutlab() -> type:
    from nbconvert.preprocessors import Preprocessor
    from traitlets import Bool

    class GradeWithShortcutlab(Preprocessor):
        """nbgrader autograde's Execute step, replaced: grade the notebook file with ``shortcutlab grade``'s engine
        (no cell runs in this process or a kernel it starts) and fill the check cells' results."""

        enabled = Bool(True, help="nbconvert runs a preprocessor only when it is enabled").tag(config=True)
        require_sandbox = Bool(False, help="Refuse to grade where the OS sandbox (bubblewrap) cannot run, instead of "
                               "grading with process isolation only").tag(config=True)

        def preprocess(self, nb, resources):  # noqa: ANN001 - nbconvert's signature
            from shortcutlab.grading.engine.runner import grade
            from shortcutlab.grading.engine.submission import infer_lesson

            course = load_course()  # $SHORTCUTLAB_COURSE, set by the course root's config
            name = str(resources.get("unique_key") or "submission")
            assignment = str(resources.get("nbgrader", {}).get("assignment") or "")
            lesson = infer_lesson(Path(assignment or name) / f"{name}.ipynb", course)
            seed = os.environ.get(SEED_ENV, course.grading.seed)
            with tempfile.TemporaryDirectory(prefix="shortcutlab-nbgrader-") as folder:
                path = Path(folder) / f"{lesson}.ipynb"
                nbformat.write(nb, str(path))
                report = grade([path], lesson=lesson, jobs=1, seed=None if seed is None else int(seed), course=course,
                               require_sandbox=self.require_sandbox, warn=self.log.warning)
            result = report.submissions[0]
            fill_check_cells(nb, result, course)
            self.log.info("shortcutlab graded %s (%s): %s/%s points, sandbox %s", name, lesson, points(result.score),
                          points(result.max_score), result.sandbox)
            return nb, resources

    return GradeWithShortcutlab


def autograde_preprocessors() -> list[type]:
    """nbgrader's ``Autograde.autograde_preprocessors`` with Execute replaced by ``GradeWithShortcutlab`` (set by the
    exported nbgrader_config.py)."""
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import Execute

    default = Autograde.class_traits()["autograde_preprocessors"].default()
    return [_grade_with_shortcutlab() if step is Execute else step for step in default]
