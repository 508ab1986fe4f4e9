"""The ``shortcutlab`` command: one verb per job."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shortcutlab.errors import ShortcutlabError


def _reproduce(args: argparse.Namespace) -> int:
    from shortcutlab.data import EMBEDDED
    from shortcutlab.study import TASKS, StudyConfig, parse_tasks, run_study

    tasks = parse_tasks(args.tasks) if args.tasks else tuple(TASKS)
    data = args.data if args.data is not None else (EMBEDDED if args.quick else None)
    run_study(StudyConfig(data=data, out=Path(args.out), tasks=tasks, quick=args.quick, force=args.force,
                          quiet=args.quiet, seed=args.seed))
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
    reproduce.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    reproduce.set_defaults(run=_reproduce)
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
