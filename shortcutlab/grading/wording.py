"""How grading writes numbers and names for people: ``points`` (every printed score), ``check_title`` (a
check's readable title) and ``load_failure`` (what stopped a submission's loading), shared by the notebook report,
the terminal, the feedback, CSVs and Gradescope."""
from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from shortcutlab.grading.status import LoadStatus

if TYPE_CHECKING:
    from shortcutlab.grading.results import LoadOutcome


def points(value: float) -> str:
    """Points as people write them, the one format of every printed score: 5 -> '5', 2.5 -> '2.5',
    0.625 -> '0.625' and 0.0625 -> '0.0625' (a fraction with up to 4 decimals is printed exactly, never rounded
    to .62), 1/3 -> '0.333' (others: 3 decimals); NaN -> '?'."""
    value = float(value)
    if value != value:
        return "?"
    for decimals in range(5):
        if abs(value - round(value, decimals)) < 1e-9:
            break
    else:
        decimals = 3
    text = f"{value:.{decimals}f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text in ("-0", "") else text


# Words of check names written in another case in a title: acronyms, and NaN.
_TITLE_WORDS = {"rgb": "RGB", "nan": "NaN", "tv": "TV", "ce": "CE", "kl": "KL", "cnn": "CNN", "sae": "SAE",
                "pgd": "PGD", "mnist": "MNIST", "adam": "Adam", "sgd": "SGD"}


def snake_case(name: str) -> str:
    """SimpleCNN -> simple_cnn, GRLNet -> grl_net, grad_cam -> grad_cam."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


@functools.lru_cache(maxsize=1)
def _course_names() -> tuple[str, ...]:
    """The graded functions and classes of every lesson of the default course (none if it does not load)."""
    try:
        from shortcutlab.course import load_course

        return load_course().graded_names
    except Exception:  # noqa: BLE001 - a title never fails for want of a course
        return ()


def check_title(name: str, function: str, names: Iterable[str] | None = None) -> str:
    """A check's title, a readable phrase made from its test function's name: without ``test_`` and the graded
    function's name (``test_colorize_matches_the_formula`` -> 'matches the formula'), a leading-zero pair as a
    decimal (``between_0_1_and_0_3`` -> 'between 0.1 and 0.3'), the course's identifiers (``function`` and
    ``names``, the graded functions and classes; default: those of the default course) in their own spelling
    (``simplecnn`` -> 'SimpleCNN', ``symmetric_kl`` -> 'symmetric_kl') and acronyms in capitals (RGB, NaN, TV)."""
    words = name.removeprefix("test_")
    for prefix in dict.fromkeys((function, function.lower(), snake_case(function))):
        if words.startswith(prefix + "_"):
            words = words.removeprefix(prefix + "_")
            break
    words = f"_{words}_"
    names = _course_names() if names is None else names
    for identifier in sorted({function, *names}, key=len, reverse=True):
        for spelling in dict.fromkeys((identifier.lower(), snake_case(identifier))):
            words = words.replace(f"_{spelling}_", f"_{identifier.replace('_', '#')}_")
    words = re.sub(r"(?<=_)0_(\d+)(?=_)", r"0.\1", words)  # 0_1 -> 0.1: no number starts with 0 but 0 itself
    text = " ".join(_TITLE_WORDS.get(word, word) for word in words.strip("_").split("_"))
    return text.replace("#", "_")


def rounded(value: float) -> float:
    """A score as CSVs and JSON store it: a float rounded to 4 decimals."""
    return round(float(value), 4)


def load_failure(load: LoadOutcome, *, for_student: bool) -> str:
    """What stopped a submission's loading, in a few words ('' if nothing did): for the instructor 'cell 3 timed out
    while loading' or 'its code raised while loading'; for the student 'Cell 3 did not finish in time while loading'
    or 'Your code raised an error while loading'."""
    if not load.failed:
        return ""
    timed_out = load.status == LoadStatus.TIMEOUT
    if for_student:
        where = f"Cell {load.cell}" if load.cell else "Your code"
        return f"{where} {'did not finish in time' if timed_out else 'raised an error'} while loading"
    where = f"cell {load.cell}" if load.cell else "its code"
    return f"{where} {'timed out' if timed_out else 'raised'} while loading"
