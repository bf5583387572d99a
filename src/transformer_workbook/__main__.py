"""Command line: ``python -m transformer_workbook COMMAND``.

Commands:
  notebooks generate        regenerate exercises/ from solutions/
  notebooks execute PATH..  execute notebooks in place (outputs, counts 1..n, no widget state)
  notebooks links           point badges and setup cells at the repository in _config.yml
  notebooks toc             write _toc.yml and README.md's chapter table from chapters.py
  grade SUBMISSION..        grade learners' exercise notebooks (see book/instructors.md)
  grade merge REPORT.json.. combine the JSON reports of `grade --shard K/N` runs
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
    from .grading import cli

    return cli.main(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m transformer_workbook", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    nb = sub.add_parser("notebooks", help="maintain the course notebooks")
    nb.add_argument("action", choices=["generate", "execute", "links", "toc"])
    nb.add_argument("paths", nargs="*")
    nb.add_argument("--root", default=".", help="the course repository (default: .)")
    nb.set_defaults(func=_notebooks)
    gr = sub.add_parser("grade", help="grade learners' exercise notebooks (see book/instructors.md)")
    gr.set_defaults(func=_grade)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["grade"]:  # the grader (and torch) is imported only for its command
        from .grading import cli as grading_cli

        # `grade merge ...` is a command of its own; `grade ./merge` grades a path named merge.
        if argv[1:2] == [grading_cli.MERGE]:
            return grading_cli.merge_main(argv[2:])
        gr.description = grading_cli.GRADE_DESCRIPTION
        grading_cli.add_grade_arguments(gr)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
