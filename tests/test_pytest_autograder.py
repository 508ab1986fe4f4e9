"""`pytest autograder --submission FILE` reports the grading engine's verdicts; the submission never runs in pytest."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pytest_with_a_submission_gives_the_engines_verdicts_and_never_runs_student_code_itself(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    mutant = (ROOT / "tests" / "mutants" / "00_colored_mnist" / "colorize__no_background.py").read_text()
    # At load time it leaves a file in $HOME: the engine runs it with a scratch folder as home, pytest would not.
    submission = tmp_path / "00_colored_mnist.py"
    submission.write_text(mutant + "\nimport pathlib\n(pathlib.Path.home() / 'ran_here').write_text('x')\n")
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           str(ROOT / "autograder"), "--submission", str(submission), "--seed", "3"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = done.stdout
    assert done.returncode == 1, out[-3000:]
    assert "5 failed, 13 passed" in out, out[-3000:]  # every check of colorize, none of the others
    # the engine's own messages: the core check's diagnosis, and a property check pending until the core check passes
    assert "Hint: the background is missing" in out and 'not counted until "matches the formula" passes' in out
    assert not (home / "ran_here").exists() and not (tmp_path / "ran_here").exists()
