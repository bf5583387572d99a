"""How much the figures moved between two runs of `make bench`, and within one.

    python benchmarks/bench_compare.py bench-results/A.json bench-results/B.json

:func:`figures` reads the headline figures out of a results document, each with
its kind: ``time`` (seconds; smaller is faster), ``ratio`` (the course's time
over PyTorch's, or the like, measured side by side), ``rate`` (per second or per
minute), ``slope`` (a fitted log-log exponent) or ``step`` (a training step
count, which depends on the seeds, not on the machine). :func:`compare` matches
the figures of two runs by name: for times, ratios and rates the change is
relative (``b / a - 1``), for slopes and steps absolute (``b - a``).
:func:`within_run` summarizes the spread of the repeats inside one run.
"""

from __future__ import annotations

import json
import math
import pathlib
import statistics
import sys

KINDS = ("ratio", "time", "rate", "slope", "step")
RELATIVE = ("ratio", "time", "rate")


def _median(s) -> float | None:
    return s["median"] if isinstance(s, dict) and "median" in s else None


def _walk(results: dict):
    """``(name, value, kind, summary)`` of each headline figure; ``summary`` holds its repeats or is None."""
    sections = {k: v.get("data") for k, v in results.get("sections", {}).items()}
    for row in sections.get("modules") or []:
        name = f"{row['module']}, {row['what']}"
        yield f"{name}: ratio", _median(row["ratio"]), "ratio", row["ratio"]
        yield f"{name}: course", _median(row["ours"]), "time", row["ours"]
        yield f"{name}: PyTorch", _median(row["theirs"]), "time", row["theirs"]
    for row in sections.get("sizes") or []:
        yield f"{row['module']}, training step: ratio", _median(row["ratio"]), "ratio", row["ratio"]
        yield f"{row['module']}, training step: course", _median(row["ours"]), "time", row["ours"]
    attention = sections.get("attention") or {}
    for p in attention.get("points", []):
        yield f"attention L={p['length']}: naive / fused time", p["time_ratio"], "ratio", None
        for name in ("naive", "fused"):
            t = p[name]["time"]
            yield f"attention L={p['length']}: {name} time", _median(t), "time", t
    for key, value in (attention.get("slopes") or {}).items():
        yield f"attention slope: {key.replace('_', ' ')}", value, "slope", None
    for row in sections.get("generation") or []:
        name = f"{row['what']}, batch {row['batch']}"
        yield f"{name}: tokens/s with the cache", _median(row["cache"]), "rate", row["cache"]
        yield f"{name}: speed-up of the cache", _median(row["speedup"]), "ratio", row["speedup"]
    for row in sections.get("checks") or []:
        for answer in ("right", "wrong"):
            s = row.get(answer)
            yield f"check {row['exercise']}, {answer} answer", _median(s), "time", s
    for row in sections.get("training") or []:
        name = f"Chapter {row['chapter']}"
        yield f"{name}: steps/s", row.get("steps_per_second"), "rate", None
        yield f"{name}: training time to the target", row.get("reached_seconds"), "time", None
        yield f"{name}: step at which the target is reached", row.get("reached_step"), "step", None
    notebooks = sections.get("notebooks") or {}
    for row in notebooks.get("rows", []):
        if not row.get("error"):
            yield f"notebook {row['notebook']}", row["seconds"], "time", None
    for folder, total in (notebooks.get("totals") or {}).items():
        yield f"notebooks {folder}/ (total)", total, "time", None
    book = sections.get("book") or {}
    yield "make book", _median(book.get("time")), "time", book.get("time")
    for fig in sections.get("grading") or []:
        name = f"grader --jobs {fig['jobs']}"
        yield f"{name}: submissions per minute", fig["submissions_per_minute"], "rate", None
        for stage, value in (fig.get("stages") or {}).items():
            yield f"grader --jobs {fig['jobs']}: {stage.replace('_', ' ')}", value, "time", None


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def figures(results: dict) -> dict[str, tuple[float, str]]:
    """``{name: (value, kind)}``: the headline figures of a results document (finite values only)."""
    return {name: (float(value), kind) for name, value, kind, _ in _walk(results) if _finite(value)}


def compare(a: dict, b: dict) -> dict:
    """The figures of runs ``a`` and ``b`` side by side, and the changes summarized per kind.

    Returns ``{"rows": [{"name", "kind", "a", "b", "change"}, ...], "by_kind": {kind:
    {"n", "median", "max", "max_name"}}}`` where ``median`` and ``max`` are of the
    absolute changes (relative for times, ratios and rates; absolute for slopes
    and steps). Figures present in one run only are left out.
    """
    fa, fb = figures(a), figures(b)
    rows = []
    for name, (va, kind) in fa.items():
        if name not in fb:
            continue
        vb = fb[name][0]
        if kind in RELATIVE:
            if va == 0:
                continue
            change = vb / va - 1
        else:
            change = vb - va
        rows.append({"name": name, "kind": kind, "a": va, "b": vb, "change": change})
    by_kind = {}
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        if mine:
            top = max(mine, key=lambda r: abs(r["change"]))
            by_kind[kind] = {"n": len(mine), "median": statistics.median(abs(r["change"]) for r in mine),
                             "max": abs(top["change"]), "max_name": top["name"]}
    return {"rows": rows, "by_kind": by_kind}


def within_run(results: dict) -> dict | None:
    """The spread of the repeats inside one run, over the figures measured 2+ times.

    A figure's spread is ``(max - min) / median`` of its repeats. Returns
    ``{"n", "median", "max", "max_name"}``, or None when no figure was repeated.
    """
    spreads = [(name, (s["max"] - s["min"]) / s["median"]) for name, _, _, s in _walk(results)
               if isinstance(s, dict) and s.get("n", 1) >= 2 and s["median"] > 0]
    if not spreads:
        return None
    top = max(spreads, key=lambda x: x[1])
    return {"n": len(spreads), "median": statistics.median(v for _, v in spreads), "max": top[1],
            "max_name": top[0]}


def format_change(kind: str, change: float) -> str:
    if kind in RELATIVE:
        return f"{100 * change:+.1f}%"
    if kind == "step":
        return f"{change:+.0f}"
    return f"{change:+.2f}"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    a, b = (json.loads(pathlib.Path(p).read_text()) for p in argv)
    result = compare(a, b)
    width = max((len(r["name"]) for r in result["rows"]), default=10)
    for r in result["rows"]:
        print(f"{r['name']:<{width}}  {r['kind']:>5}  {r['a']:12.5g}  {r['b']:12.5g}  "
              f"{format_change(r['kind'], r['change']):>8}")
    print()
    for kind, s in result["by_kind"].items():
        print(f"{kind:>5}: {s['n']} figures, median change {format_change(kind, s['median'])}, "
              f"largest {format_change(kind, s['max'])} ({s['max_name']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
