"""Grading benchmark: a 30-submission class with `shortcutlab grade --jobs 2`, and the cost of isolation.

    python benchmarks/bench_grading.py [--jobs 2] [--keep DIR] [--sandbox-only [--lessons 00,03]]
    python benchmarks/bench_grading.py --baseline REV [--rounds 3]
    python benchmarks/bench_grading.py --similarity 300 [--lesson 00_colored_mnist]

The class mixes the 7 solution notebooks (full marks), 7 untouched lessons (0), 12 mutants from tests/mutants/
(one wrong function each) and 4 broken submissions (bad JSON, a syntax error, a process exit while loading, a
function that raises). Then, on the 27 submissions that are safe to run in this very process, it compares the
isolated grading time of each submission (grading server, a forked process per submission and per function,
run one at a time) with running the same cells and checks here, with the same seeds and no processes at all.
Last, it grades those submissions one at a time in the OS sandbox (bubblewrap) and without it (today's process
isolation, SHORTCUTLAB_SANDBOX=none) and prints the sandbox's cost per submission: the ratio and the extra seconds
(target: at most +0.5 s), and the judge's share (the re-run of each passed check in a process where no student
code ran, timed inside the run): sandbox + judge against neither. ``--sandbox-only`` runs only that comparison
(``--lessons`` picks lessons by number).
``--baseline REV`` grades the class with this tree and with the commit REV (its tracked files, unpacked in a
temporary folder), in alternating order for ``--rounds`` rounds, and prints each one's median time per submission,
the ratio of this tree's to the baseline's, and whether every submission got the same score from both.
``--similarity N`` grades N submissions of one lesson (the two correct ones and the lesson's mutants, each student's
with its own local names, tests/test_similarity.py's renaming, and a few no-op lines of its own: nearly every pair
overlaps heavily and none is an exact copy, the report's worst case) with ``shortcutlab grade``'s class run, and prints the
time the similarity report takes within it, as a ratio to the rest of the run (target: at most +25%).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shortcutlab.course import load_course  # noqa: E402
from shortcutlab.grading.integrations.batch import grade_class  # noqa: E402
from shortcutlab.grading.engine import sandbox  # noqa: E402
from shortcutlab.grading.engine.execute import CheckContext, exec_cells, run_check  # noqa: E402
from shortcutlab.grading.engine import verdict  # noqa: E402
from shortcutlab.grading.engine.protocol import CheckReport  # noqa: E402
from shortcutlab.grading.registry import check_seed, collect_checks, import_check_file, plan_checks  # noqa: E402
from shortcutlab.grading.engine.runner import Server  # noqa: E402
from shortcutlab.grading.engine.submission import load_submission  # noqa: E402

SEED = 0  # the base seed of every grading here, so in-process and isolated scores can be compared
MUTANTS_PER_LESSON = {"00_colored_mnist": 2, "01_cheater": 2, "02_activation_maximization": 2, "03_gradcam": 2,
                      "04_debiasing": 2, "05_adversarial": 1, "06_sparse_autoencoder": 1}


def build_class(folder: Path) -> tuple[list[Path], list[Path]]:
    """Write the class as submitted/<student>/<lesson>.<ext>; returns (all submissions, the safe ones)."""
    course = load_course()
    made: list[Path] = []
    safe: list[Path] = []

    def put(student: str, lesson: str, source: Path | None, text: str | None = None, suffix: str = ".ipynb") -> Path:
        path = folder / student / f"{lesson}{source.suffix if source else suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(source.read_bytes() if source else text.encode())
        made.append(path)
        return path

    for lesson in course.lessons:
        safe.append(put(f"solid_{lesson.id[:2]}", lesson.id, course.solution_notebook(lesson)))
        safe.append(put(f"blank_{lesson.id[:2]}", lesson.id, course.lesson_notebook(lesson)))
        for i, mutant in enumerate(sorted((ROOT / "tests" / "mutants" / lesson.id).glob("*.py"))
                                   [:MUTANTS_PER_LESSON[lesson.id]]):
            safe.append(put(f"mutant_{lesson.id[:2]}_{i}", lesson.id, mutant))
    correct = (ROOT / "tests" / "submissions" / "04_debiasing.py").read_text()
    put("broken_json", "00_colored_mnist", None, '{"cells": [', ".ipynb")
    put("broken_syntax", "03_gradcam", None, "def grad_cam(model, images, targets)\n    return images\n", ".py")
    put("broken_exit", "06_sparse_autoencoder", None, "import os\nos._exit(3)\n", ".py")
    safe.append(put("broken_raises", "04_debiasing", None,
                    correct + "\n\ndef symmetric_kl(p, q):\n    raise ValueError('oops')\n", ".py"))
    return made, safe


def grade_in_process(paths: list[Path]) -> dict[str, tuple[float, float]]:
    """(seconds, score) per submission, running its cells and checks in this process (no isolation)."""
    course = load_course()
    for name in course.grading.preload:  # what a grading server imports once, before any submission
        __import__(name)
    checks = {lesson.id: collect_checks(import_check_file(course.check_file(lesson))) for lesson in course.lessons}
    plans = {lesson.id: plan_checks(course, lesson) for lesson in course.lessons}
    import torch

    torch.set_num_threads(1)
    out = {}
    for path in paths:
        start = time.perf_counter()
        submission = load_submission(path, course)
        lesson = course.lesson(submission.lesson)
        namespace: dict = {"__name__": "__submission__"}
        cells = [cell.to_dict() for cell in submission.cells]
        notes, _ = exec_cells(cells, namespace, course.timeout(lesson), course.load_timeout(lesson),
                              course.grading.output_limit)
        context = CheckContext(namespace, {c["filename"] for c in cells}, notes)
        outcomes = {}
        for planned in plans[lesson.id]:
            outcome = run_check(checks[lesson.id][planned.name], context, check_seed(SEED, lesson.id, planned.name),
                                planned.timeout, planned.function, course.grading.output_limit)
            outcomes[planned.name] = CheckReport(outcome.status)
        # scored as the grader scores: property checks count once the values are right
        scored = verdict.score(plans[lesson.id], outcomes, None, [], course.grading.output_limit, course.graded_names)
        out[str(path)] = (time.perf_counter() - start, sum(c.score for c in scored))
    return out


def _serial(paths: list[Path], out: Path, mode: str) -> tuple[float, dict[str, float], dict[str, float], set]:
    """Grade ``paths`` one at a time with the sandbox on (``bubblewrap``) or off (``none``): (wall seconds, seconds
    and score per submission, the sandbox modes the results record)."""
    saved = os.environ.get(sandbox.SANDBOX_ENV)
    os.environ[sandbox.SANDBOX_ENV] = mode
    try:
        start = time.perf_counter()
        report = grade_class(paths, out, jobs=1, regrade=True, seed=SEED, require_sandbox=mode == sandbox.BUBBLEWRAP,
                             warn=lambda message: None).report
        wall = time.perf_counter() - start
    finally:
        if saved is None:
            os.environ.pop(sandbox.SANDBOX_ENV, None)
        else:
            os.environ[sandbox.SANDBOX_ENV] = saved
    return (wall, {s.path: s.seconds for s in report.submissions}, {s.path: s.score for s in report.submissions},
            {s.sandbox for s in report.submissions}, {s.path: s.judge_seconds for s in report.submissions})


def sandbox_cost(paths: list[Path], work: Path) -> None:
    """Print the OS sandbox's cost per submission against today's isolation (both one at a time, same seeds)."""
    why = sandbox.probe(str(ROOT))
    if why is not None:
        print(f"OS sandbox: cannot run here ({why}); no comparison")
        return
    for mode in (sandbox.NONE, sandbox.BUBBLEWRAP):  # server start alone, each way
        os.environ[sandbox.SANDBOX_ENV] = mode
        server = Server(list(load_course().grading.preload), mode,
                        [str(load_course().check_file(lesson)) for lesson in load_course().lessons])
        start = time.perf_counter()
        server.start()
        print(f"grading server start, sandbox {mode}: {time.perf_counter() - start:.2f} s")
        server.close()
    os.environ.pop(sandbox.SANDBOX_ENV, None)
    plain_wall, plain, plain_scores, plain_modes, plain_judge = _serial(paths, work / "grades-plain", sandbox.NONE)
    boxed_wall, boxed, boxed_scores, boxed_modes, _ = _serial(paths, work / "grades-sandbox", sandbox.BUBBLEWRAP)
    rest = [str(p) for p in paths[1:]]  # the first one pays for its server's start
    agree = sum(1 for p in map(str, paths) if abs(plain_scores[p] - boxed_scores[p]) < 1e-6)
    plain_total, boxed_total = sum(plain[p] for p in rest), sum(boxed[p] for p in rest)
    extra = [boxed[p] - plain[p] for p in rest]
    print(f"one at a time, {len(paths)} submissions: {plain_wall:.1f} s wall without the sandbox ({plain_modes}), "
          f"{boxed_wall:.1f} s in it ({boxed_modes}); scores agree on {agree}/{len(paths)}")
    print(f"OS sandbox cost per submission (the other {len(rest)}): {boxed_total / len(rest):.2f} s vs "
          f"{plain_total / len(rest):.2f} s, ratio {boxed_total / plain_total:.2f}x, extra mean "
          f"{statistics.mean(extra):+.2f} s, median {statistics.median(extra):+.2f} s (target <= +0.5 s)")
    # Today's isolation without the judge: the plain run less its judge's re-runs (timed inside the same run).
    judge = sum(plain_judge[p] for p in rest)
    bare = plain_total - judge
    print(f"judge (re-running each passed check where no student code ran): {judge / len(rest):.2f} s per "
          f"submission; sandbox + judge vs neither: {boxed_total / len(rest):.2f} s vs {bare / len(rest):.2f} s, "
          f"ratio {boxed_total / bare:.2f}x, extra {(boxed_total - bare) / len(rest):+.2f} s per submission "
          "(target <= +0.5 s)")


def _grade_with(root: Path, submitted: Path, out: Path, jobs: int) -> tuple[float, dict[str, float]]:
    """``shortcutlab grade`` of the code in ``root`` on ``submitted`` into a fresh ``out``: (wall s, score by file)."""
    env = {**os.environ, "PYTHONPATH": str(root), "SHORTCUTLAB_OFFLINE": "1"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "shortcutlab", "grade", "--jobs", str(jobs), "--json", "--quiet",
                           "--seed", str(SEED), "--course", str(root / "course.yml"), "--out", str(out),
                           str(submitted)], env=env, capture_output=True, text=True, cwd=root)
    wall = time.perf_counter() - start
    if not done.stdout.strip():
        raise SystemExit(f"grading with {root} failed (exit {done.returncode}): {done.stderr[-2000:]}")
    scores = {str(Path(s["path"]).relative_to(submitted)): s["score"] for s in json.loads(done.stdout)["submissions"]}
    return wall, scores


def compare_with_baseline(rev: str, submitted: Path, work: Path, jobs: int, rounds: int) -> None:
    """This tree against commit ``rev`` on the same class, alternating which goes first."""
    baseline = work / "baseline"
    baseline.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(baseline, filter="data")
    count = sum(1 for p in submitted.rglob("*") if p.is_file())
    walls: dict[str, list[float]] = {"baseline": [], "this tree": []}
    scores: dict[str, dict[str, float]] = {}
    for round_ in range(rounds):
        order = [("baseline", baseline), ("this tree", ROOT)]
        for name, root in order if round_ % 2 == 0 else order[::-1]:
            wall, scores[name] = _grade_with(root, submitted, work / f"grades-{name.replace(' ', '-')}-{round_}", jobs)
            walls[name].append(wall)
            print(f"round {round_ + 1} {name}: {wall:.1f} s ({wall / count:.3f} s per submission)", flush=True)
    base, this = statistics.median(walls["baseline"]), statistics.median(walls["this tree"])
    same = scores["baseline"] == scores["this tree"]
    print(f"median per submission: baseline ({rev}) {base / count:.3f} s, this tree {this / count:.3f} s; "
          f"ratio {this / base:.3f} ({(this / base - 1) * 100:+.1f}%); same scores for all {count} submissions: {same}")
    if not same:
        for path in sorted(set(scores["baseline"]) | set(scores["this tree"])):
            if scores["baseline"].get(path) != scores["this tree"].get(path):
                print(f"  {path}: baseline {scores['baseline'].get(path)}, this tree {scores['this tree'].get(path)}")


def padded(source: str, rng) -> str:  # noqa: ANN001 - a random.Random
    """``source`` with a no-op statement after a few statements inside functions, so that no two students' code is
    the same once names are gone: every pair is compared (no copy shares a comparison) and overlaps heavily, the
    report's worst case."""
    lines = source.splitlines()
    out = []
    for line in lines:
        out.append(line)
        body = line.startswith("    ") and not line.rstrip().endswith((":", ",", "(", "[", "{", "\\"))
        if body and rng.random() < 0.15 and not line.strip().startswith(("return", "raise", "@", '"', "#", ")")):
            out.append(line[: len(line) - len(line.lstrip())] + f"_unused = {rng.randrange(100)}")
    return "\n".join(out) + "\n"


def similarity_cost(count: int, lesson: str, work: Path, jobs: int) -> None:
    """Grade ``count`` submissions of ``lesson`` as a class and time the similarity report inside the run."""
    import random

    from shortcutlab.grading.integrations import batch

    sys.path.insert(0, str(ROOT / "tests"))
    from test_similarity import renamed  # noqa: E402 - the tests' renaming of local names

    sources = [ROOT / "tests" / "submissions" / f"{lesson}.py", ROOT / "tests" / "submissions" / "second" / f"{lesson}.py",
               *sorted((ROOT / "tests" / "mutants" / lesson).glob("*.py"))]
    rng = random.Random(0)
    folder = work / "similarity-class"
    for index in range(count):
        text = sources[index % len(sources)].read_text()
        path = folder / f"student{index:03d}" / f"{lesson}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(padded(renamed(text, rng), rng) if index >= len(sources) else text)
    seconds: list[float] = []
    real = batch.class_similarity

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    batch.class_similarity = timed
    start = time.perf_counter()
    run = grade_class([folder], work / "similarity-grades", jobs=jobs, seed=SEED)
    wall = time.perf_counter() - start
    batch.class_similarity = real
    similarity = sum(seconds)
    grading = wall - similarity
    report = run.similarity
    print(f"{count} submissions of {lesson}, --jobs {jobs}: {wall:.1f} s in all; grading {grading:.1f} s, the "
          f"similarity report {similarity:.2f} s ({report.compared} pairs compared, {len(report.pairs)} flagged): "
          f"+{100 * similarity / grading:.1f}% (target: at most +25%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="submissions graded at once (default 2)")
    parser.add_argument("--keep", metavar="DIR", help="build the class and grades here and keep them")
    parser.add_argument("--sandbox-only", action="store_true", help="only compare grading in and out of the OS sandbox")
    parser.add_argument("--lessons", metavar="LIST", help="with --sandbox-only: lesson numbers, e.g. 00,03 (default all)")
    parser.add_argument("--baseline", metavar="REV", help="only compare grading time and scores with commit REV")
    parser.add_argument("--rounds", type=int, default=3, help="with --baseline: rounds of each (default 3)")
    parser.add_argument("--similarity", type=int, metavar="N", help="only time the similarity report of N "
                        "submissions of one lesson against grading them")
    parser.add_argument("--lesson", default="00_colored_mnist", help="with --similarity: the lesson")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-grading-"))
    try:
        if args.similarity:
            print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
            similarity_cost(args.similarity, args.lesson, work, args.jobs)
            return
        files, safe = build_class(work / "submitted")
        if args.baseline:
            print(f"class: {len(files)} submissions; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
            compare_with_baseline(args.baseline, work / "submitted", work, args.jobs, args.rounds)
            return
        if args.sandbox_only:
            wanted = tuple(args.lessons.split(",")) if args.lessons else None
            chosen = [p for p in safe if wanted is None or p.stem[:2] in wanted]
            print(f"{len(chosen)} submissions; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
            sandbox_cost(chosen, work)
            return
        print(f"class: {len(files)} submissions in {work / 'submitted'}; {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f}")

        env = {**os.environ, "PYTHONPATH": str(ROOT), "SHORTCUTLAB_OFFLINE": "1"}
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "shortcutlab", "grade", "--jobs", str(args.jobs), "--json",
                               "--quiet", "--seed", str(SEED), "--out", str(work / "grades"), str(work / "submitted")],
                              env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        report = json.loads(done.stdout)
        graded = report["submissions"]
        full = sum(1 for s in graded if s["max_score"] and s["score"] == s["max_score"])
        zero = sum(1 for s in graded if s["score"] == 0)
        errors = sum(1 for s in graded if s["error"])
        print(f"shortcutlab grade --jobs {args.jobs}: {wall:.1f} s for {len(graded)} submissions "
              f"({wall / len(graded):.2f} s each; {full} full marks, {zero} zero, {errors} errors, exit {done.returncode})")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "shortcutlab", "grade", "--json", "--quiet", "--seed", str(SEED), "--out",
                        str(work / "grades"), str(work / "submitted")], env=env, capture_output=True, check=False)
        print(f"rerun (all in the gradebook): {time.perf_counter() - start:.1f} s")

        server = Server(list(load_course().grading.preload))
        start = time.perf_counter()
        server.start()
        server_start = time.perf_counter() - start
        server.close()
        print(f"one grading server starts (imports torch and the preloads) in {server_start:.1f} s")

        start = time.perf_counter()
        isolated = grade_class(safe, work / "grades-serial", jobs=1, regrade=True).report
        serial_wall = time.perf_counter() - start
        by_path = {s.path: s for s in isolated.submissions}
        here = grade_in_process(safe)
        agree = sum(1 for p in safe if abs(by_path[str(p)].score - here[str(p)][1]) < 1e-6)
        # The first submission's time includes starting the server: leave it out of the per-submission figures.
        pairs = [(by_path[str(p)].seconds, here[str(p)][0]) for p in safe[1:]]
        iso_total, here_total = sum(a for a, _ in pairs), sum(b for _, b in pairs)
        overhead = [a - b for a, b in pairs]
        print(f"isolated, one at a time: {serial_wall:.1f} s wall for {len(safe)} submissions "
              f"(the first one {by_path[str(safe[0])].seconds:.1f} s, with the server start)")
        print(f"in process, same cells, checks and seeds: {sum(t for t, _ in here.values()):.1f} s; scores agree on "
              f"{agree}/{len(safe)}")
        print(f"isolation overhead per submission (the other {len(pairs)}): mean {statistics.mean(overhead):.2f} s, "
              f"median {statistics.median(overhead):.2f} s; isolated {iso_total / len(pairs):.2f} s vs in-process "
              f"{here_total / len(pairs):.2f} s each, ratio {iso_total / here_total:.2f}x")
        sandbox_cost(safe, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
