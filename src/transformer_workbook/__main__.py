"""Command line: ``python -m transformer_workbook COMMAND``.

Commands:
  notebooks generate        regenerate exercises/ from solutions/
  notebooks execute PATH..  execute notebooks in place (outputs, counts 1..n, no widget state)
  notebooks links           point badges and setup cells at the repository in _config.yml
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
    elif args.action == "execute":
        for p in args.paths:
            seconds = nt.execute_notebook(pathlib.Path(p))
            print(f"executed {p} in {seconds:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m transformer_workbook", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    nb = sub.add_parser("notebooks", help="maintain the course notebooks")
    nb.add_argument("action", choices=["generate", "execute", "links"])
    nb.add_argument("paths", nargs="*")
    nb.add_argument("--root", default=".", help="the course repository (default: .)")
    nb.set_defaults(func=_notebooks)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
