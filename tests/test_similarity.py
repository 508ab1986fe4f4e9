"""Does the similarity report flag copies (a classmate's code renamed, the library's references pasted, an outside
solution) and leave independently written correct submissions alone, without ever changing a score?

Independent correct submissions: tests/submissions/ and tests/submissions/second/ (written apart from each other).
"""
from __future__ import annotations

import ast
import csv
import io
import itertools
import random
import tokenize
from pathlib import Path

import pytest

from shortcutlab.cli import main
from shortcutlab.course import load_course
from shortcutlab.grading.outputs.similarity import SIMILARITY_COLUMNS, Span, similarity_csv, similarity_html, spans
from shortcutlab.grading.store.similarity import (REFERENCE, CodeDocument, compare, file_code, folder_documents,
                                            library_sources, reference_code, stub_code)

ROOT = Path(__file__).resolve().parents[1]
COURSE = load_course(ROOT / "course.yml")
LESSONS = COURSE.lesson_ids
FIRST = ROOT / "tests" / "submissions"
SECOND = FIRST / "second"
THRESHOLD = COURSE.grading.similarity_threshold


def renamed(source: str, rng: random.Random) -> str:
    """``source`` as a copier disguises it: every local variable of every function renamed (parameters, the graded
    API, stay), comments dropped, the layout otherwise kept."""
    tree = ast.parse(source)
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    # parameters (the API checks call by keyword) and module-level names keep theirs everywhere
    kept = {a.arg for f in functions for a in ast.walk(f.args) if isinstance(a, ast.arg)}
    kept |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    kept |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    local = {node.id for f in functions for node in ast.walk(f)
             if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id not in kept}
    names = {name: f"{rng.choice('abcdefghkmnpqrstuvwxyz')}{index}_{rng.randrange(1000)}"
             for index, name in enumerate(sorted(local))}
    out = []
    depth = 0  # inside brackets, ``name=`` after ( or , is a keyword argument, not an assignment
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for index, token in enumerate(tokens):
        if token.type == tokenize.COMMENT:
            continue
        depth += (token.string in "([{") - (token.string in ")]}") if token.type == tokenize.OP else 0
        previous = tokens[index - 1].string if index else ""
        following = tokens[index + 1].string if index + 1 < len(tokens) else ""
        keyword_argument = depth > 0 and following == "=" and previous in ("(", ",")
        if token.type == tokenize.NAME and token.string in names and previous != "." and not keyword_argument:
            token = token._replace(string=names[token.string])
        out.append(token)
    return tokenize.untokenize(out)


def pasted(lesson: str) -> str:
    """The lesson's graded functions pasted from the library: each reference's source and its helpers' (helpers
    first)."""
    sources = [source for spec in COURSE.lesson(lesson).functions.values()
               for source in library_sources(spec.reference)]
    return "\n\n".join(dict.fromkeys(reversed(sources)))


def document(lesson: str, owner: str, code: str) -> CodeDocument:
    return CodeDocument(lesson, owner, f"{owner}/{lesson}.py", code)


# ----------------------------------------------------------------------------- what is flagged


def test_independent_correct_submissions_are_not_flagged_and_copies_are():
    """Per lesson: the two independent correct submissions, against each other and the reference (21 independent
    pairs, none flagged: target under 5%); a renamed copy of each, the library pasted and the library renamed (each
    flagged against its source); the released stub (never compared: it is all boilerplate)."""
    rng = random.Random(7)
    documents = []
    for lesson in LESSONS:
        first, second = file_code(FIRST / f"{lesson}.py"), file_code(SECOND / f"{lesson}.py")
        documents += [document(lesson, "ann", first), document(lesson, "ben", second),
                      document(lesson, "cid", renamed(second, rng)), document(lesson, "dee", renamed(first, rng)),
                      document(lesson, "eve", pasted(lesson)), document(lesson, "fay", renamed(pasted(lesson), rng)),
                      document(lesson, "gus", stub_code(COURSE, lesson))]
    everything = compare(documents, COURSE, 0.0)
    scores = {(p.lesson, p.student.owner, p.other.owner): p.score for p in everything.pairs}
    independent = [scores.get((lesson, a, b), 0.0) for lesson in LESSONS
                   for a, b in (("ann", "ben"), ("ann", REFERENCE), ("ben", REFERENCE))]
    assert len(independent) == 21 and max(independent) < THRESHOLD, independent
    copies = {(lesson, a, b): scores[(lesson, a, b)] for lesson in LESSONS
              for a, b in (("ben", "cid"), ("ann", "dee"), ("eve", REFERENCE), ("fay", REFERENCE), ("eve", "fay"))}
    assert min(copies.values()) >= THRESHOLD, copies
    assert not any("gus" in key for key in scores)  # the stub shares nothing once its boilerplate is removed
    flagged = compare(documents, COURSE, THRESHOLD)
    assert {(p.lesson, p.student.owner, p.other.owner) for p in flagged.pairs} >= set(copies)
    assert all(p.score >= THRESHOLD for p in flagged.pairs)
    assert flagged.similar_to()[("00_colored_mnist", "eve")][0] in (REFERENCE, "fay")


def test_an_exact_copy_scores_one_and_a_pair_is_reported_once():
    code = file_code(SECOND / "03_gradcam.py")
    report = compare([document("03_gradcam", "ann", code), document("03_gradcam", "ben", code)], COURSE, THRESHOLD)
    (pair,) = [p for p in report.pairs if p.other.owner != REFERENCE]
    assert (pair.student.owner, pair.other.owner, pair.score) == ("ann", "ben", 1.0)
    assert report.similar_to()[("03_gradcam", "ben")] == ("ann",)


def test_the_reference_holds_the_helpers_a_reference_delegates_to():
    code = reference_code(COURSE, "00_colored_mnist")
    assert "def colorize(" in code and "def smooth_texture(" in code
    helper = [name for name in ("texture_from_noise", "colorize_rgb") if f"def {name}(" in code]
    assert helper, "a helper of the lesson's references is part of the answer key compared with"


def test_an_outside_solution_is_flagged_by_its_file_name(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "03_gradcam_from_a_blog.py").write_text((SECOND / "03_gradcam.py").read_text())
    student = tmp_path / "class" / "ann" / "03_gradcam.py"
    student.parent.mkdir(parents=True)
    student.write_text(renamed((SECOND / "03_gradcam.py").read_text(), random.Random(1)))
    assert main(["similarity", str(tmp_path / "class"), "--compare-with", str(outside), "--out",
                 str(tmp_path / "report")]) == 0
    rows = list(csv.DictReader((tmp_path / "report" / "similarity.csv").open()))
    assert [(r["student"], r["other"]) for r in rows] == [("ann", "outside:03_gradcam_from_a_blog.py")]


def test_folder_documents_keep_each_students_latest_resubmission(tmp_path):
    """A Canvas download: the resubmission (``-1``) counts, as in grading."""
    for name, text in (("kimann_1001_5011_95_03_gradcam-1.py", "y = 2\n"), ("kimann_1001_5001_95_03_gradcam.py",
                                                                           "x = 1\n")):
        (tmp_path / name).write_text(text)
    (found,) = folder_documents([tmp_path], COURSE)
    assert (found.owner, found.code) == ("1001", "y = 2")


# ----------------------------------------------------------------------------- files


def test_the_csv_has_one_row_per_pair_and_the_html_shows_both_sides_highlighted_and_escaped():
    code = file_code(SECOND / "03_gradcam.py") + "\n# <script>alert(1)</script>\n"
    report = compare([document("03_gradcam", "ann", code), document("03_gradcam", "ben", code)], COURSE, THRESHOLD)
    rows = list(csv.reader(io.StringIO(similarity_csv(report))))
    assert tuple(rows[0]) == SIMILARITY_COLUMNS and rows[1] == ["03_gradcam", "ann", "ben", "1.0000"]
    html = similarity_html(report, COURSE)
    assert html.count("<mark>") >= 2 and "<script>" not in html and "&lt;script&gt;" in html
    assert "ann and ben" in html


def test_spans_cut_code_into_matched_and_unmatched_runs():
    assert spans("abcdefgh", ((2, 4), (3, 6))) == [Span("ab", False), Span("cdef", True), Span("gh", False)]
    assert spans("abc", ()) == [Span("abc", False)]


# ----------------------------------------------------------------------------- shortcutlab grade


@pytest.mark.slow
def test_grade_writes_the_similarity_report_for_the_instructor_and_no_score_changes(tmp_path, capsys):
    """A class of lesson 00: two independent solutions, a renamed copy of one and the library pasted. The copy and
    the paste are flagged (similarity.csv, .html, grades.csv's similar_to, the terminal), their scores are those of
    the code they copy, and no student's feedback mentions it."""
    lesson = "00_colored_mnist"
    folder = tmp_path / "submitted"
    texts = {"ann": (FIRST / f"{lesson}.py").read_text(), "ben": (SECOND / f"{lesson}.py").read_text()}
    texts["cid"] = renamed(texts["ben"], random.Random(3))
    texts["dee"] = "import torch\nimport torch.nn.functional as F\nfrom shortcutlab.data import *\n\n" + pasted(lesson)
    for student, text in texts.items():
        (folder / student).mkdir(parents=True)
        (folder / student / f"{lesson}.py").write_text(text)
    out = tmp_path / "grades"
    assert main(["grade", str(folder), "--out", str(out), "--jobs", "2"]) == 0
    printed = capsys.readouterr().err
    assert "similar graded code, 00_colored_mnist: ben and cid" in printed
    assert "similar graded code, 00_colored_mnist: dee and reference" in printed
    rows = list(csv.DictReader((out / "similarity.csv").open()))
    assert {(r["student"], r["other"]) for r in rows} == {("ben", "cid"), ("dee", REFERENCE)}
    grades = {r["student_id"]: r for r in csv.DictReader((out / "grades.csv").open())}
    assert {s: g["similar_to"] for s, g in grades.items()} == {"ann": "", "ben": "cid", "cid": "ben",
                                                              "dee": REFERENCE}
    assert {g["code_score"] for g in grades.values()} == {"12.0"}  # flags never change a score
    assert (out / "similarity.html").read_text().count("<section") == 2
    feedback = "".join(p.read_text() for p in (out / "feedback").rglob("*.*"))
    assert "similar" not in feedback.lower() and "reference" not in feedback
    assert main(["similarity", str(folder), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "similarity.csv").read_text() == (out / "similarity.csv").read_text()


def test_every_pair_of_a_lesson_is_compared_once():
    documents = [document("03_gradcam", name, f"def grad_cam(model, layer, images, targets=None):\n    return {i}\n")
                 for i, name in enumerate("abcd")]
    report = compare(documents, COURSE, 1.0)
    assert report.compared == len(list(itertools.combinations("abcd", 2))) + 4  # and each against the reference


def test_scores_are_the_same_scored_in_forked_processes(monkeypatch):
    from shortcutlab.grading.store import similarity

    rng = random.Random(11)
    documents = [document("03_gradcam", f"s{i}", renamed(file_code((FIRST, SECOND)[i % 2] / "03_gradcam.py"), rng)
                          + "\n" * i) for i in range(8)]
    documents += [document("03_gradcam", "ann", file_code(FIRST / "03_gradcam.py") + "\nx = 1\n")]
    serial = compare(documents, COURSE, 0.0, jobs=1)
    monkeypatch.setattr(similarity, "PARALLEL_PAIRS", 2)
    forked = compare(documents, COURSE, 0.0, jobs=2)
    assert forked == serial and len(serial.pairs) > 20


def test_the_terminal_lists_the_first_pairs_and_counts_the_rest():
    from shortcutlab.cli import SUMMARY_PAIRS, similarity_summary
    from shortcutlab.grading.store.similarity import SimilarityReport, SimilarPair

    others = [document("03_gradcam", f"b{i:02d}", "x = 1") for i in range(SUMMARY_PAIRS + 5)]
    report = SimilarityReport(THRESHOLD, tuple(SimilarPair("03_gradcam", document("03_gradcam", "a", "x = 1"), other,
                                                           0.9) for other in others), len(others), len(others) + 1)
    lines = similarity_summary(report, Path("grades")).splitlines()
    assert len(lines) == SUMMARY_PAIRS + 2 and lines[-2] == "... and 5 more pairs"
    assert lines[-1].startswith(f"{SUMMARY_PAIRS + 5} pairs of similar submissions at or over 0.75")


def test_the_answer_key_is_read_as_text_without_importing_the_library():
    """The grader's parent process never imports torch: the references' code comes from their modules' text."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", (
        "import sys\n"
        "from shortcutlab.course import load_course\n"
        "from shortcutlab.grading.store.similarity import reference_code\n"
        "course = load_course()\n"
        "codes = [reference_code(course, lesson) for lesson in course.lesson_ids]\n"
        "assert all('def ' in code for code in codes)\n"
        "print(sorted(m for m in ('torch', 'shortcutlab.interpret', 'shortcutlab.data') if m in sys.modules))\n")],
        capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
