"""The book's performance page, ``book/performance.md``, and its figures, from `make bench`'s results.

:func:`render` turns a results document (what ``run.py`` saves under
``bench-results/``) and, optionally, an earlier one into the page's Markdown;
:func:`draw_figures` draws its PNG figures; :func:`write_page` does both into
the book. Nothing here measures anything: the page can be written again from
saved results (``python benchmarks/run.py --page-from RESULTS.json``).

A section whose results are missing is left out of the page, so a partial
results document still renders (the tests use small fake ones).
"""

from __future__ import annotations

import math
import pathlib

import bench_compare
from bench_common import ROOT

PAGE = ROOT / "book" / "performance.md"
FIGURES = ROOT / "book" / "performance"
FIGURE_WIDTH_IN = 6.6  # the book's column (transformer_workbook.figures.COLUMN_IN)
DPI = 100  # small files: the page's figures are kept in git
#: The course's goal for its model against nn.Transformer, per training step.
GOAL_RATIO = 1.1


# ---------------------------------------------------------------------------
# Number formats
# ---------------------------------------------------------------------------


def _sig(x: float, digits: int = 3) -> str:
    """``x`` with about ``digits`` significant digits, no exponent for everyday sizes."""
    if x is None or not math.isfinite(x):
        return "–"
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:,.{decimals}f}"


def seconds(s: dict | None, unit: str = "s") -> str:
    """A time summary as ``median (min–max)``, in seconds or milliseconds."""
    if not s:
        return "–"
    k = 1e3 if unit == "ms" else 1.0
    if s.get("n", 1) < 2:
        return _sig(s["median"] * k)
    return f"{_sig(s['median'] * k)} ({_sig(s['min'] * k)}–{_sig(s['max'] * k)})"


def ratio(s: dict | None) -> str:
    if not s:
        return "–"
    if s.get("n", 1) < 2:
        return f"{s['median']:.2f}"
    return f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"


def rate(s: dict | None) -> str:
    if not s:
        return "–"
    if s.get("n", 1) < 2:
        return _sig(s["median"])
    return f"{_sig(s['median'])} ({_sig(s['min'])}–{_sig(s['max'])})"


def percent(x: float) -> str:
    return f"{100 * x:.1f}%" if x < 0.1 else f"{100 * x:.0f}%"


def _load(values) -> str:
    return f"{values[0]:.1f}" if values else "unknown"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(results: dict) -> str:
    m = results["machine"]
    return (f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} with {m['threads']} threads")


def provenance(results: dict, name: str) -> str:
    """The line under each section's heading: the machine, the load, the command."""
    sec = results["sections"][name]
    return (f"*Measured on {machine_line(results)}; load average {_load(sec['load_before'])} before, "
            f"{_load(sec['load_after'])} after ({sec['seconds']:.0f} s). Reproduce: `{sec['command']}`.*")


def _data(results: dict, name: str):
    sec = results.get("sections", {}).get(name)
    return None if sec is None else sec.get("data")


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


_FOOTER: dict = {"text": ""}


def _figure(height_in: float, ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(FIGURE_WIDTH_IN, height_in))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, axes


def _footer(fig) -> None:
    """Lay the figure out, with the machine and the load written under it (a figure may travel alone)."""
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.text(0.01, 0.01, _FOOTER["text"], fontsize=6.5, color="#555555", ha="left", va="bottom")


def draw_attention(data: dict, path: pathlib.Path) -> None:
    fig, (ax_t, ax_m) = _figure(2.9, 2)
    lengths = [p["length"] for p in data["points"]]
    slopes = data["slopes"]
    styles = {"naive": ("#c0392b", "o", "naive (weights built)"), "fused": ("#2471a3", "s", "fused (F.sdpa)")}
    for name, (color, marker, label) in styles.items():
        t = [p[name]["time"]["median"] * 1e3 for p in data["points"]]
        ax_t.loglog(lengths, t, marker=marker, color=color,
                    label=f"{label}, slope {slopes[f'{name}_time']:.2f}")
        mem = [max(p[name]["peak_bytes"] or 0, 1) / 2**20 for p in data["points"]]
        ax_m.loglog(lengths, mem, marker=marker, color=color,
                    label=f"{label}, slope {slopes[f'{name}_memory']:.2f}")
    ax_t.set(xlabel="sequence length L", ylabel="time per call (ms)", title="Time")
    ax_m.set(xlabel="sequence length L", ylabel="peak tensor memory (MiB)", title="Peak memory")
    for ax in (ax_t, ax_m):
        ax.set_xticks(lengths, [str(x) for x in lengths])
        ax.minorticks_off()
        ax.legend(fontsize=7.5, loc="upper left")
        ax.grid(True, which="major", alpha=0.3)
        ax.tick_params(labelsize=8)
    _footer(fig)
    fig.savefig(path, dpi=DPI)


def draw_sizes(rows: list[dict], path: pathlib.Path) -> None:
    fig, (ax, ax_r) = _figure(2.9, 2)
    params = [r["parameters"] for r in rows]
    for key, color, marker, label in (("ours", "#c0392b", "o", "course"),
                                      ("theirs", "#2471a3", "s", "nn.Transformer")):
        med = [r[key]["median"] * 1e3 for r in rows]
        lo = [m - r[key]["min"] * 1e3 for m, r in zip(med, rows, strict=True)]
        hi = [r[key]["max"] * 1e3 - m for m, r in zip(med, rows, strict=True)]
        ax.errorbar(params, med, yerr=[lo, hi], marker=marker, color=color, label=label, capsize=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="parameters", ylabel="time per training step (ms)", title="Time per step")
    ax.legend(fontsize=7.5, loc="upper left")
    ds = [str(r["d_model"]) for r in rows]
    med = [r["ratio"]["median"] for r in rows]
    lo = [m - r["ratio"]["min"] for m, r in zip(med, rows, strict=True)]
    hi = [r["ratio"]["max"] - m for m, r in zip(med, rows, strict=True)]
    ax_r.errorbar(ds, med, yerr=[lo, hi], marker="o", color="#c0392b", capsize=3, linestyle="none")
    ax_r.axhline(1.0, color="#7f8c8d", linewidth=1)
    ax_r.axhline(GOAL_RATIO, color="#c0392b", linestyle="--", linewidth=1, label=f"goal {GOAL_RATIO}")
    ax_r.set(xlabel="d_model", ylabel="course ÷ PyTorch", title="Ratio (below 1: course faster)")
    ax_r.legend(fontsize=7.5)
    for a in (ax, ax_r):
        a.grid(True, which="major", alpha=0.3)
        a.tick_params(labelsize=8)
    _footer(fig)
    fig.savefig(path, dpi=DPI)


def draw_training(rows: list[dict], path: pathlib.Path, budget_s: float = 30.0) -> None:
    fig, axes = _figure(2.9, len(rows))
    axes = list(axes) if len(rows) > 1 else [axes]
    for ax, r in zip(axes, rows, strict=True):
        xs = [p["train_s"] for p in r["curve"]]
        ys = [p["value"] for p in r["curve"]]
        ax.plot(xs, ys, marker="o", markersize=3, color="#2471a3")
        ax.axhline(r["target"], color="#c0392b", linestyle="--", linewidth=1,
                   label=f"target {r['target']:.3g}")
        ax.axvline(budget_s, color="#7f8c8d", linestyle=":", linewidth=1, label=f"{budget_s:.0f} s")
        if r.get("reached_seconds") is not None:
            ax.plot([r["reached_seconds"]], [next(p["value"] for p in r["curve"]
                                                  if p["step"] == r["reached_step"])],
                    marker="*", markersize=10, color="#c0392b")
        ax.set(xlabel="training time (s)", ylabel=r["metric"], title=f"Chapter {r['chapter']}")
        if not r["higher_is_better"]:
            from matplotlib.ticker import FormatStrFormatter

            ax.set_yscale("log")
            for axis in (ax.yaxis,):
                axis.set_major_formatter(FormatStrFormatter("%g"))
                axis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.legend(fontsize=7.5)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8)
    _footer(fig)
    fig.savefig(path, dpi=DPI)


def draw_figures(results: dict, folder: pathlib.Path = FIGURES) -> dict[str, pathlib.Path]:
    """Draw the figures the results allow; ``{name: path}``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}

    def footer(name: str) -> None:
        sec = results["sections"][name]
        _FOOTER["text"] = (f"{machine_line(results)}; load average {_load(sec['load_before'])} → "
                           f"{_load(sec['load_after'])}; {results['started'][:10]}; {sec['command']}")

    attention = _data(results, "attention")
    if attention and attention.get("points"):
        out["attention"] = folder / "attention.png"
        footer("attention")
        draw_attention(attention, out["attention"])
    sizes = _data(results, "sizes")
    if sizes:
        out["sizes"] = folder / "model-size.png"
        footer("sizes")
        draw_sizes(sizes, out["sizes"])
    training = _data(results, "training")
    if training and all(r.get("curve") for r in training):
        out["training"] = folder / "training.png"
        footer("training")
        draw_training(training, out["training"])
    return out


def _figure_block(rel: str, alt: str, caption: str) -> str:
    return f":::{{figure}} {rel}\n:alt: {alt}\n:width: 100%\n\n{caption}\n:::"


# ---------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------


def _model_step_row(results):
    for row in _data(results, "modules") or []:
        if row["module"] == "Transformer" and row["what"] == "training step":
            return row
    return None


def summary_rows(results: dict) -> list[list[str]]:
    """The "in short" table: one line per headline figure the results have."""
    rows = []
    step = _model_step_row(results)
    if step:
        rows.append(["The course's model, time per training step ÷ nn.Transformer's (goal ≤ 1.1)",
                     ratio(step["ratio"])])
    for row in _data(results, "modules") or []:
        if row["module"] == "MultiHeadAttention" and row["what"] == "forward":
            rows.append(["MultiHeadAttention forward ÷ nn.MultiheadAttention's", ratio(row["ratio"])])
    attention = _data(results, "attention")
    if attention and attention.get("points"):
        last = attention["points"][-1]
        rows.append([f"Naive ÷ fused attention at L = {last['length']}: time, peak memory",
                     f"{last['time_ratio']:.2f}, {last['memory_ratio']:.0f}"])
    for r in _data(results, "training") or []:
        what = "99% validation exact match" if r["chapter"] == 8 else "the perplexity target"
        if r.get("reached_step"):
            value = f"step {r['reached_step']}, {r['reached_seconds']:.0f} s of training"
        else:
            value = f"not reached in {r['steps']} steps ({r['train_seconds']:.0f} s)"
        rows.append([f"Chapter {r['chapter']}: {what}", value])
    gen = _data(results, "generation") or []
    if gen:
        best = max(gen, key=lambda g: g["speedup"]["median"])
        rows.append([f"Generation, KV cache speed-up ({best['what']}, batch {best['batch']})",
                     f"×{best['speedup']['median']:.1f}"])
    checks = [c for c in _data(results, "checks") or [] for k in ("right", "wrong") if c.get(k)]
    if checks:
        worst = max(((c, k) for c in checks for k in ("right", "wrong") if c.get(k)),
                    key=lambda ck: ck[0][ck[1]]["median"])
        rows.append(["Slowest check", f"{worst[0][worst[1]]['median'] * 1e3:.0f} ms "
                     f"(`{worst[0]['exercise']}`, {worst[1]} answer)"])
    grading = _data(results, "grading") or []
    if grading:
        rows.append(["Grader, submissions per minute",
                     ", ".join(f"{g['submissions_per_minute']:.1f} with `--jobs {g['jobs']}`"
                               for g in grading)])
    notebooks = _data(results, "notebooks")
    if notebooks and notebooks.get("totals"):
        total = sum(notebooks["totals"].values())
        rows.append(["All notebooks, executed one after another", f"{total:.0f} s"])
    book = _data(results, "book")
    if book and book.get("time"):
        rows.append(["`make book`", f"{book['time']['median']:.0f} s"])
    record = results.get("make_test")
    if record:
        rows.append(["`make test` (recorded by `make test` itself)",
                     f"{record['seconds']:.0f} s on {record['finished'][:10]}"])
    return rows


def _notebook_section(results: dict) -> list[str]:
    data = _data(results, "notebooks")
    if data is None:
        return []
    out = ["## Notebooks, the book and the tests", "", provenance(results, "notebooks"), "",
           "Each notebook executed top to bottom from a fresh kernel (`nbclient`, as "
           "`python -m transformer_workbook notebooks execute` runs it), once, on a scratch copy; the "
           "course asks each chapter to run in under 30 s on two cores. Seconds:", ""]
    folders = [f for f in ("notebooks", "solutions", "exercises")
               if any(r["folder"] == f for r in data["rows"])]
    chapters = list(dict.fromkeys(r["chapter"] for r in data["rows"]))
    rows = []
    for ch in chapters:
        cells = [f"`{ch}`"]
        for f in folders:
            r = next((r for r in data["rows"] if r["chapter"] == ch and r["folder"] == f), None)
            if r is None:
                cells.append("–")
            else:
                cells.append(f"failed: {r['error'][:60]}" if r["error"] else f"{r['seconds']:.1f}")
        rows.append(cells)
    rows.append(["**total**", *[f"**{data['totals'].get(f, 0):.1f}**" for f in folders]])
    out += [_table(["Chapter", *[f"`{f}/`" for f in folders]], rows), ""]
    if data.get("not_timed"):
        out += [f"Not timed in this run (its notebook budget of {data['budget_s']:.0f} s was spent): "
                + ", ".join(f"`{n}`" for n in data["not_timed"])
                + ". Time them all with `python benchmarks/run.py notebooks --notebook-budget 0`.", ""]
    book = _data(results, "book")
    if book is not None:
        if book.get("time"):
            out += ["`make book` (the strict build, from scratch, of every page from the stored outputs) "
                    f"took {seconds(book['time'])} s ({provenance(results, 'book').strip('*')})", ""]
        else:
            out += [f"`make book` failed: `{book.get('error', '')[-200:]}`", ""]
    record = results.get("make_test")
    if record:
        out += [f"`make test` took **{record['seconds']:.0f} s** when it last passed on this machine, "
                f"from {record['started']} to {record['finished']} (commit `{record['commit']}`, "
                f"load average {_load(record.get('load_at_end'))} at its end). `make bench` does not run it, "
                "since it takes longer than the whole benchmark may: `make test` records its own duration "
                "in `_build/make-test.json` when it passes (from the moment make starts, the "
                "environment's creation included), and this page reports the latest record.", ""]
    else:
        out += ["`make test`: no record on this machine. `make bench` does not run it (it takes longer "
                "than the whole benchmark may); `make test` records its own duration in "
                "`_build/make-test.json` when it passes, and the next `make bench` reports it here.", ""]
    return out


def _modules_section(results: dict) -> list[str]:
    rows = _data(results, "modules")
    if not rows:
        return []
    out = ["## The course's modules against PyTorch's", "", provenance(results, "modules"), "",
           "Each of the course's modules against PyTorch's module of the same configuration, timed side "
           "by side (the two alternate, repeat after repeat). The layers' weights are copied from "
           "PyTorch's with `from_torch`, so both compute the same function: "
           + "; ".join(f"{r['module']}'s outputs " + (f"differ by at most {r['max_abs_diff']:.0e}"
                                                         if r["max_abs_diff"] else "are equal")
                       for r in rows if r.get("max_abs_diff") is not None and r["what"] == "forward")
           + ". *Forward*: evaluation mode, no gradients (PyTorch may take its fused inference path, as it "
           "would for you). *Training step*: forward, backward and an AdamW step, in training mode. "
           "Ratio = the course's time ÷ PyTorch's: below 1, the course is faster.", ""]
    configs = list(dict.fromkeys(r["config"] for r in rows))
    for config in configs:
        out += [f"{config}:", ""]
        table = [[r["module"], r["what"], seconds(r["ours"], "ms"), seconds(r["theirs"], "ms"),
                  ratio(r["ratio"])] for r in rows if r["config"] == config]
        out += [_table(["Module", "Measured", "Course (ms)", "PyTorch (ms)", "Ratio"], table), ""]
    out += _goal_paragraph(results)
    return out


#: Why the course's model may train slower than nn.Transformer, from profiling it
#: (see the page's text); shown when the ratio is above the goal.
SLOWER_BECAUSE = (
    "Where the course's training step is slower, the difference is in how the teaching code is written, "
    "not in what it computes: "
    "the course projects queries, keys and values with three `nn.Linear` layers (`q_proj`, `k_proj`, "
    "`v_proj`: one matrix per role, as the paper writes them), where `nn.MultiheadAttention` multiplies "
    "by one stacked `in_proj_weight` (one larger matrix product instead of three, and one backward "
    "node instead of three); and each layer's dropout, residual and normalization are separate calls, "
    "where PyTorch's layers reach fused kernels for some of them. At Chapter 8's size (d_model 64) "
    "these fixed costs per call weigh more than the arithmetic; as the model grows, the ratio moves "
    "towards 1 (the figure below)."
)


def _goal_paragraph(results: dict) -> list[str]:
    step = _model_step_row(results)
    if not step:
        return []
    r = step["ratio"]["median"]
    if r <= GOAL_RATIO:
        verdict = (f"**The goal holds**: the course's `model.Transformer` trains at {r:.2f}× the time of "
                   f"`nn.Transformer` per step (the goal: within {GOAL_RATIO}×).")
        return [verdict, ""]
    return [f"**Above the goal** of {GOAL_RATIO}×: the course's `model.Transformer` takes {r:.2f}× "
            f"`nn.Transformer`'s time per training step in this run. " + SLOWER_BECAUSE, ""]


def _sizes_section(results: dict, figs: dict) -> list[str]:
    rows = _data(results, "sizes")
    if not rows:
        return []
    out = ["## Training step against model size", "", provenance(results, "sizes"), "",
           "The whole model's training step (Chapter 8's batch, loss, clipping and AdamW), the course's "
           "`model.Transformer` against `nn.Transformer` with the same embeddings and output "
           "projection, at several widths (2 + 2 layers, 4 heads, d_ff = 4 d_model, pre-LN).", ""]
    if "sizes" in figs:
        alt = ("Left, a log-log plot of the time per training step against the number of parameters, "
               "for the course's Transformer and nn.Transformer at d_model "
               + ", ".join(str(r["d_model"]) for r in rows) + "; right, their ratio at each width: "
               + ", ".join(f"{r['ratio']['median']:.2f}" for r in rows) + ", against the goal of "
               f"{GOAL_RATIO}.")
        out += [_figure_block("performance/model-size.png", alt,
                              "Time per training step against model size, and the ratio; bars: the "
                              "fastest and slowest repeat."), ""]
    table = [[str(r["d_model"]), f"{r['parameters']:,}", seconds(r["ours"], "ms"), seconds(r["theirs"], "ms"),
              ratio(r["ratio"])] for r in rows]
    out += [_table(["d_model", "Parameters", "Course (ms)", "PyTorch (ms)", "Ratio"], table), ""]
    return out


def _attention_section(results: dict, figs: dict) -> list[str]:
    data = _data(results, "attention")
    if not data or not data.get("points"):
        return []
    s = data["slopes"]
    out = ["## Attention: naive against fused", "", provenance(results, "attention"), "",
           "Chapter 1's `scaled_dot_product_attention`, which builds the whole `(L, L)` matrix of weights "
           "to return it, against PyTorch's fused `F.scaled_dot_product_attention`, which never does "
           f"({data['config']}). Measured with Chapter 7's helpers: `complexity.sweep` (median of the "
           "repeats), `complexity.peak_memory` (the most bytes of tensors alive at once) and "
           "`complexity.loglog_slope`. Both take time quadratic in L in principle (slope 2: twice the "
           f"length, four times the work); fitted slopes here: naive {s['naive_time']:.2f}, fused "
           f"{s['fused_time']:.2f}. Memory is where they differ: the naive version's peak grows with "
           f"slope {s['naive_memory']:.2f} (the weights), the fused one's with {s['fused_memory']:.2f}.", ""]
    if "attention" in figs:
        last = data["points"][-1]
        alt = (f"Two log-log plots against the sequence length from {data['points'][0]['length']} to "
               f"{last['length']}: time per call, where naive attention is {last['time_ratio']:.1f} times "
               f"slower than fused at the longest length, and peak memory, where the naive line rises with "
               f"slope {s['naive_memory']:.1f} and the fused one with slope {s['fused_memory']:.1f}.")
        out += [_figure_block("performance/attention.png", alt,
                              "Naive against fused attention: time and peak memory, with fitted log-log "
                              "slopes."), ""]
    table = [[str(p["length"]), seconds(p["naive"]["time"], "ms"), seconds(p["fused"]["time"], "ms"),
              f"{p['time_ratio']:.2f}", f"{p['naive']['peak_bytes'] / 2**20:.1f}",
              f"{p['fused']['peak_bytes'] / 2**20:.1f}"] for p in data["points"]]
    out += [_table(["L", "Naive (ms)", "Fused (ms)", "Time ratio", "Naive MiB", "Fused MiB"], table), ""]
    return out


def _full_training_paragraph(full: dict | None) -> list[str]:
    """What an earlier, uncapped training run (``run.py training --train-cap 0``) measured."""
    rows = (full or {}).get("sections", {}).get("training", {}).get("data") or []
    reached = [r for r in rows if r.get("reached_step")]
    if not reached:
        return []
    sec = full["sections"]["training"]
    return [f"**The full runs**, from an earlier run of `python benchmarks/run.py training --train-cap 0` on "
            f"the same machine ({full['started']}, commit `{full['commit']}`, load average "
            f"{_load(sec.get('load_before'))} before and {_load(sec.get('load_after'))} after): "
            + "; ".join(f"Chapter {r['chapter']} reached its {r['metric']} target ({r['target']:.3g}) at "
                        f"step {r['reached_step']} of {r['recipe_steps']}, after "
                        f"{r['reached_seconds']:.0f} s of training ({r['steps_per_second']:.1f} steps/s)"
                        for r in reached)
            + ". The steps depend on the seeds only; the seconds on the machine and its load.", ""]


def _training_section(results: dict, figs: dict, full_training: dict | None = None) -> list[str]:
    rows = _data(results, "training")
    if not rows:
        return []
    out = ["## Training: Chapters 8 and 9", "", provenance(results, "training"), "",
           "Each chapter's recipe (`training.DATE_RECIPE`, `training.LM_RECIPE`, built exactly as "
           "`train_date_model` and `train_language_model` build them, seed 0), evaluated on the "
           f"validation set every {rows[0]['eval_every']} steps and stopped at the first evaluation that "
           "reaches the target. The times are *training* time: the evaluations' own time is measured and "
           "left out. Steps are counted, never seconds, so the step at which a target is reached depends "
           "on the seeds, not on the machine; only the seconds do. Chapter 8's target: 99% exact match "
           "(greedy decoding); Chapter 9's: a perplexity within 10% of the grammar's own on the same "
           "sentences (the best any model can do). The 30 s line is a chapter notebook's whole budget.", ""]
    if "training" in figs:
        alt = ("Validation curves against training time in seconds: " + "; ".join(
            f"Chapter {r['chapter']}'s {r['metric']} "
            + (f"reaches its target {r['target']:.3g} after {r['reached_seconds']:.0f} s"
               if r.get("reached_seconds") is not None else f"does not reach {r['target']:.3g}")
            for r in rows) + ".")
        out += [_figure_block("performance/training.png", alt,
                              "Validation curves against training time; star: the target reached."), ""]
    table = []
    for r in rows:
        within = r.get("in_notebook_budget")
        table.append([
            f"{r['chapter']}", f"{r['metric']} {'≥' if r['higher_is_better'] else '≤'} {r['target']:.3g}",
            str(r["reached_step"]) if r.get("reached_step") else f"not by {r['steps']}",
            f"{r['reached_seconds']:.1f}" if r.get("reached_seconds") is not None else "–",
            f"{r['steps_per_second']:.1f}",
            f"{within['value']:.4g} (step {within['step']})" if within else "–",
        ])
    out += [_table(["Ch.", "Target", "Step", "Seconds", "Steps/s", "In 30 s"], table), ""]
    capped = [r for r in rows if not r.get("reached_step") and r.get("max_train_s")
              and r["steps"] < r["recipe_steps"]]
    if capped:
        out += [f"**Shortened runs.** To keep `make bench` within its 10 minutes, this run stopped "
                f"each chapter's training at its first evaluation after {capped[0]['max_train_s']:.0f} s "
                "of training (`--train-cap`), before "
                + " and ".join(f"Chapter {r['chapter']} reached its target (step {r['steps']} of the "
                               f"recipe's {r['recipe_steps']}; {r['metric']} {r['curve'][-1]['value']:.4g})"
                               for r in capped)
                + ". The steps per second hold; the time to the target needs the full run: "
                "`python benchmarks/run.py training --train-cap 0` (the recipes' steps at the rate above).",
                ""]
        out += _full_training_paragraph(full_training)
    return out


def _generation_section(results: dict) -> list[str]:
    rows = _data(results, "generation")
    if not rows:
        return []
    out = ["## Generation: the KV cache", "", provenance(results, "generation"), "",
           "Tokens per second, with the KV cache (each step feeds only the newest token) and without "
           "(each step runs the whole prefix again), timed side by side. The models have the recipes' "
           "shapes, untrained: with no end token to stop them, every run generates the same number "
           "of tokens, and speed does not depend on the weights.", ""]
    table = [[r["what"], str(r["batch"]), rate(r["cache"]), rate(r["no_cache"]), ratio(r["speedup"])]
             for r in rows]
    out += [_table(["Model", "Batch", "With cache", "Without", "Speed-up"], table), ""]
    return out


def _checks_section(results: dict) -> list[str]:
    rows = _data(results, "checks")
    if not rows:
        return []
    out = ["## The checks", "", provenance(results, "checks"), "",
           "`check(...)` on every registered exercise, end to end, as a learner calls it. The *right* "
           "answer is the reference's own source code, defined again as a notebook cell defines it (the "
           "package's function itself is refused as \"uses-package\"); the *wrong* one is that answer with "
           "its output changed so that no known mistake explains it, the slowest verdict: every known "
           "mistake is tried before the check describes the first failing case. Milliseconds:", ""]
    table = [[f"`{r['exercise']}`" + ("*" if r.get("right_how", "check") != "check" else ""), str(r["cases"]),
              seconds(r.get("right"), "ms"), seconds(r.get("wrong"), "ms")] for r in rows]
    out += [_table(["Exercise", "Cases", "Right", "Wrong"], table), ""]
    if any(r.get("right_how", "check") != "check" for r in rows):
        out += ["\\* The reference's code calls a part of the package that the exercise forbids a learner, "
                "so its right answer is timed through `run_cases` and `evaluate` with the forbidden-call "
                "rule off (what `check` runs, less that rule), as the registry tests judge references.", ""]
    return out


STAGE_NAMES = {"kernel_start": "starting the kernel", "notebook": "running the notebook",
               "harness": "the harness (the functions on the test cases)",
               "kernel_stop": "stopping the kernel", "judging": "judging (in the grader)",
               "other": "the rest (files, cases)", "total": "total"}


def _grading_section(results: dict) -> list[str]:
    figs = _data(results, "grading")
    if not figs:
        return []
    n = figs[0]["submissions"]
    out = ["## The grader", "", provenance(results, "grading"), "",
           f"`grade_many` on {n} submissions, each in its own learner folder: solutions notebooks (full "
           "marks expected) and exercises notebooks as handed out (0 points expected), spread over the "
           "available chapters; the same submissions with `--jobs 1`, then `--jobs 2`.", ""]
    table = [[f"`--jobs {g['jobs']}`", str(g["submissions"]), f"{g['seconds']:.1f}",
              f"{g['submissions_per_minute']:.1f}", str(g["unexpected"])] for g in figs]
    out += [_table(["Jobs", "Submissions", "Seconds", "Per minute", "Unexpected grades"], table), ""]
    stages = [s for s in STAGE_NAMES if any(s in (g.get("stages") or {}) for g in figs)]
    if stages:
        out += ["Where a submission's time goes (the median per submission of each stage, from the "
                "grader's own report, `timings` in its JSON; wall-clock seconds, so with two jobs on two "
                "cores each stage also waits for the other job):", ""]
        table = [[STAGE_NAMES[s], *[_sig((g.get("stages") or {}).get(s, math.nan)) for g in figs]]
                 for s in stages]
        out += [_table(["Stage", *[f"`--jobs {g['jobs']}` (s)" for g in figs]], table), ""]
    if any(g["jobs"] > 1 for g in figs):
        out += ["With `--jobs 2` each submission is graded in one of two worker processes, started "
                "afresh (`spawn`): a worker's first submission also pays for the worker's start and its "
                "imports (torch, the package, the exercise registry), which the table counts in *the "
                "rest*. On a handful of submissions that start weighs heavily; on a cohort it is paid "
                "twice in all (`make bench-grading` grades 100). On two cores shared with other work, a "
                "second job also competes with that work for a core.", ""]
    return out


def _noise_section(results: dict, previous: dict | None) -> list[str]:
    out = ["## How much the figures move", ""]
    inside = bench_compare.within_run(results)
    if inside:
        out += [f"Within this run, the repeats of a figure spread (slowest − fastest, over the median) by "
                f"{percent(inside['median'])} for the median figure ({inside['n']} figures); the most, "
                f"{percent(inside['max'])}, for {inside['max_name']}.", ""]
    if previous is None:
        out += ["There is no earlier run on this machine to compare with: run `make bench` again, and "
                "this section will say how much every figure moved between the two runs.", ""]
        return out
    diff = bench_compare.compare(previous, results)
    which = "the previous run" if previous["started"] <= results["started"] else "a later run"
    out += [f"Between {which} ({previous['started']}, load average "
            f"{_load(previous['load_before'])} at its start) and this one ({results['started']}, load "
            f"average {_load(results['load_before'])}), "
            "figure by figure (times, ratios and rates: relative change; slopes: difference; steps: "
            "difference in steps):", ""]
    names = {"ratio": "Ratios (course ÷ PyTorch, naive ÷ fused, speed-ups)", "time": "Times",
             "rate": "Rates (steps/s, tokens/s, submissions/min)", "slope": "Log-log slopes",
             "step": "Steps to a training target"}
    table = []
    for kind, s in diff["by_kind"].items():
        fmt = (lambda x: percent(x)) if kind in bench_compare.RELATIVE else (
            (lambda x: f"{x:.0f}") if kind == "step" else (lambda x: f"{x:.2f}"))
        table.append([names[kind], str(s["n"]), fmt(s["median"]), f"{fmt(s['max'])} ({s['max_name']})"])
    out += [_table(["Figures", "How many", "Median change", "Largest change"], table), ""]
    if results.get("machine") != previous.get("machine"):
        out += ["(The two runs' software differs: "
                + ", ".join(f"{k} {previous['machine'].get(k)} → {results['machine'].get(k)}"
                            for k in results["machine"]
                            if results["machine"].get(k) != previous["machine"].get(k))
                + ".)", ""]
    return out


def render(results: dict, previous: dict | None = None, figs: dict | None = None,
           results_name: str = "", full_training: dict | None = None) -> str:
    """The page's Markdown. ``figs`` names the figures drawn (:func:`draw_figures`)."""
    figs = figs or {}
    m = results["machine"]
    minutes = results.get("seconds", 0) / 60
    out = [
        "% Generated by `make bench` (benchmarks/run.py and benchmarks/bench_page.py) from "
        f"{results_name or 'its results'}: do not edit by hand.",
        "",
        "# Performance",
        "",
        "How fast the course runs on one machine, and how its teaching code compares with PyTorch's own "
        "modules. Every figure is the median of several repeats, with the fastest and slowest in "
        "brackets. A comparison is the ratio of two timings measured side by side in the same run (the "
        "two alternate, repeat after repeat), so that a change in the machine's load hits both: a ratio "
        "holds on another machine far better than a time does. To measure yours, run `make bench` "
        f"(this run took {minutes:.1f} minutes), twice to see the noise.",
        "",
        "## The machine",
        "",
        "CPU",
        f": {m['cpu']}, {m['cores']} cores",
        "",
        "PyTorch",
        f": {m['torch']}, {m['threads']} threads (`OMP_NUM_THREADS={m['omp_num_threads']}`, "
        f"`OMP_WAIT_POLICY={m['omp_wait_policy']}`)",
        "",
        "Python",
        f": {m['python']} on {m['system']}",
        "",
        "The run",
        f": `{results['command']}` from {results['started']} to {results.get('finished', '?')} "
        f"({results.get('seconds', 0):.0f} s), commit `{results['commit']}`, "
        f"{results['options']['repeats']} repeats per figure",
        "",
        "Load average",
        f": {_load(results['load_before'])} at the start, {_load(results.get('load_after'))} at the end "
        f"(over 1 minute; {m['cores']} cores: a load above {m['cores']} means processes waited for a core)",
        "",
    ]
    loads = [v[0] for v in [results.get("load_before"), results.get("load_after"),
                            *[sec.get("load_before") for sec in results.get("sections", {}).values()]]
             if v]
    if loads and max(loads) > m["cores"]:
        out += [f"**A loaded machine.** This run shared its {m['cores']} cores with other work (load "
                f"average up to {max(loads):.1f}), so its times are longer than on a quiet machine, by as "
                "much as the load: read the *ratios*, measured side by side, which the load changes far "
                "less, and the section on noise below.", ""]
    short = summary_rows(results)
    if short:
        out += ["## In short", "", _table(["Figure", "This run"], short), ""]
    out += _modules_section(results)
    out += _sizes_section(results, figs)
    out += _attention_section(results, figs)
    out += _training_section(results, figs, full_training)
    out += _generation_section(results)
    out += _checks_section(results)
    out += _grading_section(results)
    out += _notebook_section(results)
    out += _noise_section(results, previous)
    out += ["## Reproduce", "",
            "```bash",
            "make bench                                # everything: about "
            f"{max(1, round(minutes))} minutes; writes this page",
            "python benchmarks/run.py modules attention  # some sections (the results only)",
            "python benchmarks/bench_compare.py bench-results/A.json bench-results/B.json",
            "```", "",
            "Each run keeps its raw results in `bench-results/` (not in git). The page compares the latest "
            "run with the previous complete run on the same CPU.", ""]
    text = "\n".join(out)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip("\n") + "\n"


def write_page(results: dict, previous: dict | None = None, page: pathlib.Path = PAGE,
               figures: pathlib.Path = FIGURES, results_name: str = "",
               full_training: dict | None = None) -> pathlib.Path:
    figs = draw_figures(results, figures)
    page.write_text(render(results, previous, figs, results_name, full_training))
    return page
