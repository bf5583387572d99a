"""Benchmark (not a test): grade N submissions of the existing exercises.

    python benchmarks/bench_grading.py                 # 100 submissions, --jobs 1 then 2
    python benchmarks/bench_grading.py --n 20 --jobs 1 2 4
    python benchmarks/bench_grading.py --n 20 --busy 2   # with 2 busy-loop processes alongside

Half the submissions are the solutions notebooks (full marks), half the
exercise notebooks as handed out (0 points), of every chapter that has them,
each under its own learner folder. Prints the wall-clock time per job count
and the number of unexpected grades (which must stay 0 on a loaded machine:
``--busy N`` keeps N extra processes spinning while it grades); ``--json FILE``
also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def make_submissions(folder: pathlib.Path, n: int) -> tuple[list[pathlib.Path], dict[pathlib.Path, bool]]:
    """``n`` learner folders, each holding a solutions notebook (full marks) or an exercises one (0).

    The notebooks are those of the available chapters (the table of chapters),
    a solutions and an exercises notebook per chapter; with fewer than that
    many submissions, they are picked evenly across the chapters; with more,
    they repeat.
    """
    from transformer_workbook import chapters

    sources = []
    for c in chapters.available():
        sol, ex = ROOT / c.solutions_notebook, ROOT / c.exercises_notebook
        if sol.exists():
            sources.append((sol, True))
            if ex.exists():
                sources.append((ex, False))
    if not sources:
        sys.exit("no solutions notebook of an available chapter to grade")
    if n < len(sources):  # evenly across the chapters, in pairs (solutions, exercises)
        pairs = [sources[i:i + 2] for i in range(0, len(sources), 2)]
        picked = [pairs[round(i * len(pairs) / ((n + 1) // 2))] for i in range((n + 1) // 2)]
        sources = [s for pair in picked for s in pair][:n]
    paths, full = [], {}
    for i in range(n):
        src, is_solution = sources[i % len(sources)]
        path = folder / f"learner{i:03d}" / src.name
        path.parent.mkdir(parents=True)
        shutil.copyfile(src, path)
        paths.append(path)
        full[path] = is_solution
    return paths, full


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100, help="number of submissions (default 100)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="job counts to time")
    parser.add_argument("--busy", type=int, default=0,
                        help="processes that keep the cores busy while grading (default 0)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        return _run(args)
    finally:
        for p in busy:
            p.kill()
            p.wait()


def grade_cohort(n: int, jobs_list=(1, 2)) -> list[dict]:
    """Grade ``n`` submissions (:func:`make_submissions`) once per job count; the figures of each run.

    Per run: the wall-clock seconds, submissions per minute, the number of
    unexpected grades (a solution without full marks, an exercise notebook with
    points: must be 0), the median time per submission by stage
    (``grading.timing_summary``: kernel start, notebook, harness, kernel stop,
    judging, the rest), and each submission's time and notebook time.
    """
    from transformer_workbook import grading

    figures = []
    with tempfile.TemporaryDirectory(prefix="tw-bench-grading-") as tmp:
        paths, full = make_submissions(pathlib.Path(tmp), n)
        for jobs in jobs_list:
            start = time.perf_counter()
            reports = grading.grade_many(paths, jobs=jobs)
            seconds = time.perf_counter() - start
            bad = [r for r in reports
                   if r.status != grading.GRADED
                   or (r.score == r.max_score) != full[pathlib.Path(r.path)]
                   or (not full[pathlib.Path(r.path)] and r.score != 0)]
            per = sorted(r.seconds for r in reports)
            fig = {"jobs": jobs, "submissions": len(reports), "seconds": round(seconds, 1),
                   "per_submission_median_s": round(per[len(per) // 2], 2),
                   "submissions_per_minute": round(60 * len(reports) / seconds, 1),
                   "unexpected": len(bad),
                   "stages": grading.timing_summary(reports),
                   "submissions_graded": [
                       {"notebook": f"{pathlib.Path(r.path).parent.name}/{pathlib.Path(r.path).name}",
                        "source": "solutions" if full[pathlib.Path(r.path)] else "exercises",
                        "seconds": r.seconds, "notebook_s": r.timings.get("notebook"), "status": r.status}
                       for r in reports]}
            figures.append(fig)
            print(f"   --jobs {jobs}: {len(reports)} submissions in {seconds:.1f} s "
                  f"({fig['submissions_per_minute']} per minute; median {fig['per_submission_median_s']} s "
                  f"each){'; UNEXPECTED: ' + str(len(bad)) if bad else ''}", flush=True)
            print(f"   {grading.format_timings(reports)}", flush=True)
    return figures


def _run(args) -> int:
    figures = grade_cohort(args.n, args.jobs)
    info = {"benchmark": "grading", "cpus": os.cpu_count(), "python": platform.python_version(),
            "busy_processes": args.busy, "load_average": os.getloadavg(), "figures": figures}
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(info, indent=2) + "\n")
    return 1 if any(f["unexpected"] for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
