"""The ``shortcutlab`` command: one verb per job."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shortcutlab.errors import ShortcutlabError


def _reproduce(args: argparse.Namespace) -> int:
    from shortcutlab.data import EMBEDDED
    from shortcutlab.study import TASKS, StudyConfig, parse_tasks, run_study
    from shortcutlab.study.sweep import parse_rates

    tasks = parse_tasks(args.tasks) if args.tasks else tuple(TASKS)
    if args.seeds < 1:
        raise ShortcutlabError(f"--seeds takes a number of seeds >= 1; got {args.seeds}")
    data = args.data if args.data is not None else (EMBEDDED if args.quick else None)
    rates = parse_rates(args.dominant_rates) if args.dominant_rates else ()
    config = StudyConfig(data=data, out=Path(args.out), tasks=tasks, quick=args.quick, force=args.force,
                         quiet=args.quiet, seed=args.seed, device=args.device, adversarial=args.adversarial,
                         full_curves=args.full_curves, grl_ablation=args.grl_ablation, dominant_rates=rates)
    if not args.quiet:
        from shortcutlab.study.estimate import estimate

        print(f"[shortcutlab] {estimate(config, args.seeds).text()}", flush=True)
    if args.seeds == 1:
        run_study(config)
    else:
        from shortcutlab.study.seeds import run_seeds

        run_seeds(config, args.seeds, run_study)
    return 0


def _lab(args: argparse.Namespace) -> int:
    from shortcutlab.course import find_course_file
    from shortcutlab.lab import open_lab

    extra = args.jupyter[1:] if args.jupyter[:1] == ["--"] else args.jupyter
    return open_lab(find_course_file(args.course).parent, extra)


def _grade(args: argparse.Namespace) -> int:
    import contextlib

    from shortcutlab.grading.integrations.batch import grade_class
    from shortcutlab.grading.outputs.report import render_json, render_line, render_table

    done = [0]
    live = not args.json and not args.quiet and sys.stderr.isatty()

    def progress(line, reused: bool) -> None:
        # With --json, stderr gets one line per submission; otherwise stdout gets them at the end (one line
        # each) and a terminal sees a single progress line that rewrites itself meanwhile.
        done[0] += 1
        if args.quiet:
            return
        if args.json:
            print(f"{'already graded' if reused else 'graded'} {render_line(line)}", file=sys.stderr, flush=True)
        elif live:
            print(f"\r\033[K[{done[0]}] {render_line(line)}", end="", file=sys.stderr, flush=True)

    def warn(message: str) -> None:
        if live:
            print("\r\033[K", end="", file=sys.stderr)
        print(f"shortcutlab: warning: {message}", file=sys.stderr, flush=True)

    # With --json, stdout carries the JSON document and nothing else, whatever gets printed meanwhile.
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        run = grade_class(args.paths, args.out, regrade=args.regrade, lesson=args.lesson, jobs=args.jobs,
                          seed=args.seed, course=args.course, on_result=progress, warn=warn,
                          require_sandbox=args.require_sandbox, roster=args.roster, compare_with=args.compare_with)
    if live:
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    report = run.report
    sys.stdout.write((render_json(report, run.lines) if args.json else
                      render_table(report, details=args.verbose, lines=run.lines)) + "\n")
    sys.stdout.flush()
    for group in run.identical:
        warn(f"identical graded code for {group.lesson}: {', '.join(group.students)}")
    for lesson, students in run.missing.items():
        warn(f"{len(students)} student{'s' if len(students) != 1 else ''} of the roster handed in nothing for "
             f"{lesson}: {', '.join(students)} (missing in grades.csv)")
    not_graded = run.not_graded
    for line in not_graded:
        warn(f"not graded: {line.student}'s {line.result.lesson or 'unknown lesson'} ({line.result.path}), "
             f"status {line.result.status}: {_first_line(line.result.error or line.result.load.message)}")
    if not args.quiet:
        if run.identical:
            print(f"{len(run.identical)} group{'s' if len(run.identical) != 1 else ''} of identical submissions "
                  f"(same graded code, layout and comments ignored): see {run.out / 'identical_submissions.csv'}",
                  file=sys.stderr)
        if run.similarity is not None:
            print(similarity_summary(run.similarity, run.out), file=sys.stderr)
        print(f"{run.graded} graded, {run.reused} already in the gradebook; gradebook, grades.csv, class_matrix.csv, "
              f"results/ and feedback/ in {run.out}", file=sys.stderr)
        if run.awaiting_answers:
            awaiting = run.awaiting_answers
            print(f"{awaiting} written answer{'s' if awaiting != 1 else ''} awaiting manual grading: "
                  f"read {run.out / 'answers'}/<lesson>.md, fill in <lesson>_scores.csv, then `shortcutlab answers "
                  f"--out {run.out} {run.out / 'answers'}/<lesson>_scores.csv`", file=sys.stderr)
        if not_graded:
            print(f"{len(not_graded)} submission{'s' if len(not_graded) != 1 else ''} could not be graded normally "
                  "(exit code 1): see the warnings above and --verbose", file=sys.stderr)
    return 1 if not_graded else 0


SUMMARY_PAIRS = 30  # flagged pairs the terminal lists one per line; the files hold them all


def similarity_summary(report, out: Path) -> str:  # noqa: ANN001 - a SimilarityReport, imported lazily
    """The terminal's lines on a similarity report: the flagged pairs (the first ``SUMMARY_PAIRS``), then where the
    files are."""
    lines = [f"similar graded code, {pair.lesson}: {pair.student.owner} and {pair.other.owner} ({pair.score:.2f})"
             for pair in report.pairs[:SUMMARY_PAIRS]]
    count = len(report.pairs)
    if count > SUMMARY_PAIRS:
        lines.append(f"... and {count - SUMMARY_PAIRS} more pairs")
    lines.append(f"{count} pair{'s' if count != 1 else ''} of similar submissions at or over "
                 f"{report.threshold:.2f} ({report.compared} compared, for the instructor only; no score changes): "
                 f"see {out / 'similarity.html'} and similarity.csv")
    return "\n".join(lines)


def _similarity(args: argparse.Namespace) -> int:
    from shortcutlab.course import load_course
    from shortcutlab.grading.outputs.files import write_text
    from shortcutlab.grading.outputs.similarity import similarity_csv, similarity_html
    from shortcutlab.grading.store.similarity import compare, folder_documents, outside_documents

    course = load_course(args.course)
    threshold = course.grading.similarity_threshold if args.threshold is None else args.threshold
    if not 0 <= threshold <= 1:
        raise ShortcutlabError(f"--threshold {threshold}: give a fraction between 0 and 1")
    documents = folder_documents(args.paths, course, args.lesson)
    if not documents:
        raise ShortcutlabError("no submissions with graded code in " + ", ".join(args.paths) + ": give .ipynb or .py files, "
                          "or folders holding them")
    outside = []
    if args.compare_with:
        if not Path(args.compare_with).is_dir():
            raise ShortcutlabError(f"--compare-with {args.compare_with}: no such folder")
        outside = outside_documents(args.compare_with, course, args.lesson)
    report = compare(documents, course, threshold, outside)
    out = Path(args.out)
    write_text(out / "similarity.csv", similarity_csv(report))
    write_text(out / "similarity.html", similarity_html(report, course))
    print(similarity_summary(report, out))
    return 0


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0][:200] if lines else "no message"


def _answers(args: argparse.Namespace) -> int:
    from shortcutlab.course import load_course
    from shortcutlab.grading.integrations.batch import refresh
    from shortcutlab.grading.store.answers import ANSWERS_FOLDER

    run = refresh(args.out, load_course(args.course), args.scores)
    if args.scores:
        print(f"imported {run.imported} score{'s' if run.imported != 1 else ''} of written answers from "
              f"{', '.join(args.scores)}" + (f" ({run.unchanged} other row{'s' if run.unchanged != 1 else ''} as "
                                             "already stored)" if run.unchanged else ""))
    print(f"{run.graded} written answers graded, {run.awaiting} awaiting manual grading; grades.csv, "
          f"class_matrix.csv, results/, feedback/ and {ANSWERS_FOLDER}/ rewritten in {args.out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    import time

    from shortcutlab.course import load_course
    from shortcutlab.grading.integrations.batch import class_report

    start = time.monotonic()
    report, written = class_report(args.out, load_course(args.course), args.at_risk)
    print(f"class report of {report.submissions} submissions by {report.students} students in "
          f"{time.monotonic() - start:.1f} s: {', '.join(map(str, written))}")
    return 0


def _export_nbgrader(args: argparse.Namespace) -> int:
    from shortcutlab.grading.integrations.nbgrader import export_nbgrader

    lessons = [part for part in args.lessons.split(",") if part] if args.lessons else None
    written = export_nbgrader(args.dir, course=args.course, lessons=lessons, course_id=args.course_id,
                              seed=args.seed)
    sources = sorted({p.parent.name for p in written if p.parent.parent.name == "source"})
    print(f"wrote an nbgrader course root in {args.dir} ({len(sources)} assignments: {', '.join(sources)}).\n"
          f"Next: cd {args.dir} && nbgrader generate_assignment {sources[0] if sources else '<id>'}; put "
          f"submissions in submitted/<student>/<id>/<id>.ipynb, then nbgrader autograde <id> and nbgrader export.")
    return 0


def _gradescope(args: argparse.Namespace) -> int:
    from shortcutlab.grading.integrations.gradescope_bundle import write_bundle

    archive = write_bundle(args.dir, course=args.course, lesson=args.lesson, seed=args.seed)
    print(f"wrote {archive}: upload it as the autograder of a Gradescope programming assignment"
          + (f" for {args.lesson}" if args.lesson else ""))
    return 0


def _student_edition(args: argparse.Namespace, course) -> int:
    from shortcutlab.edition.build import build_student_edition

    models = None if args.models is None else [name for name in args.models.split(",") if name.strip()]
    edition = build_student_edition(args.student_edition, course, through=args.through, models=models,
                                    artifacts=args.artifacts)
    size = edition.wheel.stat().st_size / 1e6
    print(f"wrote {edition.wheel} ({size:.1f} MB) and {len(edition.lessons)} lessons in "
          f"{Path(args.student_edition) / 'lessons'}")
    held = sorted({f"{a.lesson}.{a.function}" for a in edition.withheld})
    print(("released through " + edition.released[-1] if edition.released else "no lesson released") + "; "
          + (f"{len(edition.withheld)} library definitions withheld, the answers of {len(held)} graded functions"
             if held else "nothing withheld"))
    print("hand students the wheel and the lessons: `pip install " + edition.wheel.name + "` next to torch")
    return 0


def _release(args: argparse.Namespace) -> int:
    from shortcutlab.course import load_course
    from shortcutlab.release import check_release, points_problems, release, release_self_study

    course = load_course(args.course)  # the only source of each check cell's points
    if args.through is not None and args.student_edition is None:
        raise ShortcutlabError("--through says how far a student edition releases: give --student-edition OUT too")
    if args.student_edition is not None:
        if args.check or args.self_study is not None:
            raise ShortcutlabError("--student-edition writes an edition of its own: leave out --check and --self-study")
        return _student_edition(args, course)
    if args.self_study is not None:
        if args.check:
            raise ShortcutlabError("--self-study writes an edition and --check writes nothing: give one of them")
        changed = release_self_study(args.solutions, args.self_study, course)
        for path in changed:
            print(f"wrote {path}")
        print(f"the self-study edition is in {args.self_study}: each lesson with its solutions and model answers, "
              f"collapsed; open it with `jupyter lab {args.self_study}`")
        return 0
    if args.check:
        problems = points_problems(args.solutions, args.lessons, course)
        for line in problems:
            print(f"points: {line}", file=sys.stderr)
        stale = check_release(args.solutions, args.lessons, course)
        for name in stale:
            print(f"out of sync: {Path(args.lessons) / name}", file=sys.stderr)
        if stale or problems:
            course_flag = f" --course {args.course}" if args.course else ""
            print(f"run `shortcutlab release --solutions {args.solutions} --lessons {args.lessons}{course_flag}`",
                  file=sys.stderr)
        return 1 if stale or problems else 0
    changed = release(args.solutions, args.lessons, course)
    for path in changed:
        print(f"wrote {path}")
    if not changed:
        print(f"{args.lessons} is up to date with {args.solutions}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shortcutlab", description="A test-driven course on shortcut learning.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    reproduce = verbs.add_parser("reproduce", help="run the Colored MNIST study end to end",
                                 description="Run the study: results.json, report.md and figures into --out.")
    reproduce.add_argument("--data", metavar="DIR", help="MNIST folder in torchvision layout (MNIST/raw/), or "
                           "'embedded' for the packaged 5,000 digits; default: $SHORTCUTLAB_DATA, a download, "
                           "then the embedded digits")
    reproduce.add_argument("--out", default="artifacts", metavar="DIR", help="output folder (default ./artifacts)")
    reproduce.add_argument("--tasks", metavar="LIST", help="comma-separated task numbers, e.g. 0,1 (default: all)")
    reproduce.add_argument("--quick", action="store_true",
                           help="fast run on the embedded digits (unless --data is given)")
    reproduce.add_argument("--force", action="store_true", help="retrain models even if cached in --out")
    reproduce.add_argument("--seed", type=int, default=42, help="seed of splits, colors and training (default 42)")
    reproduce.add_argument("--seeds", type=int, default=1, metavar="N",
                           help="run the study for N seeds (--seed, --seed + 1, ...), each into --out/seeds/seed-<s>/, "
                                "and report every number as a mean with its 95%% t-interval; differences are claimed "
                                "only where the interval of the seed-paired difference excludes 0 (default 1)")
    reproduce.add_argument("--adversarial", action="store_true",
                           help="also train the adversarially trained control (lesson 5's; about 2 minutes on full "
                                "MNIST on 2 CPU cores) and add it to the tables, the attack and the robustness curves")
    reproduce.add_argument("--full-curves", action="store_true",
                           help="robust accuracy at seven budgets from eps 0 to 0.3, with the gradient-masking checks, "
                                "instead of three (0, 0.02, 0.05)")
    reproduce.add_argument("--grl-ablation", action="store_true",
                           help="also train GRL without recolored data (the adversary on the images' own colors) and "
                                "at color weights 0.1 and 2, beside the default 0.5 (five models more)")
    reproduce.add_argument("--dominant-rates", metavar="LIST",
                           help="correlation sweep: train ERM, consistency, GRL and GRL without recolored data at each "
                                "dominant-color rate, e.g. 0.95,0.98,0.99,0.995,1.0, and plot hard-test accuracy "
                                "against the rate (four models per rate; those at 0.95 are the study's)")
    reproduce.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    reproduce.add_argument("--device", default="auto", metavar="DEVICE",
                           help="where to train and measure: auto (a CUDA GPU if torch sees one, else the CPU), "
                                "cpu, cuda or cuda:<index> (default auto)")
    reproduce.set_defaults(run=_reproduce)
    lab = verbs.add_parser("lab", help="open the lessons in JupyterLab, in a working copy (work/) that release "
                           "never overwrites", description="Copy each lesson from lessons/ into work/ (ignored by git) "
                           "the first time, never over your own copy, and open JupyterLab there. Options after "
                           "`--` go to JupyterLab, e.g. `shortcutlab lab -- --no-browser --port 8899`.")
    lab.add_argument("--course", metavar="PATH", help="course.yml of the course to open (default: the repository's)")
    lab.add_argument("jupyter", nargs=argparse.REMAINDER, help="JupyterLab's own options, after --")
    lab.set_defaults(run=_lab)
    grade = verbs.add_parser("grade", help="grade lesson notebooks or .py files against the autograder checks",
                             description="Grade submissions (.ipynb or .py; folders are searched), each in its own "
                             "process, into a gradebook in --out, with grades.csv, class_matrix.csv (for an LMS), "
                             "identical_submissions.csv, Gradescope results and feedback. Prints one line per "
                             "submission (student, lesson, score/max, written answers, late penalty, status). Files "
                             "are recognised as an LMS downloads them (Canvas, Moodle, Gradescope, nbgrader), and of "
                             "several files of one student and lesson the latest resubmission counts. "
                             "Exit code 0: all graded; 1: some submission could not be graded (unreadable, or its "
                             "loading failed or timed out: see the warnings); a function that timed out was graded; "
                             "2: bad arguments, course.yml or roster.")
    grade.add_argument("paths", nargs="+", metavar="PATH", help="submissions: notebooks, .py files or folders")
    grade.add_argument("--lesson", metavar="ID", help="lesson of every submission (default: from each file name)")
    grade.add_argument("--jobs", type=int, metavar="N", help="submissions graded at once (default: CPU count)")
    grade.add_argument("--json", action="store_true", help="print one JSON document to stdout and nothing else")
    grade.add_argument("--seed", type=int, help="base seed of the checks' random inputs, the same for every "
                       "submission of a lesson (default: course.yml's grading.seed, else a secret the gradebook in "
                       "--out draws once and keeps, so grades are reproducible and inputs unknown to students)")
    grade.add_argument("--course", metavar="PATH", help="course.yml to use (default: the repository's)")
    grade.add_argument("--quiet", action="store_true", help="no progress lines or run summary on stderr")
    grade.add_argument("--verbose", "-v", action="store_true", help="after each submission's line, its file, error, "
                       "points per function and failing checks (visible checks' messages; hidden checks by name only)")
    grade.add_argument("--out", default="grades", metavar="DIR",
                       help="gradebook (gradebook.sqlite), grades.csv, class_matrix.csv, identical_submissions.csv, "
                       "Gradescope results/ and student feedback/ "
                       "(default ./grades); submissions it already holds are not graded again")
    grade.add_argument("--require-sandbox", action="store_true", help="refuse to grade (exit 2) where the OS sandbox "
                       "(bubblewrap) cannot run, instead of grading with process isolation only")
    grade.add_argument("--regrade", action="store_true", help="grade every submission again, even if the gradebook "
                       "holds its grade")
    grade.add_argument("--roster", metavar="FILE", help="the class roster, a CSV file with a student_id column and "
                       "optional name (or first_name, last_name) and email: every student on it gets a row per lesson "
                       "(missing if nothing was handed in), hand-ins are matched to it by id, email or name, and files "
                       "of students not on it are listed (default: course.yml's grading.roster, else the roster this "
                       "gradebook was last given)")
    grade.add_argument("--compare-with", metavar="DIR", help="a folder of known outside solutions (.ipynb or .py "
                       "named after their lesson) that the similarity report compares every submission with too "
                       "(kept in the gradebook for later runs)")
    grade.set_defaults(run=_grade)
    similarity = verbs.add_parser("similarity", help="find similar submissions in any folder (an nbgrader "
                                  "submitted/, a Gradescope or LMS export)",
                                  description="Compare each submission's graded code with every other student's for "
                                  "the same lesson, with the course's reference implementations and their helpers, "
                                  "and with --compare-with's known outside solutions (copydetect: names, comments "
                                  "and layout ignored; the released stub never counts). Writes similarity.csv (lesson, "
                                  "student, other, score: one row per pair at or over the threshold) and "
                                  "similarity.html (each pair side by side, shared code highlighted) into --out. "
                                  "Grades nothing and runs no submission. `grade` writes the same files.")
    similarity.add_argument("paths", nargs="+", metavar="PATH", help="submissions: notebooks, .py files or folders")
    similarity.add_argument("--out", default="similarity", metavar="DIR", help="where the report goes (default "
                            "./similarity)")
    similarity.add_argument("--lesson", metavar="ID", help="lesson of every submission (default: from each file name)")
    similarity.add_argument("--compare-with", metavar="DIR", help="a folder of known outside solutions")
    similarity.add_argument("--threshold", type=float, metavar="X", help="flag pairs sharing at least this fraction "
                            "(default: course.yml's grading.similarity_threshold, 0.75)")
    similarity.add_argument("--course", metavar="PATH", help="course.yml to use (default: the repository's)")
    similarity.set_defaults(run=_similarity)
    answers = verbs.add_parser("answers", help="import the scores of written answers graded by hand",
                               description="Written answers (course.yml's `answers`) are graded by hand: `grade` "
                               "writes answers/<lesson>.md (each question, its model answer, each student's answer) "
                               "and answers/<lesson>_scores.csv into --out. Fill in the CSV's points (and comments) "
                               "and import it here: every row is checked (student, lesson, question, points within "
                               "the question's) and all are stored in the gradebook, or none. grades.csv, "
                               "class_matrix.csv, results/ and feedback/ are rewritten with the answers' points; "
                               "without a file, only rewritten. Exit code 2 names each bad row.")
    answers.add_argument("scores", nargs="*", metavar="SCORES.csv",
                         help="scores files (columns lesson, student, question, points, comment; rows without "
                         "points are skipped)")
    answers.add_argument("--out", default="grades", metavar="DIR", help="the gradebook's folder, as `grade --out` "
                         "(default ./grades)")
    answers.add_argument("--course", metavar="PATH", help="course.yml to use (default: the repository's)")
    answers.set_defaults(run=_answers)
    report = verbs.add_parser("report", help="write a class report of a graded --out folder (report.html, "
                              "check_stats.csv)",
                              description="From the gradebook `shortcutlab grade` wrote into --out: report.html (score "
                              "distributions per lesson and function, each check's pass rate with hidden checks by "
                              "name, the most common diagnosed mistakes with example students, errors and timeouts, "
                              "students at risk, missing hand-ins, written-answer grading progress) and "
                              "check_stats.csv (lesson, function, check, submissions, passed, pass_rate), both "
                              "into --out. For the instructor only.")
    report.add_argument("--out", default="grades", metavar="DIR", help="the graded folder, as `grade --out` "
                        "(default ./grades); the report is written there")
    report.add_argument("--at-risk", type=float, default=0.5, metavar="SHARE", help="flag students below this share "
                        "of the points of the lessons graded so far (default 0.5)")
    report.add_argument("--course", metavar="PATH", help="course.yml to use (default: the repository's)")
    report.set_defaults(run=_report)
    nbgrader = verbs.add_parser("export-nbgrader", help="write an nbgrader course root for the lessons",
                                description="Lay out an nbgrader course root in DIR (nbgrader_config.py, "
                                "source/<id>/<id>.ipynb, the course's checks): nbgrader generate_assignment, autograde "
                                "and export then work there, and autograde scores like `shortcutlab grade`.")
    nbgrader.add_argument("dir", metavar="DIR", help="the course root to write (created if missing)")
    nbgrader.add_argument("--lessons", metavar="LIST", help="comma-separated lesson ids (default: all)")
    nbgrader.add_argument("--course", metavar="PATH", help="course.yml to use (default: the repository's)")
    nbgrader.add_argument("--course-id", default="shortcutlab", metavar="ID", help="nbgrader course id")
    nbgrader.add_argument("--seed", type=int, help="base seed of the checks' inputs (default: course.yml's "
                          "grading.seed, else the secret of an earlier export in DIR, else a new secret)")
    nbgrader.set_defaults(run=_export_nbgrader)
    gradescope = verbs.add_parser("gradescope", help="write a Gradescope autograder bundle",
                                  description="Write a Gradescope autograder (setup.sh, run_autograder, shortcutlab's "
                                  "source and the course's checks) into DIR and zip it as DIR/autograder.zip.")
    gradescope.add_argument("dir", metavar="DIR", help="folder for the bundle (created if missing)")
    gradescope.add_argument("--lesson", metavar="ID", help="lesson of every upload (default: from the file name)")
    gradescope.add_argument("--seed", type=int, help="base seed of the checks' inputs (default: course.yml's "
                            "grading.seed, else a secret drawn for this bundle)")
    gradescope.add_argument("--course", metavar="PATH", help="course.yml to use (default: the repository's)")
    gradescope.set_defaults(run=_gradescope)
    release = verbs.add_parser("release", help="generate lessons/ (student notebooks) from solutions/",
                               description="Write each lesson from its solution notebook: solution regions become "
                               "stubs (a written answer's model answer becomes a prompt), outputs are cleared, "
                               "check and answer cells get their points from course.yml (in solutions/ too). "
                               "Exit code 1 with --check when lessons are out of sync or points "
                               "differ from course.yml.")
    release.add_argument("--solutions", default="solutions", metavar="DIR",
                         help="solution notebooks (default ./solutions)")
    release.add_argument("--lessons", default="lessons", metavar="DIR", help="lesson notebooks (default ./lessons)")
    release.add_argument("--check", action="store_true", help="write nothing; list lessons that differ, and check "
                         "cells whose points differ from course.yml, and exit 1")
    release.add_argument("--self-study", metavar="OUT", help="write the self-study edition into OUT instead (lessons/ "
                         "and solutions/ untouched): each lesson with every exercise's solution after its check cell "
                         "and every question's model answer after its answer cell, collapsed. Not for a graded "
                         "course: it is the answer key")
    release.add_argument("--student-edition", metavar="OUT", help="write what a graded course hands to students "
                         "into OUT instead: OUT/lessons/*.ipynb and one wheel of the library that holds no answer of "
                         "a lesson not released (docs/integrity.md)")
    release.add_argument("--through", metavar="LESSON", help="with --student-edition: release the answers of the "
                         "lessons up to LESSON (a lesson id) as code; default: none")
    release.add_argument("--models", metavar="NAMES", help="with --student-edition: the study models to ship, "
                         "comma-separated (default: course.yml's student_edition.models; '' for none)")
    release.add_argument("--artifacts", metavar="DIR", help="with --student-edition: the artifacts folder whose "
                         "models the edition ships, trained there if missing (default: the one `shortcutlab reproduce` "
                         "uses)")
    release.add_argument("--course", metavar="PATH", help="course.yml, the source of every check cell's points "
                         "(default: the repository's)")
    release.set_defaults(run=_release)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ShortcutlabError as exc:
        print(f"shortcutlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("shortcutlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
