"""Class report benchmark: grade a 100-submission class of the real course, then time `shortcutlab report`.

    python benchmarks/bench_report.py [--jobs 2] [--keep DIR] [--screenshot PNG]

The class: 25 students x 4 lessons (00, 01, 03, 04), each submission the lesson's solution, its untouched stub or
one of its mutants (tests/mutants/, each a typical mistake), chosen in turn, and one student who hands in nothing
(a roster of 26). Prints the grading time, the report's time and the sizes of report.html and check_stats.csv;
``--screenshot`` renders the page in headless Chromium (Debian's /usr/bin/chromium) into a PNG.
"""
from __future__ import annotations

import argparse
import itertools
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shortcutlab.course import load_course  # noqa: E402

LESSONS = ("00_colored_mnist", "01_cheater", "03_gradcam", "04_debiasing")
STUDENTS = 25


def build_class(folder: Path) -> Path:
    """submitted/<student>/<lesson>.<ext> for STUDENTS students; returns the roster file."""
    course = load_course()
    for lesson in LESSONS:
        choices = [course.solution_notebook(lesson), course.lesson_notebook(lesson),
                   *sorted((ROOT / "tests" / "mutants" / lesson).glob("*.py"))]
        for index, source in zip(range(STUDENTS), itertools.cycle(choices)):
            path = folder / "submitted" / f"s{index:03d}" / f"{lesson}{source.suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, path)
    roster = folder / "roster.csv"
    roster.write_text("student_id,name\n" + "".join(f"s{i:03d},Student {i}\n" for i in range(STUDENTS + 1)))
    return roster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", metavar="DIR", help="build and grade the class here and keep it")
    parser.add_argument("--screenshot", metavar="PNG", help="render report.html in headless Chromium into PNG")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-report-"))
    roster = build_class(work)
    out = work / "grades"
    command = [sys.executable, "-m", "shortcutlab"]
    start = time.perf_counter()
    graded = subprocess.run([*command, "grade", "--quiet", "--jobs", str(args.jobs), "--roster", str(roster),
                             "--out", str(out), str(work / "submitted")], capture_output=True, text=True, cwd=ROOT)
    grading = time.perf_counter() - start
    submissions = len(list((work / "submitted").rglob("*.*")))
    print(f"graded {submissions} submissions in {grading:.1f} s (exit {graded.returncode})")
    start = time.perf_counter()
    done = subprocess.run([*command, "report", "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    print(done.stdout.strip() or done.stderr.strip())
    print(f"shortcutlab report: {seconds:.1f} s wall (process start included); report.html "
          f"{(out / 'report.html').stat().st_size / 1024:.0f} KiB, check_stats.csv "
          f"{len((out / 'check_stats.csv').read_text().splitlines()) - 1} checks")
    if args.screenshot:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--headless"])
            page = browser.new_page(viewport={"width": 1200, "height": 1600})
            page.goto((out / "report.html").as_uri())
            page.screenshot(path=args.screenshot, full_page=True)
            browser.close()
        print(f"screenshot: {args.screenshot}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
