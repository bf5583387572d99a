"""Command line: ``python -m transformer_workbook COMMAND``.

Commands:
  notebooks generate        regenerate exercises/ from solutions/
  notebooks execute PATH..  execute notebooks in place (outputs, counts 1..n, no widget state)
  notebooks links           point badges and setup cells at the repository in _config.yml
  notebooks toc             write _toc.yml and README.md's chapter table from chapters.py
  grade SUBMISSION..        grade learners' exercise notebooks (see book/instructors.md)
"""

from __future__ import annotations

import argparse
import pathlib
import sys


def _notebooks(args: argparse.Namespace) -> int:
    from . import notebook_tools as nt

    root = pathlib.Path(args.root)
    if args.action == "generate":
        for path in nt.generate_exercises(root):
            print(f"wrote {path}")
    elif args.action == "links":
        for path in nt.sync_links(root):
            print(f"updated {path}")
    elif args.action == "toc":
        for path in nt.write_tables(root):
            print(f"updated {path}")
    elif args.action == "execute":
        for p in args.paths:
            seconds = nt.execute_notebook(pathlib.Path(p))
            print(f"executed {p} in {seconds:.1f} s")
    return 0


def _grade(args: argparse.Namespace) -> int:
    from . import grading

    return grading.main(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m transformer_workbook", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    nb = sub.add_parser("notebooks", help="maintain the course notebooks")
    nb.add_argument("action", choices=["generate", "execute", "links", "toc"])
    nb.add_argument("paths", nargs="*")
    nb.add_argument("--root", default=".", help="the course repository (default: .)")
    nb.set_defaults(func=_notebooks)
    gr = sub.add_parser(
        "grade",
        help="grade learners' exercise notebooks",
        description="Execute each submission in a fresh kernel and grade its exercises with the "
        "course's checks, judged outside the learner's process. Exit status 0 when every "
        "submission got a report (whatever its score); 1 when the grader itself failed.",
    )
    gr.add_argument("submissions", nargs="+", metavar="SUBMISSION",
                    help="notebooks to grade (a folder means every .ipynb under it)")
    gr.add_argument("--json", metavar="REPORT.json", help="write the full report as JSON")
    gr.add_argument("--csv", metavar="GRADEBOOK.csv",
                    help="write one row per submission, one column per exercise")
    gr.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                    help="time limit per submission, for the whole notebook (default: 300)")
    gr.add_argument("--cell-timeout", type=float, default=60.0, metavar="SECONDS",
                    help="time limit per cell; the cell is interrupted and the notebook goes on "
                    "(default: 60)")
    gr.add_argument("--memory", type=int, default=4096, metavar="MiB",
                    help="memory (address space) limit per submission's kernel (default: 4096)")
    gr.add_argument("--jobs", type=int, default=None, metavar="N",
                    help="submissions graded in parallel (default: the number of cores)")
    gr.add_argument("--chapter", default=None,
                    help="grade every submission as this chapter (default: from each notebook's "
                    "metadata, else its file name)")
    gr.add_argument("--seed", type=int, default=None,
                    help="draw the test cases with this seed instead of the notebooks' own, so "
                    "answers hard-coded for the practice cases fail (default: the same cases "
                    "and feedback the learner saw)")
    gr.set_defaults(func=_grade)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
