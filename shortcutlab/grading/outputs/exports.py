"""What a grading run hands out: grades.csv (nbgrader's columns and a status), a class matrix an LMS gradebook
imports (Canvas, Moodle), a list of identical submissions, one Gradescope ``results.json`` per submission, and
per-student feedback in Markdown and HTML.

Students see their visible checks' messages; a hidden check shows only whether it passed and its points,
never its name or message (instructors find those in the gradebook and ``shortcutlab grade --json``).

Layout under the output folder (files are written readable, like any file the user creates: 0666 less the umask)::

    grades.csv
    class_matrix.csv
    identical_submissions.csv
    similarity.csv, similarity.html   (instructors only: pairs of similar graded code; see similarity.py)
    results/<student>/<lesson>/results.json
    feedback/<student>/<lesson>.md
    feedback/<student>/<lesson>.html

Written answers (course.yml's ``answers``, graded by hand): an entry's ``answers`` (``answers.attach``) add to its
score and max_score everywhere; until the instructor's points are imported each counts 0 of its points and says
"awaiting manual grading" (grades.csv's ``written_answers`` column, the feedback, a results.json test).
The instructor's own files (``answers/<lesson>.md``, ``answers/<lesson>_scores.csv``) are ``answer_sheets.py``'s.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from shortcutlab.course import Course
from shortcutlab.grading.outputs.feedback import build_feedback, render
from shortcutlab.grading.outputs.files import write_text
from shortcutlab.grading.outputs.gradescope import gradescope_results
from shortcutlab.grading.outputs.identical import IdenticalGroup, identical_csv
from shortcutlab.grading.outputs.similarity import similarity_csv, similarity_html
from shortcutlab.grading.store.similarity import SimilarityReport
from shortcutlab.grading.outputs.tables import class_matrix_csv, class_rows, grades_csv
from shortcutlab.grading.store.gradebook import Entry
from shortcutlab.grading.store.roster import Roster


def write_exports(entries: Iterable[Entry], out: str | Path, course: Course,
                  identical: Iterable[IdenticalGroup] | None = (), roster: Roster = Roster(),
                  similarity: SimilarityReport | None = None) -> list[Path]:
    """Write grades.csv, class_matrix.csv (a row per student of ``roster`` too, ``missing`` where nothing was handed
    in), identical_submissions.csv (``identical``: see ``find_identical``; None leaves the file as it is),
    results/<student>/<lesson>/results.json and feedback/<student>/<lesson>.{md,html} for ``entries`` (a gradebook's,
    with their written answers if ``answers.attach`` gave them any), and similarity.csv and similarity.html from
    ``similarity`` (None leaves them as they are, and grades.csv's ``similar_to`` empty); returns the files written,
    leaving those that already held what they would get as they were."""
    out = Path(out)
    entries = list(entries)
    rows = class_rows(entries, course, roster)
    titles = {spec.id: spec.title for spec in course.lessons}
    similar = similarity.similar_to() if similarity is not None else None
    files = {out / "grades.csv": grades_csv(rows, course, similar),
             out / "class_matrix.csv": class_matrix_csv(rows, course)}
    if similarity is not None:
        files[out / "similarity.csv"] = similarity_csv(similarity)
        files[out / "similarity.html"] = similarity_html(similarity, course)
    if identical is not None:
        files[out / "identical_submissions.csv"] = identical_csv(identical)
    for row in rows:
        entry = row.entry
        if entry is None:
            continue
        result, title, answers = entry.result, titles.get(entry.lesson, ""), entry.answers
        results = out / "results" / entry.student_id / entry.lesson / "results.json"
        files[results] = json.dumps(gradescope_results(result, answers=answers, late_penalty=row.penalty),
                                    indent=2) + "\n"
        feedback = out / "feedback" / entry.student_id
        model = build_feedback(result, entry.student_id, title, entry.timestamp, answers, row.penalty)  # one model
        files[feedback / f"{entry.lesson}.md"] = render("feedback.md.j2", model)
        files[feedback / f"{entry.lesson}.html"] = render("feedback.html.j2", model)
    return [path for path, text in files.items() if write_text(path, text)]
