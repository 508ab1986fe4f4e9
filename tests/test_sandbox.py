"""Does the OS sandbox (bubblewrap) hold? Hostile lesson-00 submissions, graded in one batch with a correct one,
each try one escape: read an answer key beside the batch, write outside their scratch folder (beside the batch, the
output folder, the grader's home), connect to a listener of the grader on 127.0.0.1, read a secret from the
grader's environment, start hundreds of processes, leave a daemon behind, SIGKILL the grading server. Each gets full marks on
color_given_digit only if its escape works; the sandbox must give it 0 there, the correct one full marks, change
nothing outside the scratch and output folders and leave no process behind.

Without bubblewrap (or user namespaces) these tests are skipped, except in CI (CI=1) where they fail; the fallback
(grading without the sandbox, said once, recorded as ``sandbox: none``) and --require-sandbox are tested anyway.
"""
from __future__ import annotations

import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shortcutlab.course import load_course
from shortcutlab.grading.engine import sandbox
from shortcutlab.grading.integrations.batch import grade_class
from shortcutlab.grading.engine.environment import PACKAGE_ROOT
from shortcutlab.grading.engine.runner import GradingError, grade

from conftest import processes_left

ROOT = Path(__file__).resolve().parents[1]
CORRECT = ROOT / "tests" / "submissions" / "00_colored_mnist.py"
LESSON = "00_colored_mnist"
FUNCTION = "color_given_digit"
TAG = secrets.token_hex(3)  # names this run's processes and files
SECRET_ENV, SECRET = "SHORTCUTLAB_TEST_SECRET", "s3cret-" + TAG

_spec = importlib.util.spec_from_file_location("make_hostile", ROOT / "tests" / "submissions" / "hostile" /
                                               "make_hostile.py")
make_hostile = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("make_hostile", make_hostile)
_spec.loader.exec_module(make_hostile)

WHY_NOT = sandbox.why_no_sandbox(str(PACKAGE_ROOT))
pytestmark = pytest.mark.slow  # grades whole batches end to end
needs_bwrap = pytest.mark.skipif(WHY_NOT is not None and not os.environ.get("CI"),
                                 reason=f"the OS sandbox cannot run here: {WHY_NOT}")

def _escapes(batch: Path, out: Path, port: int) -> dict[str, str]:
    """Code put at the top of color_given_digit: it raises unless the escape works."""
    targets = [str(batch / f"ESCAPED_{TAG}_batch.txt"), str(out / f"ESCAPED_{TAG}_out.txt"),
               str(Path.home() / f"ESCAPED_{TAG}_home.txt")]
    return {
        "reads_answer_key": f'''    if open({str(batch / "answer_key.txt")!r}).read() != "the answers":
        raise RuntimeError("the answer key says something else")
''',
        "writes_outside": f'''    wrote = 0
    for target in {targets!r}:
        try:
            with open(target, "w") as escaped:
                escaped.write("escaped")
            wrote += 1
        except OSError:
            pass
    if not wrote:
        raise PermissionError("could not write outside the scratch folder")
''',
        "connects": f'''    import socket
    socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
''',
        "reads_secret": f'''    import os
    if os.environ.get({SECRET_ENV!r}) != {SECRET!r}:
        raise KeyError("no secret in the environment")
''',
        # Once per process (the children of the first call still run during the next ones): 200 processes.
        "forks_many": f'''    import ctypes, os, time
    if not globals().get("_FORKED_MANY"):
        for _ in range(200):
            pid = os.fork()
            if pid == 0:
                ctypes.CDLL(None).prctl(15, b"slfork{TAG}", 0, 0, 0)  # PR_SET_NAME: the test finds it by this name
                time.sleep(60)
                os._exit(0)
        globals()["_FORKED_MANY"] = True
''',
        # The grading server is its parent's parent (make_hostile's kills_grading_server): in the sandbox student code
        # runs as a uid of its own, so the kill fails with PermissionError and the server grades on.
        "kills_grading_server": make_hostile.KILL_SERVER,
        # The second half of the daemon: it works only if the daemon started by daemon_start (graded just before,
        # by the same grading server) outlived that submission.
        "daemon_check": f'''    import socket
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.connect("\\0sldaemon{TAG}")
    probe.close()
''',
    }


DAEMON = '''
import os as _os
import socket as _socket
import time as _time

if _os.fork() == 0:  # a daemon: its own session, its parent gone, serving a socket
    _os.setsid()
    if _os.fork() == 0:
        _os.closerange(0, 4096)  # as a daemon does: nothing of the grader's pipes and files
        import ctypes as _ctypes
        _ctypes.CDLL(None).prctl(15, b"sldaemon{tag}", 0, 0, 0)
        _server = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        _server.bind("\\0sldaemon{tag}")
        _server.listen(8)
        _end = _time.monotonic() + 120
        while _time.monotonic() < _end:
            _server.settimeout(1)
            try:
                _server.accept()[0].close()
            except OSError:
                pass
    _os._exit(0)
_time.sleep(0.5)
'''


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if "__pycache__" not in p.parts)


def _course(timeout: float = 20.0):
    course = load_course(ROOT / "course.yml")
    lessons = tuple(lesson.model_copy(update={"timeout": timeout}) if lesson.id == LESSON else lesson
                    for lesson in course.lessons)
    preload = ("numpy", "torch", "torch.nn.functional", "shortcutlab.data")
    return course.model_copy(update={"lessons": lessons,
                                     "grading": course.grading.model_copy(update={"preload": preload})})


@pytest.fixture(scope="module")
def escaped(tmp_path_factory):
    if WHY_NOT is not None:
        pytest.fail(f"the OS sandbox must run in CI: {WHY_NOT}")
    base = tmp_path_factory.mktemp("sandbox")
    batch, out, cwd, tmp = base / "batch", base / "out", base / "cwd", base / "tmp"
    for folder in (batch, out, cwd, tmp):
        folder.mkdir()
    (batch / "answer_key.txt").write_text("the answers")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.5)
    connections = []
    stop = threading.Event()

    def accept() -> None:  # bounded: ends with the test
        while not stop.is_set():
            try:
                connections.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    correct = CORRECT.read_text()
    anchor = make_hostile.BODY[FUNCTION]
    assert anchor in correct
    paths = [batch / f"{LESSON}__correct.py"]
    paths[0].write_text(correct)
    for name, code in _escapes(batch, out, listener.getsockname()[1]).items():
        path = batch / f"{LESSON}__{name}.py"
        path.write_text(correct.replace(anchor, anchor + code))
        paths.append(path)
    start = batch / f"{LESSON}__daemon_start.py"
    start.write_text(correct + DAEMON.replace("{tag}", TAG))
    paths.insert(paths.index(batch / f"{LESSON}__daemon_check.py"), start)  # graded just before the check
    killer = batch / f"{LESSON}__kills_grading_server.py"
    paths.insert(0, paths.pop(paths.index(killer)))  # first: every other submission is graded by its target
    before = {"batch": _listing(batch), "home": sorted(os.listdir(Path.home())), "repo": sorted(os.listdir(ROOT))}
    saved = os.getcwd(), os.environ.get("TMPDIR")
    os.environ[SECRET_ENV] = SECRET
    os.environ["TMPDIR"] = str(tmp)
    os.chdir(cwd)
    warnings: list[str] = []
    try:
        began = time.monotonic()
        run = grade_class(paths, out, course=_course(), jobs=1, seed=11, warn=warnings.append)
        seconds = time.monotonic() - began
    finally:
        os.chdir(saved[0])
        os.environ.pop(SECRET_ENV, None)
        if saved[1] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved[1]
        stop.set()
        thread.join(5)
        listener.close()
    left = processes_left((f"slfork{TAG}"[:15], f"sldaemon{TAG}"[:15]))
    after = {"batch": _listing(batch), "home": sorted(os.listdir(Path.home())), "repo": sorted(os.listdir(ROOT))}
    for pid, _ in left:  # never leave them running, whatever the test says
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    by_name = {Path(r.path).stem.split("__")[1]: r for r in run.report.submissions}
    return {"by_name": by_name, "order": [Path(r.path).name for r in run.report.submissions],
            "paths": [p.name for p in paths], "before": before, "after": after, "left": left, "connections": len(connections),
            "out": out, "cwd": cwd, "tmp": tmp, "warnings": warnings, "seconds": seconds}


@needs_bwrap
def test_the_correct_submission_gets_full_marks_in_the_sandbox(escaped):
    result = escaped["by_name"]["correct"]
    failing = [f"{c.name} [{c.status}]: {c.output[:300]}" for c in result.checks if c.status != "passed"]
    assert not failing and result.score == pytest.approx(result.max_score) == 12
    assert result.sandbox == "bubblewrap" and escaped["warnings"] == []
    # The daemon's submission is otherwise correct: starting a daemon costs nothing by itself...
    assert escaped["by_name"]["daemon_start"].score == pytest.approx(12)


@needs_bwrap
def test_the_grading_server_survives_a_submission_that_tries_to_kill_it(escaped):
    """Graded first by the only grading server: the kill fails (another uid), so only the function that tried it
    loses its points, and every submission after it is graded (and reported, in order)."""
    assert escaped["order"] == escaped["paths"]
    mine = [c for c in escaped["by_name"]["kills_grading_server"].checks if c.function == FUNCTION]
    assert mine and all(c.status == "error" and "PermissionError" in c.output for c in mine), \
        [c.output[:300] for c in mine]


@needs_bwrap
@pytest.mark.parametrize("name", ["reads_answer_key", "writes_outside", "connects", "reads_secret", "forks_many",
                                  "kills_grading_server", "daemon_check"])
def test_an_escape_gets_zero_on_the_function_that_tries_it(escaped, name):
    result = escaped["by_name"][name]
    scores = result.function_scores()
    mine = [c for c in result.checks if c.function == FUNCTION]
    assert scores[FUNCTION][0] == 0, [f"{c.name} [{c.status}]: {c.output[:300]}" for c in mine]
    # (forks_many: forking a torch process a hundred times can take longer than a check may on a slow machine)
    assert all(c.status in ("error", "failed", "timeout") for c in mine), [c.output[:300] for c in mine]
    others = {f: s for f, s in scores.items() if f != FUNCTION}
    assert all(got == most for got, most in others.values()), others  # only the function that tried it
    assert result.error is None and result.sandbox == "bubblewrap"


@needs_bwrap
def test_nothing_outside_scratch_and_out_changes_and_no_process_outlives_grading(escaped):
    assert escaped["after"] == escaped["before"]
    assert escaped["connections"] == 0
    assert escaped["left"] == [], escaped["left"]  # ... but the daemon is gone once its submission is graded
    assert _listing(escaped["cwd"]) == [] and _listing(escaped["tmp"]) == []
    assert not [p for p in _listing(escaped["out"]) if "ESCAPED" in p]


COURSE_YML = """\
version: 1
title: Sandbox fallback
grading: {timeout: 2, load_timeout: 10, preload: []}
lessons:
  - id: 94_plain
    title: Plain
    notebook: 94_plain.ipynb
    functions:
      add: {points: 1, reference: operator.add}
"""


@pytest.fixture()
def plain(tmp_path) -> Path:
    (tmp_path / "course.yml").write_text(COURSE_YML)
    (tmp_path / "autograder").mkdir()
    (tmp_path / "autograder" / "test_94_plain.py").write_text(
        "from shortcutlab.grading import check\n\n\n@check('add')\ndef test_add(add):\n    assert add(2, 3) == 5\n")
    (tmp_path / "94_plain.py").write_text("def add(a, b):\n    return a + b\n")
    return tmp_path


def test_without_bubblewrap_grading_still_works_says_so_once_and_records_it(plain, monkeypatch):
    monkeypatch.setattr(sandbox, "bwrap", lambda: None)
    sandbox.why_no_sandbox.cache_clear()
    try:
        warnings: list[str] = []
        report = grade([plain / "94_plain.py", plain / "94_plain.py"], course=plain / "course.yml", jobs=1, seed=1,
                       warn=warnings.append)
        assert [r.score for r in report.submissions] == [1, 1]
        assert {r.sandbox for r in report.submissions} == {"none"} and len(warnings) == 1
        assert "without an OS sandbox" in warnings[0] and "bwrap" in warnings[0]
        assert report.submissions[0].to_dict()["sandbox"] == "none"
        with pytest.raises(GradingError, match="refusing to grade without the OS sandbox"):
            grade([plain / "94_plain.py"], course=plain / "course.yml", require_sandbox=True)
    finally:
        sandbox.why_no_sandbox.cache_clear()


def test_require_sandbox_exits_2_with_a_clear_message_where_bwrap_cannot_run(plain):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": str(plain / "no-bin")}  # no bwrap on the PATH
    done = subprocess.run([sys.executable, "-m", "shortcutlab", "grade", "--require-sandbox", "--course",
                           str(plain / "course.yml"), "--out", str(plain / "out"), str(plain / "94_plain.py")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "refusing to grade without the OS sandbox" in done.stderr, done.stderr
    assert "bubblewrap" in done.stderr


@needs_bwrap
def test_the_sandbox_is_recorded_in_the_gradebook_json_and_feedback(plain):
    done = subprocess.run([sys.executable, "-m", "shortcutlab", "grade", "--json", "--require-sandbox", "--course",
                           str(plain / "course.yml"), "--out", str(plain / "out"), str(plain / "94_plain.py")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["submissions"][0]["sandbox"] == "bubblewrap"
    feedback = "\n".join(p.read_text() for p in (plain / "out" / "feedback").rglob("*.md"))
    assert "Graded in OS sandbox: bubblewrap." in feedback


FETCHES = {
    # the reference's text, read at run time and run under the graded name
    "getsource": ("import inspect\nimport shortcutlab.interpret as library\n"
                  "namespace = dict(vars(library))\n"
                  "exec(inspect.getsource(library.grad_cam).replace('def grad_cam(', 'def mine('), namespace)\n"
                  "grad_cam = namespace['mine']\n"),
    "loader": ("import shortcutlab.interpret as library\n"
               "namespace = dict(vars(library))\n"
               "exec(library.__loader__.get_source(library.__name__), namespace)\n"
               "grad_cam = namespace['grad_cam']\n"),
    "module_file": ("import shortcutlab.interpret as library\n"
                    "namespace = dict(vars(library))\n"
                    "exec(compile(open(library.__file__).read(), 'mine.py', 'exec'), namespace)\n"
                    "grad_cam = namespace['grad_cam']\n"),
    "bytecode_file": ("import glob, marshal, os\nimport shortcutlab.interpret as library\n"
                      "(found,) = glob.glob(os.path.join(os.path.dirname(library.__file__), '__pycache__', "
                      "'interpret.*.pyc'))\n"
                      "namespace = {'__name__': 'mine'}\n"
                      "exec(marshal.loads(open(found, 'rb').read()[16:]), namespace)\n"
                      "grad_cam = namespace['grad_cam']\n"),
    # the reference's code object from memory, renamed
    "code_object": ("import types\nimport shortcutlab.interpret as library\n"
                    "code = library.grad_cam.__code__.replace(co_name='mine', co_firstlineno=7)\n"
                    "grad_cam = types.FunctionType(code, vars(library), 'grad_cam', library.grad_cam.__defaults__)\n"),
}


@needs_bwrap
@pytest.mark.heavy  # make test-slow (CI runs it with bubblewrap): six lesson-03 submissions in the sandbox
def test_a_reference_fetched_at_run_time_earns_zero_in_the_sandbox(tmp_path):
    """Lesson 03 submissions that fetch shortcutlab.interpret.grad_cam while graded: by its text (inspect, the
    module's loader, its file, its cached bytecode) or its code object from memory. The library modules holding the
    answer key are readable by the grading server only, and code equal to the reference's is the reference: each
    earns 0; an independent correct submission earns 5."""
    import py_compile

    import shortcutlab.interpret

    py_compile.compile(shortcutlab.interpret.__file__, doraise=True)  # so there is a cached bytecode file to fetch
    folder = tmp_path / "submitted"
    folder.mkdir()
    for name, code in FETCHES.items():
        (folder / f"{name}__03_gradcam.py").write_text(code)
    (folder / "correct__03_gradcam.py").write_text((ROOT / "tests" / "submissions" / "03_gradcam.py").read_text())
    report = grade([folder], lesson="03_gradcam", course=ROOT / "course.yml", jobs=2, seed=5, require_sandbox=True)
    scores = {Path(r.path).name.split("__")[0]: r.score for r in report.submissions}
    assert scores == pytest.approx({"correct": 5.0, **{name: 0.0 for name in FETCHES}}), scores


def test_in_the_sandbox_the_server_imports_every_module_whose_files_it_hides(tmp_path):
    """A course whose preload leaves out a reference's module: student code could not import it in the sandbox
    (its file is the server's alone), so the server imports it before any submission runs."""
    from shortcutlab.grading.engine.runner import _Servers

    import re

    course_file = tmp_path / "course.yml"
    course_file.write_text(re.sub(r"  preload:[^\n]*\n(    - [^\n]*\n)+", "  preload: []\n",
                                  (ROOT / "course.yml").read_text(), count=1))
    course = load_course(course_file)
    assert course.grading.preload == ()
    server = _Servers(course, sandbox.BUBBLEWRAP, [])._new()
    assert {"shortcutlab.data", "shortcutlab.interpret", "shortcutlab.sae"} <= set(server.preload)
    assert {str(p.name) for p in server.answer_files} >= {"data.py", "interpret.py", "sae.py"}
    assert _Servers(course, sandbox.NONE, [])._new().preload == []
