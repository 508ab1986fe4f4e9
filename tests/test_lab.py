"""``shortcutlab lab`` / ``make lab``: a working copy of the lessons that release never overwrites, served by
JupyterLab (started headless here, on a port of this test's, and asked for its files)."""
from __future__ import annotations

import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from shortcutlab.lab import COPIED_FILE, LabError, prepare

ROOT = Path(__file__).resolve().parents[1]


def lessons(tmp_path: Path, names=("00_a.ipynb", "01_b.ipynb")) -> Path:
    folder = tmp_path / "lessons"
    folder.mkdir()
    for name in names:
        (folder / name).write_text(json.dumps({"cells": [], "metadata": {"name": name}, "nbformat": 4,
                                               "nbformat_minor": 5}))
    return folder


def test_the_first_run_copies_every_lesson_and_later_runs_never_overwrite_the_students_work(tmp_path):
    source, work = lessons(tmp_path), tmp_path / "work"
    first = prepare(source, work)
    assert first.copied == ("00_a.ipynb", "01_b.ipynb") and first.kept == () and first.changed_upstream == ()
    (work / "00_a.ipynb").write_text("my own work")
    (source / "02_c.ipynb").write_text("{}")  # a lesson released later
    second = prepare(source, work)
    assert second.copied == ("02_c.ipynb",) and second.kept == ("00_a.ipynb", "01_b.ipynb")
    assert (work / "00_a.ipynb").read_text() == "my own work" and second.changed_upstream == ()


def test_a_lesson_changed_since_it_was_copied_is_named_and_still_not_overwritten(tmp_path):
    source, work = lessons(tmp_path), tmp_path / "work"
    prepare(source, work)
    (work / "01_b.ipynb").write_text("my own work")
    (source / "01_b.ipynb").write_text("{}")  # `shortcutlab release` wrote a new version
    copy = prepare(source, work)
    assert copy.changed_upstream == ("01_b.ipynb",) and (work / "01_b.ipynb").read_text() == "my own work"
    said = "\n".join(copy.summary())
    assert "lessons/01_b.ipynb changed since you copied it; yours is kept" in said and "delete" in said
    (work / "01_b.ipynb").unlink()  # starting that lesson again
    assert prepare(source, work).copied == ("01_b.ipynb",) and (work / "01_b.ipynb").read_text() == "{}"
    assert json.loads((work / COPIED_FILE).read_text())["01_b.ipynb"]


def test_no_lessons_is_an_error_that_says_where_to_run_it(tmp_path):
    (tmp_path / "lessons").mkdir()
    with pytest.raises(LabError, match="run this from the course's folder"):
        prepare(tmp_path / "lessons", tmp_path / "work")


def test_the_working_copy_is_ignored_by_git_and_make_lab_runs_the_command():
    assert "/work/" in (ROOT / ".gitignore").read_text().splitlines()
    assert "\t$(BIN)/shortcutlab lab $(ARGS)" in (ROOT / "Makefile").read_text()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_shortcutlab_lab_serves_the_working_copy_in_jupyterlab(tmp_path):
    pytest.importorskip("jupyterlab")
    root = tmp_path / "course"
    root.mkdir()
    shutil.copy(ROOT / "course.yml", root / "course.yml")
    shutil.copytree(ROOT / "lessons", root / "lessons")
    port, token = _free_port(), "test-token"
    env = {**os.environ, "HOME": str(tmp_path), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    server = subprocess.Popen([sys.executable, "-m", "shortcutlab", "lab", "--course", str(root / "course.yml"), "--",
                               "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
                               f"--IdentityProvider.token={token}"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    seen: list[str] = []
    listed: set[str] = set()
    try:
        selector = selectors.DefaultSelector()
        selector.register(server.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 120
        while not listed:  # ask for the files until the server answers, reading its log meanwhile
            assert time.monotonic() < deadline and server.poll() is None, "".join(seen)
            if any(f"127.0.0.1:{port}/lab" in line for line in seen):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents?token={token}",
                                                timeout=30) as reply:
                        listed = {item["name"] for item in json.load(reply)["content"]}
                    continue
                except urllib.error.URLError:
                    pass
            if selector.select(timeout=0.5):
                seen.append(server.stdout.readline().decode(errors="replace"))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert {p.name for p in (ROOT / "lessons").glob("*.ipynb")} <= listed
    # stopping `shortcutlab lab` stopped the server: nothing is left serving on the port
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    assert seen[0].startswith("lessons in ") and (root / "work" / "00_colored_mnist.ipynb").is_file()
