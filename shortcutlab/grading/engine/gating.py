"""No credit for doing nothing: a property check's points count only once its function's core checks pass.

A function's core checks (``@check``'s default kind) show that it does its work: its main output against the
reference on ordinary inputs, what no stub can pass. Its ``kind="property"`` checks test everything else asked of it
(a shape, a range, a default, an edge case, hooks removed, a mode restored, inputs left alone, working under
no_grad); a zeros/constant/unmoved stub could pass many of them without computing anything. So a property counts
once the core checks pass, and then on its own: one slip costs that property's points and nothing else, and no
property is gated on another. Points are computed in one place (verdict.score, for ``shortcutlab grade``,
nbgrader's autograde check cells and the notebook's check report): it turns each property check that passed but does
not count (:func:`gated`) into a failure (0 points) whose message (:func:`gated_output`) says why.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from shortcutlab.grading.registry import CORE, PROPERTY, PlannedCheck
from shortcutlab.grading.status import Status

NOT_COUNTED = "not counted until"


def gated(planned: Sequence[PlannedCheck], statuses: Mapping[str, str],
          names: Iterable[str] | None = None) -> dict[str, str]:
    """The property checks of ``planned`` that passed (``statuses[name] == "passed"``) but do not count, since a
    core check of their function (among ``planned``) did not pass, each with the sentence saying so
    (``not counted until "matches the reference" passes``; a hidden core check is "a hidden check").
    ``names``: the course's graded functions and classes, for the check titles."""
    from shortcutlab.grading.wording import check_title

    names = list(names) if names is not None else None
    out: dict[str, str] = {}
    for function in dict.fromkeys(c.function for c in planned):
        mine = [c for c in planned if c.function == function]
        missing = [c for c in mine if c.kind == CORE and statuses.get(c.name) != Status.PASSED]
        if not missing:
            continue
        visible = [f'"{check_title(c.name, function, names)}"' for c in missing if not c.hidden]
        hidden = sum(c.hidden for c in missing)
        titles = visible + ([f"{'a' if hidden == 1 else hidden} hidden check{'s' if hidden > 1 else ''}"]
                            if hidden else [])
        listed = titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]
        verb = "passes" if len(missing) == 1 else "pass"
        for c in mine:
            if c.kind == PROPERTY and statuses.get(c.name) == Status.PASSED:
                out[c.name] = f"{NOT_COUNTED} {listed} {verb}"
    return out


PENDING_EXPLANATION = ("a check marked pending passed; it tests a property that code doing nothing useful can have "
                       "too, so it counts once the function's core checks pass")


def gated_output(sentence: str) -> str:
    """A gated check's message, one line: it passed, and why it earns nothing yet (``PENDING_EXPLANATION`` says
    the rule once wherever pending checks are shown)."""
    return f"passed, {sentence}"

