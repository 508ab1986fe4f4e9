"""Does a class downloaded from an LMS come out right? Student ids, names, resubmissions, late penalties, the roster's
missing students and the exit code, as an instructor grading a Canvas download with a roster would see them."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from conftest import toy_class_notebook

ROOT = Path(__file__).resolve().parents[1]

ROSTER = """\
student_id,first_name,last_name,email
1001,Ann,Lee,ann@uni.edu
1002,Ben,Kim,ben@uni.edu
1003,Cid,Roy,cid@uni.edu
1004,Dee,Fox,dee@uni.edu
1005,Eve,Wu,eve@uni.edu
"""


def _grade(course: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shortcutlab", "grade", "--course", str(course), "--jobs", "2",
                           *args], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "SHORTCUTLAB_OFFLINE": "1"})


def test_a_canvas_download_with_a_roster_gives_ids_resubmissions_late_penalties_missing_and_exit_1(
        toy_class_course, tmp_path):
    course = toy_class_course
    text = course.read_text().replace("grading: {", "grading: {due: {95_sums: '2025-03-01 23:59 +01:00'}, "
                                                   "late_penalty: {per_day: 0.1, flagged_days: 1}, ")
    course.write_text(text)
    download = tmp_path / "submissions"  # Canvas: <sortable name>[_LATE]_<user id>_<submission id>_<file>
    download.mkdir()
    files = {
        "leeann_1001_5001_95_sums.ipynb": toy_class_notebook(answer="It adds."),
        "kimben_1002_5002_95_sums.ipynb": toy_class_notebook(add="return a - b"),
        "kimben_1002_5012_95_sums-1.ipynb": toy_class_notebook(),  # Canvas's name for his resubmission
        "roycid_LATE_1003_5003_95_sums.ipynb": toy_class_notebook(),
        "foxdee_1004_5004_95_sums.ipynb": '{"cells": [',  # cannot be read
        "zedzed_1999_5999_95_sums.ipynb": toy_class_notebook(),  # on no roster
    }
    for name, content in files.items():
        (download / name).write_text(content)
    (tmp_path / "roster.csv").write_text(ROSTER)
    out = tmp_path / "grades"
    done = _grade(course, "--out", str(out), "--roster", str(tmp_path / "roster.csv"), str(download))
    assert done.returncode == 1, done.stderr  # one submission could not be graded
    err = done.stderr
    assert "not graded: 1004's 95_sums" in err and "1 submission could not be graded normally (exit code 1)" in err
    assert "1999 is not on the roster" in err
    assert "handed in nothing for 95_sums: 1005" in err
    assert "kimben_1002_5002_95_sums.ipynb and" in err and "the exports show" in err and "(resubmission 1)" in err
    assert "cannot tell whose" not in err

    rows = {r["student_id"]: r for r in csv.DictReader((out / "grades.csv").open())}
    assert sorted(rows) == ["1001", "1002", "1003", "1004", "1005", "1999"]
    assert {s: r["status"] for s, r in rows.items()} == {"1001": "graded", "1002": "graded", "1003": "graded",
                                                         "1004": "error", "1005": "missing", "1999": "graded"}
    assert (rows["1001"]["first_name"], rows["1001"]["last_name"], rows["1001"]["email"]) == \
        ("Ann", "Lee", "ann@uni.edu")
    assert rows["1002"]["code_score"] == "5.0"  # his resubmission, not the first file
    # Canvas marks the file late without a time: one day's penalty, 10% of the lesson's 7 points
    assert (rows["1003"]["raw_score"], rows["1003"]["late_submission_penalty"], rows["1003"]["score"]) == \
        ("5.0", "0.7", "4.3")
    assert rows["1001"]["late_submission_penalty"] == "0.0" and rows["1003"]["duedate"] == "2025-03-01 22:59:00.000000"
    assert rows["1005"]["raw_score"] == "0.0" and rows["1005"]["max_score"] == "7.0"
    assert rows["1001"]["written_answers"] == "awaiting manual grading" and rows["1003"]["written_answers"] == \
        "no answer"
    matrix = list(csv.reader((out / "class_matrix.csv").open()))
    names = {row[3]: row[0] for row in matrix[1:]}
    assert names["1001"] == "Ann Lee" and names["1999"] == "zedzed"  # not on the roster: Canvas's name part
    feedback = (out / "feedback" / "1003" / "95_sums.md").read_text()
    assert "Handed in late: 0.7 points taken off" in feedback and "Score: **4.3 / 7**" in feedback

    document = json.loads(_grade(course, "--out", str(out), "--json", str(download)).stdout)
    assert {(s["student"], s["lesson"]) for s in document["submissions"]} == {
        ("1001", "95_sums"), ("1002", "95_sums"), ("1003", "95_sums"), ("1004", "95_sums"), ("1999", "95_sums")}
    late = next(s for s in document["submissions"] if s["student"] == "1003")
    assert (late["late_penalty"], late["total"]) == (0.7, {"score": 4.3, "max_score": 7.0})


def test_a_file_named_after_no_pattern_is_graded_with_a_warning_and_a_roster_is_remembered(toy_class_course, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "bob (final)_95_sums.ipynb").write_text(toy_class_notebook())
    out = tmp_path / "grades"
    done = _grade(toy_class_course, "--out", str(out), str(folder))
    assert done.returncode == 0, done.stderr
    assert "cannot tell whose submission" in done.stderr and "'bob_final'" in done.stderr
    (tmp_path / "roster.csv").write_text("student_id,name\nbob_final,Bob Final\nzoe,Zoe Z\n")
    assert _grade(toy_class_course, "--out", str(out), "--roster", str(tmp_path / "roster.csv"),
                  str(folder)).returncode == 0
    again = _grade(toy_class_course, "--out", str(out), str(folder))  # no --roster: the gradebook kept it
    assert "handed in nothing for 95_sums: zoe" in again.stderr
    rows = {r["student_id"]: r for r in csv.DictReader((out / "grades.csv").open())}
    assert rows["zoe"]["status"] == "missing" and rows["bob_final"]["status"] == "graded"
