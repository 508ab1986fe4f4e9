"""Every lesson's first code cell installs the course's edition where shortcutlab is missing (Colab, Kaggle, a
JupyterHub image), does nothing where it imports, and fails fast with a clear message when it cannot install."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

from shortcutlab.course import load_course
from shortcutlab.install_cell import INSTALL_CELL_ID, install_cell_source
from shortcutlab.release import release

ROOT = Path(__file__).resolve().parents[1]
COURSE = load_course(ROOT / "course.yml")


def run_cell(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "<install cell>", "exec"), namespace)  # noqa: S102 - the cell under test
    return namespace


def test_where_shortcutlab_imports_the_cell_does_nothing(monkeypatch, capsys):
    def no_install(*args, **kwargs):
        raise AssertionError(f"the install cell ran {args}")

    monkeypatch.setattr(subprocess, "run", no_install)
    run_cell(install_cell_source("https://example.invalid/shortcutlab.whl"))
    assert capsys.readouterr().out == ""


def test_without_shortcutlab_and_without_an_edition_the_cell_says_what_to_do(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None)
    with pytest.raises(RuntimeError, match=r"no edition to install.*make lab.*%pip install"):
        run_cell(install_cell_source(None))


def test_offline_the_cell_fails_fast_naming_the_address(monkeypatch):
    import importlib.util

    with socket.socket() as probe:  # a port nothing listens on: connecting is refused at once, as offline
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/shortcutlab-0.1.0-py3-none-any.whl"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None)
    with pytest.raises(RuntimeError, match=rf"could not install shortcutlab from {url} \(offline"):
        run_cell(install_cell_source(url))


def test_every_lesson_opens_with_the_install_cell_for_course_ymls_edition(tmp_path):
    course_file = tmp_path / "course.yml"
    text = (ROOT / "course.yml").read_text()
    assert "student_edition:\n  url: null\n" in text
    course_file.write_text(text.replace("student_edition:\n  url: null\n",
                                        "student_edition:\n  url: https://example.org/shortcutlab-0.1.0-py3-none-any.whl\n"))
    course = load_course(course_file)
    assert course.student_edition.url == "https://example.org/shortcutlab-0.1.0-py3-none-any.whl"
    release(ROOT / "solutions", tmp_path / "lessons", course)
    for lesson in course.lessons:
        for folder in (tmp_path / "lessons", ROOT / "lessons"):
            cells = nbformat.read(folder / lesson.notebook, as_version=4).cells
            first = next(c for c in cells if c.cell_type == "code")
            assert first.id == INSTALL_CELL_ID
            url = course.student_edition.url if folder != ROOT / "lessons" else COURSE.student_edition.url
            assert first.source == install_cell_source(url)


@pytest.mark.heavy
def test_in_a_fresh_environment_the_cell_installs_the_edition_from_a_local_wheel_once(tmp_path):
    """A new virtual environment that has shortcutlab's dependencies (this one's, linked) but not shortcutlab: the
    cell installs the wheel, the same process imports it, and a second run does nothing."""
    pytest.importorskip("setuptools")
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "--quiet", "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    wheel, = wheels.glob("shortcutlab-*.whl")

    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(fresh)], check=True, capture_output=True, timeout=300)
    python = fresh / "bin" / "python"
    # The dependencies, without shortcutlab: a folder of links to this environment's packages, on the new one's path.
    dependencies = tmp_path / "dependencies"
    dependencies.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith(("shortcutlab", "__editable__", "_shortcutlab", "pip")):
            (dependencies / entry.name).symlink_to(entry)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "dependencies.pth").write_text(f"{dependencies}\n")
    elsewhere = tmp_path / "elsewhere"  # not the repository, whose shortcutlab/ folder would import from the cwd
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def run(code: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True,
                              timeout=600)

    missing = run("import shortcutlab")
    assert missing.returncode != 0 and "No module named 'shortcutlab'" in missing.stderr
    cell = install_cell_source(str(wheel))
    first = run(cell + "\nimport shortcutlab\nprint('imported from', shortcutlab.__file__)")
    assert first.returncode == 0, first.stderr
    assert f"installing shortcutlab from {wheel}" in first.stdout and "shortcutlab is installed" in first.stdout
    assert f"imported from {site}" in first.stdout
    again = run(cell)
    assert again.returncode == 0 and again.stdout == "", again.stdout + again.stderr
    shutil.rmtree(fresh)
