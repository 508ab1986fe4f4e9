"""Every mutant's score on its function, under several seeds: the table of fair partial credit.

    python benchmarks/mutant_scores.py [--seeds 0-9] [--jobs 2] [--lessons 00,03] [--json FILE] [--compare BEFORE.json]

Grades each tests/mutants/<lesson>/<function>__<slip>.py (one graded function broken) with the grading engine, once
per seed, and prints one row per mutant: its points on the broken function (the same under every seed, or the range
it spans), the checks it failed, and the whole submission's score. ``--json`` keeps the table;
``--compare`` adds a column with the score of an earlier table (e.g. one written before a change of the checks).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shortcutlab.course import load_course  # noqa: E402
from shortcutlab.grading.engine.runner import grade  # noqa: E402
from shortcutlab.grading.wording import points  # noqa: E402


def parse_seeds(text: str) -> list[int]:
    """'0-9' or '0,3,7' -> the seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        low, dash, high = part.partition("-")
        seeds += list(range(int(low), int(high) + 1)) if dash else [int(low)]
    return seeds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-9", help="seeds to grade under, e.g. 0-9 or 0,5 (default 0-9)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", metavar="FILE", help="write the table as JSON")
    parser.add_argument("--compare", metavar="FILE", help="an earlier --json table to show beside this one")
    parser.add_argument("--lessons", metavar="LIST", help="lesson numbers to grade, e.g. 00,03 (default all)")
    args = parser.parse_args()
    course = load_course()
    wanted = tuple(args.lessons.split(",")) if args.lessons else None

    def chosen(lesson: str) -> bool:
        return wanted is None or lesson[:2] in wanted

    mutants = sorted(p for p in (ROOT / "tests" / "mutants").glob("*/*.py") if chosen(p.parent.name))
    correct = sorted(p for p in (ROOT / "tests" / "submissions").glob("*.py") if chosen(p.stem))
    seeds = parse_seeds(args.seeds)
    rows: dict[str, dict] = {}
    short_of_full: list[str] = []
    start = time.monotonic()
    for seed in seeds:
        report = grade(mutants + correct, jobs=args.jobs, seed=seed, course=course, warn=lambda message: None)
        for result in report.submissions:
            path = Path(result.path)
            if path.parent.name == "submissions":
                if result.score < result.max_score - 1e-9:
                    short_of_full.append(f"{path.stem} seed {seed}: {result.score:g} / {result.max_score:g}")
                continue
            key = f"{path.parent.name}/{path.stem}"
            function = path.stem.partition("__")[0]
            got, most = result.function_scores().get(function, (0.0, 0.0))
            row = rows.setdefault(key, {"lesson": path.parent.name, "function": function, "max": most, "scores": {},
                                        "totals": {}, "failed": {}})
            row["scores"][seed] = round(got, 4)
            row["totals"][seed] = [round(result.score, 4), round(result.max_score, 4)]
            row["failed"][seed] = sorted(c.name for c in result.checks if c.function == function
                                         and c.status != "passed")
    seconds = time.monotonic() - start
    before = json.loads(Path(args.compare).read_text())["mutants"] if args.compare else {}
    print(f"{len(rows)} mutants x {len(seeds)} seeds graded in {seconds:.0f} s")
    header = f"{'mutant':<72} {'function':>12}" + (f" {'before':>12}" if before else "") + "  seeds"
    print(header)
    flipping = 0
    for key, row in rows.items():
        values = sorted(set(row["scores"].values()))
        flipping += len(values) > 1
        now = points(values[0]) if len(values) == 1 else f"{points(values[0])}..{points(values[-1])}"
        text = f"{key:<72} {now + ' / ' + points(row['max']):>12}"
        if before:
            old = before.get(key)
            old_values = sorted(set(old["scores"].values())) if old else []
            old_text = "-" if not old_values else points(old_values[0]) if len(old_values) == 1 else \
                f"{points(old_values[0])}..{points(old_values[-1])}"
            text += f" {old_text + ' / ' + points(old['max']) if old else '-':>12}"
        print(text + ("  same" if len(values) == 1 else "  DIFFERS"))
    print(f"{flipping} of {len(rows)} mutants score differently under different seeds")
    for key, row in rows.items():
        failed = [set(names) for names in row["failed"].values()]
        flips = sorted(set().union(*failed) - set.intersection(*failed))
        if flips:
            print(f"  {key}: verdict differs across seeds for {', '.join(flips)}")
    print("correct submissions: full marks under every seed" if not short_of_full else
          "correct submissions short of full marks: " + "; ".join(short_of_full))
    if args.json:
        Path(args.json).write_text(json.dumps({"seeds": seeds, "mutants": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
