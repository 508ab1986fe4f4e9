"""Numbers as report.md prints them: for people, not for machines."""
from __future__ import annotations


def pct(value: float | None) -> str:
    """A fraction in [0, 1] as a percentage with two decimals ("12.34%"); "—" when there is none."""
    return "—" if value is None else f"{100 * value:.2f}%"


def count(value: float | None, digits: int = 1) -> str:
    """A count or a statistic of counts (median steps, ...): "5", "5.5"; "—" when there is none."""
    if value is None:
        return "—"
    rounded = round(float(value), digits)
    return f"{rounded:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{rounded:.0f}"


def decimal(value: float | None, digits: int = 3) -> str:
    """A plain number with ``digits`` decimals ("0.912"); "—" when there is none."""
    return "—" if value is None else f"{value:.{digits}f}"
