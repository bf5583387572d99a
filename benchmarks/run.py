"""Speed benchmarks of the whole course: `make bench` (not part of `make test`).

    python benchmarks/run.py                    # everything: the results, then book/performance.md
    python benchmarks/run.py modules attention  # some sections only (results saved, page untouched)
    python benchmarks/run.py --repeats 3        # fewer repeats (quicker, noisier)
    python benchmarks/run.py --page-from bench-results/A.json [--previous bench-results/B.json]

Sections (everything is discovered from the table of chapters and the exercise
registry, so new chapters are covered as they become available):

- ``modules``: MultiHeadAttention, EncoderLayer, DecoderLayer and model.Transformer
  against PyTorch's modules, forward and training step, as ratios (bench_modules.py);
- ``sizes``: the whole model's training step at several widths, against nn.Transformer;
- ``attention``: naive against fused attention across sequence lengths, time and
  peak memory, log-log slopes (Chapter 7's helpers);
- ``generation``: tokens per second with and without the KV cache (bench_training.py);
- ``checks``: every registered exercise's check, a right and a wrong answer (bench_course.py);
- ``training``: Chapter 8's time to 99% validation exact match, Chapter 9's time to
  its perplexity target, each with its curve against training time;
- ``notebooks``: each available notebook executed from a fresh kernel;
- ``book``: ``make book``;
- ``grading``: the grader with ``--jobs 1`` and ``--jobs 2``, and where the time goes.

Every run saves its raw results as JSON under ``bench-results/`` (git-ignored).
A run of every section also writes the book's page ``book/performance.md`` and
its figures (``book/performance/*.png``), comparing with the previous complete
run on the same machine, if any: run ``make bench`` twice to see how much the
figures move between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

# As the Makefile sets them (before torch starts its OpenMP threads): on shared
# cores, threads that spin while they wait for each other made training steps
# ten times slower (measured: 1 s a step instead of 0.1 s at load average 6).
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import bench_common as common  # noqa: E402

SECTIONS = ("modules", "sizes", "attention", "generation", "checks", "training", "notebooks", "book",
            "grading")
RESULTS = common.ROOT / "bench-results"


def _command(section: str) -> str:
    return f"python benchmarks/run.py {section}"


def run_sections(names, args) -> dict:
    """Run the named sections; the results document (see bench_page.py for what it holds)."""
    import torch

    torch.manual_seed(0)
    results = {
        "format": 1,
        "started": common.now_iso(),
        "command": "make bench" if set(names) == set(SECTIONS) else
                   f"python benchmarks/run.py {' '.join(names)}",
        "options": {"repeats": args.repeats, "notebook_budget_s": args.notebook_budget,
                    "train_cap_s": args.train_cap, "grading_n": args.grading_n,
                    "budget_s": args.budget, "book_repeats": args.book_repeats},
        "commit": common.git_commit(),
        "machine": common.machine(),
        "load_before": common.load(),
        "sections": {},
    }
    start = time.perf_counter()
    print(f"# make bench: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
          f"torch {results['machine']['torch']}, {results['machine']['threads']} threads; "
          f"load average {results['load_before']}", flush=True)
    for name in SECTIONS:
        if name not in names:
            continue
        with common.Section(name, _command(name)) as sec:
            data = _measure(name, args)
        results["sections"][name] = {**sec.header(), "data": data}
    from bench_course import make_test_record

    results["make_test"] = make_test_record()
    results["seconds"] = round(time.perf_counter() - start, 1)
    results["finished"] = common.now_iso()
    results["load_after"] = common.load()
    return results


def _measure(name: str, args):
    r = args.repeats
    if name == "modules":
        import bench_modules

        return bench_modules.module_rows(max(r, MODULE_REPEATS))
    if name == "sizes":
        import bench_modules

        return bench_modules.size_rows(max(r, MODULE_REPEATS))
    if name == "attention":
        import bench_modules

        return bench_modules.attention_scaling(r)
    if name == "generation":
        import bench_training

        return bench_training.generation_rows(r)
    if name == "checks":
        import bench_course

        return bench_course.check_rows(r)
    if name == "training":
        import bench_training

        return [bench_training.train_to_target(chapter, max_train_s=args.train_cap) for chapter in (8, 9)]
    if name == "notebooks":
        import bench_course

        return bench_course.notebook_rows(notebook_budget(args))
    if name == "book":
        import bench_course

        return bench_course.book_rows(args.book_repeats)
    if name == "grading":
        import bench_grading

        return bench_grading.grade_cohort(args.grading_n, (1, 2))
    raise ValueError(name)


#: At least this many repeats for the modules and sizes: one training step is one sample
#: there, and single steps on shared cores vary by half their time.
MODULE_REPEATS = 5
#: Seconds kept, out of --budget, for what runs after the notebooks (make book, the grader).
RESERVE_AFTER_NOTEBOOKS_S = 180.0


def notebook_budget(args) -> float | None:
    """The seconds the notebooks may take: --notebook-budget, less if the whole run's
    --budget would not leave :data:`RESERVE_AFTER_NOTEBOOKS_S` for the book and the grader."""
    budgets = [b for b in (args.notebook_budget,) if b]
    if args.budget:
        left = args.budget - (time.perf_counter() - args.started) - RESERVE_AFTER_NOTEBOOKS_S
        budgets.append(max(30.0, left))
    return min(budgets) if budgets else None


def save(results: dict, folder: pathlib.Path = RESULTS) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = results["started"][:19].replace(":", "").replace("-", "").replace("T", "-")
    path = folder / f"{stamp}.json"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{stamp}-{n}.json"
    path.write_text(json.dumps(results, indent=1, default=float) + "\n")
    return path


def previous_complete(folder: pathlib.Path, exclude: pathlib.Path | None,
                      machine: dict) -> pathlib.Path | None:
    """The latest saved run of every section on the same CPU and core count, other than ``exclude``."""
    best = None
    for path in sorted(folder.glob("*.json")):
        if exclude is not None and path.resolve() == exclude.resolve():
            continue
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        same = {k: doc.get("machine", {}).get(k) for k in ("cpu", "cores")} == \
               {k: machine.get(k) for k in ("cpu", "cores")}
        if same and set(doc.get("sections", {})) == set(SECTIONS):
            best = path
    return best


def full_training_run(folder: pathlib.Path, machine: dict) -> pathlib.Path | None:
    """The latest saved run of the training section without a cap (``training --train-cap 0``)
    on the same CPU and core count: the page cites its time to the targets."""
    best = None
    for path in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        same = all(doc.get("machine", {}).get(k) == machine.get(k) for k in ("cpu", "cores"))
        if same and "training" in doc.get("sections", {}) and not doc.get("options", {}).get("train_cap_s"):
            best = path
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sections", nargs="*", metavar="SECTION",
                        help=f"sections to run (default: all): {', '.join(SECTIONS)}")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per figure (default 3)")
    parser.add_argument("--budget", type=float, default=540.0, metavar="SECONDS",
                        help="the whole run's budget: the notebooks get what the other sections leave "
                        "(0: no limit; default 540)")
    parser.add_argument("--notebook-budget", type=float, default=240.0, metavar="SECONDS",
                        help="stop starting notebooks after this many seconds (0: no limit; default 240)")
    parser.add_argument("--train-cap", type=float, default=45.0, metavar="SECONDS",
                        help="stop a chapter's training at its first evaluation after this many seconds "
                        "of training if its target is not reached (default 45; 0: train until the "
                        "target or the recipe's last step)")
    parser.add_argument("--book-repeats", type=int, default=1, help="builds of the book to time (default 1)")
    parser.add_argument("--grading-n", type=int, default=4, help="submissions to grade (default 4)")
    parser.add_argument("--results", type=pathlib.Path, default=RESULTS, help="folder of the raw results")
    parser.add_argument("--page-from", type=pathlib.Path, metavar="RESULTS.json",
                        help="measure nothing: write the page from these results")
    parser.add_argument("--previous", type=pathlib.Path, metavar="RESULTS.json",
                        help="the run to compare with (default: the previous complete run)")
    parser.add_argument("--no-page", action="store_true", help="do not write book/performance.md")
    args = parser.parse_args(argv)
    args.started = time.perf_counter()
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; the sections: {', '.join(SECTIONS)}")
    import bench_page

    if args.page_from:
        results, path = json.loads(args.page_from.read_text()), args.page_from
    else:
        names = args.sections or list(SECTIONS)
        results = run_sections(names, args)
        path = save(results, args.results)
        print(f"\nmake bench: {results['seconds']:.0f} s; results in {path}", flush=True)
        if set(names) != set(SECTIONS):
            return 0
    if args.no_page:
        return 0
    prev_path = args.previous or previous_complete(args.results, path, results["machine"])
    previous = json.loads(prev_path.read_text()) if prev_path else None
    full = full_training_run(args.results, results["machine"])
    page = bench_page.write_page(results, previous, results_name=f"bench-results/{path.name}",
                                 full_training=json.loads(full.read_text()) if full else None)
    print(f"wrote {page.relative_to(common.ROOT)}"
          + (f" (compared with {prev_path})" if prev_path else " (no earlier run to compare with)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
