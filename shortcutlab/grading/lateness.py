"""Late hand-ins: how many days past its due time a hand-in came, and the points that costs (course.yml's
``grading.due`` and ``grading.late_penalty``).

The hand-in time is what the LMS recorded (nbgrader's timestamp.txt, Gradescope's metadata), never a file's
modification time; a hand-in the LMS only marks late (Canvas's ``LATE``) counts ``late_penalty.flagged_days`` days.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from shortcutlab.course import Course, LatePenaltySpec
from shortcutlab.timestamps import TIMESTAMP_FORMAT


@dataclass(frozen=True)
class Lateness:
    """``days``: started days past the due time after the grace period (0 on time, or with no due time);
    ``share``: the share of the lesson's points it costs, in [0, 1]."""

    days: float = 0.0
    share: float = 0.0


def lateness(due: str, handed_in: str, flagged: bool, rule: LatePenaltySpec) -> Lateness:
    """How late a hand-in at ``handed_in`` (UTC, nbgrader's format; '' if unknown) is for ``due`` ('' if none)."""
    if not due:
        return Lateness()
    if handed_in:
        past = dt.datetime.strptime(handed_in, TIMESTAMP_FORMAT) - dt.datetime.strptime(due, TIMESTAMP_FORMAT)
        minutes = past.total_seconds() / 60 - rule.grace_minutes
        days = float(math.ceil(minutes / (24 * 60))) if minutes > 0 else 0.0
    else:
        days = rule.flagged_days if flagged else 0.0
    return Lateness(days, min(rule.max, rule.per_day * days))


def late_penalty(course: Course, lesson: str, handed_in: str, flagged: bool, max_points: float) -> float:
    """The points a hand-in of ``lesson`` loses for lateness, of ``max_points`` (checks and written answers)."""
    return lateness(course.due(lesson), handed_in, flagged, course.grading.late_penalty).share * max_points
