"""The similarity report's files (instructors only): similarity.csv, one row per flagged pair, and similarity.html,
each flagged pair side by side with the matched code highlighted. Both lay out a ``similarity.SimilarityReport``."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from shortcutlab.course import Course
from shortcutlab.grading.outputs.feedback import environment
from shortcutlab.grading.store.similarity import SimilarityReport

SIMILARITY_COLUMNS = ("lesson", "student", "other", "score")


def similarity_csv(report: SimilarityReport) -> str:
    """``lesson, student, other, score``: one row per unordered pair at or over the threshold (``other``: another
    student, ``reference`` or ``outside:<file>``; ``score`` in [0, 1], 4 decimals); the header alone if none."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SIMILARITY_COLUMNS)
    for pair in report.pairs:
        writer.writerow([pair.lesson, pair.student.owner, pair.other.owner, f"{pair.score:.4f}"])
    return buffer.getvalue()


@dataclass(frozen=True)
class Span:
    """A run of one side's code: ``matched`` if the other side holds it too."""

    text: str
    matched: bool


def spans(code: str, regions: tuple[tuple[int, int], ...]) -> list[Span]:
    """``code`` cut into runs, matched where ``regions`` (sorted (start, end) character ranges) say."""
    out: list[Span] = []
    at = 0
    for start, end in sorted(regions):
        start, end = max(start, at), min(end, len(code))
        if start >= end:
            continue
        if start > at:
            out.append(Span(code[at:start], False))
        if out and out[-1].matched and start == at:  # overlapping or touching regions: one run
            out[-1] = Span(out[-1].text + code[start:end], True)
        else:
            out.append(Span(code[start:end], True))
        at = end
    if at < len(code):
        out.append(Span(code[at:], False))
    return out


def similarity_html(report: SimilarityReport, course: Course) -> str:
    """The flagged pairs side by side, matched regions highlighted (the ``report.shown`` highest), the others in a
    table; one self-contained page."""
    titles = {spec.id: spec.title for spec in course.lessons}
    pairs = [{"pair": pair, "title": titles.get(pair.lesson, pair.lesson),
              "student_spans": spans(pair.student.code, pair.student_regions),
              "other_spans": spans(pair.other.code, pair.other_regions)}
             for pair in report.pairs if pair.student_regions or pair.other_regions]
    listed = [pair for pair in report.pairs if not (pair.student_regions or pair.other_regions)]
    return environment().get_template("similarity.html.j2").render(report=report, pairs=pairs, listed=listed,
                                                                   course=course.title)
