"""The command line: ``python -m transformer_workbook grade ...`` and ``... grade merge ...``.

``merge`` is a subcommand only as the first word after ``grade``; a submission
file or folder literally named ``merge`` is graded by writing ``./merge``.
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import shutil
import sys
import time

from .. import chapters as course_chapters
from . import report as rep_
from .batch import expand_paths, grade_many, parse_shard, run_header, select_shard
from .options import GradeOptions
from .statuses import GRADER_ERROR

MERGE = "merge"

GRADE_DESCRIPTION = (
    "Execute each submission in a fresh kernel and grade its exercises with the course's checks, "
    "judged outside the learner's process. Exit status 0 when every submission got a report "
    "(whatever its score); 1 when the grader itself failed. "
    "`grade merge REPORT.json ...` combines the JSON reports of `grade --shard` runs "
    "(a submission named `merge` is graded as `./merge`).")


def add_grade_arguments(gr: argparse.ArgumentParser) -> None:
    """The ``grade`` command's arguments (on the parser ``__main__`` made for it)."""
    gr.add_argument("submissions", nargs="+", metavar="SUBMISSION",
                    help="notebooks to grade (a folder means every .ipynb under it)")
    gr.add_argument("--json", metavar="REPORT.json", help="write the full report as JSON")
    gr.add_argument("--csv", metavar="GRADEBOOK.csv",
                    help="write one row per submission, one column per exercise")
    gr.add_argument("--summary", metavar="FIGURE.png",
                    help="draw the cohort summary (pass rate and most common mistakes per exercise) "
                    "into this image (.png, .pdf, .svg)")
    gr.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                    help="time limit per submission, for the whole notebook, in the kernel's own time "
                    "(time spent waiting for a busy CPU does not count) (default: 300)")
    gr.add_argument("--cell-timeout", type=float, default=60.0, metavar="SECONDS",
                    help="time limit per cell, likewise; the cell is interrupted and the notebook "
                    "goes on (default: 60)")
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
    gr.add_argument("--shard", metavar="K/N", default=None,
                    help="grade only shard K of N (K from 1 to N) of the submissions, sorted by path, "
                    "for array jobs; combine the shards' --json reports with `grade merge`")


def merge_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m transformer_workbook grade merge",
        description="Combine the JSON reports of the shards of one `grade --shard K/N` run into one "
        "report and gradebook. Refuses reports made with different options (seed, limits, chapter), "
        "course versions or submission lists, a shard given twice or missing, and a submission in "
        "two reports. Exit status 0 when merged, 2 when refused.")
    p.add_argument("reports", nargs="+", metavar="REPORT.json", help="the shards' --json reports")
    p.add_argument("--json", metavar="ALL.json", help="write the combined report")
    p.add_argument("--csv", metavar="ALL.csv", help="write the combined gradebook")
    p.add_argument("--summary", metavar="ALL.png", help="draw the cohort summary into this image")
    p.add_argument("--quiet", action="store_true", help="print only the cohort summary")
    return p


def _write_outputs(reports, run: dict, args) -> None:
    summary = rep_.cohort_summary(reports)
    if args.json:
        doc = rep_.to_json(reports, run)
        pathlib.Path(args.json).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.json}")
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as f:
            rep_.write_csv(reports, f)
        print(f"wrote {args.csv}")
    if args.summary:
        rep_.write_summary_figure(summary, args.summary)
        print(f"wrote {args.summary}")


def _print_reports(reports, quiet: bool = False) -> None:
    width = max(100, shutil.get_terminal_size((120, 24)).columns)
    if not quiet:
        print()
        for r in reports:
            print(rep_.format_table(r, width))
            print()
    print(rep_.format_summary(rep_.cohort_summary(reports)))
    print()


def main(args) -> int:
    """The ``grade`` command (arguments parsed in ``__main__``)."""
    all_paths = expand_paths(args.submissions)
    if not all_paths:
        print("grade: no notebooks found", file=sys.stderr)
        return 2
    shard = None
    if args.shard is not None:
        try:
            shard = parse_shard(args.shard)
        except ValueError as exc:
            print(f"grade: {exc}", file=sys.stderr)
            return 2
    paths = select_shard(all_paths, *shard) if shard else all_paths
    options = GradeOptions(timeout_s=args.timeout, cell_timeout_s=min(args.cell_timeout, args.timeout),
                           memory_mb=args.memory, chapter=args.chapter, seed=args.seed)
    if args.chapter is not None and args.chapter not in course_chapters.slugs():
        print(f"grade: unknown chapter {args.chapter!r}; chapters: "
              f"{', '.join(course_chapters.slugs())}", file=sys.stderr)
        return 2
    start = time.monotonic()
    if shard:
        print(f"shard {shard[0]}/{shard[1]}: {len(paths)} of {len(all_paths)} submission(s)",
              file=sys.stderr, flush=True)

    def progress(done: int, total: int, r) -> None:
        print(f"[{done}/{total}] {r.path}: {r.status}, {r.score}/{r.max_score} "
              f"({r.seconds:.1f} s)", file=sys.stderr, flush=True)

    reports = grade_many(paths, options, jobs=args.jobs, progress=progress) if paths else []
    _print_reports(reports)
    counts = collections.Counter(r.status for r in reports)
    summary = ", ".join(f"{n} {s}" for s, n in counts.items()) or "nothing to grade in this shard"
    print(f"{len(reports)} submission(s) in {time.monotonic() - start:.1f} s: {summary}")
    if reports:
        print(rep_.format_timings(reports))
    _write_outputs(reports, run_header(all_paths, len(reports), options, shard), args)
    return 1 if any(r.status == GRADER_ERROR for r in reports) else 0


def merge_main(argv: list[str]) -> int:
    """``grade merge REPORT.json ... [--json ALL.json] [--csv ALL.csv] [--summary ALL.png]``."""
    args = merge_parser().parse_args(argv)
    docs = []
    for name in args.reports:
        try:
            docs.append((name, json.loads(pathlib.Path(name).read_text(encoding="utf-8"))))
        except (OSError, ValueError) as exc:
            print(f"grade merge: cannot read {name}: {exc}", file=sys.stderr)
            return 2
    try:
        run, reports = rep_.merge_reports(docs)
    except rep_.MergeError as exc:
        print(f"grade merge: {exc}", file=sys.stderr)
        return 2
    _print_reports(reports, quiet=args.quiet)
    print(f"merged {len(docs)} report(s): {len(reports)} submission(s)")
    _write_outputs(reports, run, args)
    return 0
