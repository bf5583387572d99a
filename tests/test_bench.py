"""`make bench`'s machinery on small fake results: the page, its figures, the comparison of two runs.

Nothing here measures anything or depends on timing: the benchmarks themselves
run only in `make bench`. The fake results have the shape ``benchmarks/run.py``
saves (one helper builds them); the page is written into a temporary folder.
"""

from __future__ import annotations

import copy
import json
import pathlib
import re
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_compare  # noqa: E402
import bench_course  # noqa: E402
import bench_page  # noqa: E402
import record_make_test  # noqa: E402
import run as bench_run  # noqa: E402


def s(median, lo=None, hi=None, n=5):
    """A summary of repeats, as bench_common.summary makes them."""
    lo, hi = median if lo is None else lo, median if hi is None else hi
    return {"median": median, "min": lo, "max": hi, "n": n}


def section(data, name, load=(1.0, 1.2)):
    return {"command": f"python benchmarks/run.py {name}", "load_before": [load[0], 0.9, 0.8],
            "load_after": [load[1], 1.0, 0.9], "seconds": 12.0, "data": data}


def fake_results(scale: float = 1.0, model_ratio: float = 1.04, started="2026-01-02T10:00:00+00:00") -> dict:
    """A complete results document; ``scale`` multiplies every time (a slower or faster run)."""
    def t(x, spread=0.1):
        return s(x * scale, x * scale * (1 - spread), x * scale * (1 + spread))

    def row(module, what, ours, theirs, ratio, config="batch 16, length 128", **extra):
        return {"module": module, "what": what, "config": config, "ours": t(ours), "theirs": t(theirs),
                "ratio": s(ratio, ratio * 0.95, ratio * 1.05), **extra}

    modules = [
        row("MultiHeadAttention", "forward", 0.010, 0.016, 0.62, max_abs_diff=1e-7),
        row("MultiHeadAttention", "training step", 0.030, 0.040, 0.75, max_abs_diff=1e-7),
        row("MultiHeadAttention", "forward, with weights", 0.030, 0.015, 2.0, max_abs_diff=2e-7),
        row("EncoderLayer", "forward", 0.05, 0.05, 1.0, max_abs_diff=1e-6),
        row("EncoderLayer", "training step", 0.15, 0.14, 1.07, max_abs_diff=1e-6),
        row("DecoderLayer", "forward", 0.07, 0.07, 1.0, max_abs_diff=0.0),
        row("DecoderLayer", "training step", 0.2, 0.19, 1.05, max_abs_diff=0.0),
        row("Transformer", "forward", 0.01, 0.01, 1.0, config="Chapter 8's model", parameters=237504),
        row("Transformer", "training step", 0.05, 0.05 / model_ratio, model_ratio, config="Chapter 8's model",
            parameters=237504),
    ]
    sizes = [row(f"Transformer d_model {d}", "training step", 0.01 * d / 32, 0.01 * d / 32, 1.0,
                 config=f"d_model {d}", d_model=d, parameters=60000 * (d // 32) ** 2) for d in (32, 64, 128)]
    points = []
    for L in (128, 256, 512, 1024):
        naive, fused = 1e-9 * L**2, 0.4e-9 * L**2
        points.append({"length": L, "flops": 4 * 8 * L * L * 64,
                       "naive": {"time": t(naive), "peak_bytes": 32 * L * L},
                       "fused": {"time": t(fused), "peak_bytes": 4096 * L},
                       "time_ratio": naive / fused, "memory_ratio": 32 * L / 4096})
    attention = {"config": "batch 1, 8 heads, d_head 64", "fit_from": 256, "points": points,
                 "slopes": {"naive_time": 2.0, "naive_memory": 2.0, "fused_time": 2.0, "fused_memory": 1.0}}
    generation = [
        {"what": "Chapter 9's language model, generate", "batch": 1, "new_tokens": 200,
         "cache": s(1000 / scale, 900 / scale, 1100 / scale), "no_cache": s(400 / scale), "speedup": s(2.5)},
        {"what": "Chapter 9's language model, generate", "batch": 32, "new_tokens": 100,
         "cache": s(9000 / scale), "no_cache": s(600 / scale), "speedup": s(15.0, 14.0, 16.0)},
    ]
    checks = [
        {"exercise": "attention.softmax", "chapter": "01_attention", "cases": 9, "right_how": "check",
         "right": t(0.006), "wrong": t(0.02), "right_status": "passed", "wrong_status": "failed"},
        {"exercise": "encoder.EncoderLayer", "chapter": "04_encoder", "cases": 5,
         "right_how": "run_cases + evaluate, no forbidden-call rule", "right": t(0.1), "wrong": t(0.4),
         "right_status": "passed", "wrong_status": "failed"},
    ]
    training = [
        {"chapter": 8, "metric": "validation exact match", "higher_is_better": True, "target": 0.99,
         "recipe_steps": 2400, "eval_every": 100, "max_train_s": 240, "steps": 300,
         "train_seconds": 30 * scale, "eval_seconds": 3.0, "steps_per_second": 10 / scale,
         "reached_step": 300, "reached_seconds": 30 * scale,
         "in_notebook_budget": {"step": 300, "train_s": 30 * scale, "value": 0.995} if scale <= 1 else
                               {"step": 200, "train_s": 20 * scale, "value": 0.9},
         "curve": [{"step": 100, "train_s": 10 * scale, "value": 0.2},
                   {"step": 200, "train_s": 20 * scale, "value": 0.9},
                   {"step": 300, "train_s": 30 * scale, "value": 0.995}]},
        {"chapter": 9, "metric": "validation perplexity", "higher_is_better": False, "target": 1.72,
         "recipe_steps": 1200, "eval_every": 100, "max_train_s": 240, "steps": 200,
         "train_seconds": 40 * scale, "eval_seconds": 4.0, "steps_per_second": 5 / scale,
         "reached_step": None, "reached_seconds": None, "in_notebook_budget": None,
         "curve": [{"step": 100, "train_s": 20 * scale, "value": 3.0},
                   {"step": 200, "train_s": 40 * scale, "value": 2.0}]},
    ]
    notebooks = {"rows": [
        {"folder": "notebooks", "chapter": "01_attention", "notebook": "notebooks/01_attention.ipynb",
         "seconds": 12.0 * scale, "error": ""},
        {"folder": "solutions", "chapter": "01_attention", "notebook": "solutions/01_attention.ipynb",
         "seconds": 8.0 * scale, "error": ""},
    ], "totals": {"notebooks": 12.0 * scale, "solutions": 8.0 * scale},
        "not_timed": ["exercises/01_attention.ipynb"], "budget_s": 10.0}
    grading = [
        {"jobs": jobs, "submissions": 4, "seconds": 40.0 * scale / jobs, "per_submission_median_s": 10.0,
         "submissions_per_minute": 6.0 * jobs / scale, "unexpected": 0,
         "stages": {"kernel_start": 2.0, "notebook": 6.0, "harness": 1.0, "kernel_stop": 0.2, "judging": 0.3,
                    "other": 0.5, "total": 10.0},
         "submissions_graded": []} for jobs in (1, 2)]
    machine = {"cpu": "Test CPU 9000", "cores": 2, "torch": "2.13.0+cpu", "threads": 2, "python": "3.11.7",
               "system": "Linux 6.0", "omp_num_threads": "2", "omp_wait_policy": "PASSIVE"}
    return {
        "format": 1, "started": started, "finished": started, "seconds": 480.0, "command": "make bench",
        "options": {"repeats": 5, "notebook_budget_s": 300, "train_cap_s": 240, "grading_n": 4},
        "commit": "abc1234", "machine": machine, "load_before": [1.0, 0.9, 0.8],
        "load_after": [1.5, 1.0, 0.9],
        "sections": {
            "modules": section(modules, "modules"), "sizes": section(sizes, "sizes"),
            "attention": section(attention, "attention"), "generation": section(generation, "generation"),
            "checks": section(checks, "checks"), "training": section(training, "training"),
            "notebooks": section(notebooks, "notebooks"),
            "book": section({"time": t(20.0), "error": ""}, "book"),
            "grading": section(grading, "grading"),
        },
        "make_test": {"command": "make test", "seconds": 154.0, "started": "2026-01-01T09:00:00+00:00",
                      "finished": "2026-01-01T09:02:34+00:00", "commit": "abc1234", "cpu": "Test CPU 9000",
                      "cores": 2, "load_at_end": [0.5, 0.4, 0.3]},
    }


# ---------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------


@pytest.fixture
def written(tmp_path):
    results = fake_results()
    page = bench_page.write_page(results, None, tmp_path / "performance.md", tmp_path / "performance",
                                 results_name="bench-results/fake.json")
    return results, page.read_text(), tmp_path


def test_the_page_says_where_every_figure_came_from(written):
    results, text, _ = written
    assert text.startswith("% Generated by `make bench`") and "bench-results/fake.json" in text
    assert text.count("\n# ") == 1 and text.splitlines()[2] == "# Performance"
    assert "Test CPU 9000, 2 cores" in text and "2.13.0+cpu" in text and "OMP_WAIT_POLICY=PASSIVE" in text
    for name in results["sections"]:
        # each section: the machine, the load before and after, and the command that reproduces it
        line = next(ln for ln in text.splitlines() if f"Reproduce: `python benchmarks/run.py {name}`" in ln)
        assert "Test CPU 9000, 2 cores, torch 2.13.0+cpu with 2 threads" in line
        assert "load average 1.0 before, 1.2 after" in line


def test_the_page_has_every_section_and_its_figures(written):
    _, text, _ = written
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings == ["The machine", "In short", "The course's modules against PyTorch's",
                        "Training step against model size", "Attention: naive against fused",
                        "Training: Chapters 8 and 9", "Generation: the KV cache", "The checks", "The grader",
                        "Notebooks, the book and the tests", "How much the figures move", "Reproduce"]
    # medians with the fastest and slowest repeat
    assert "| MultiHeadAttention | forward | 10.0 (9.00–11.0) | 16.0 (14.4–17.6) | 0.62 (0.59–0.65) |" in text
    assert "| `attention.softmax` | 9 | 6.00 (5.40–6.60) | 20.0 (18.0–22.0) |" in text
    assert "`encoder.EncoderLayer`*" in text and "forbidden-call rule off" in text
    assert "| `01_attention` | 12.0 | 8.0 |" in text and "`exercises/01_attention.ipynb`" in text
    assert "not by 200" in text  # Chapter 9 did not reach its target in the fake run
    assert "`make test` took **154 s**" in text and "2026-01-01T09:02:34+00:00" in text
    assert "| running the notebook | 6.00 | 6.00 |" in text


def test_figures_are_pngs_shown_with_a_real_alt_text(written):
    _, text, folder = written
    blocks = re.findall(r":::\{figure\} (\S+)\n:alt: (.+)\n:width: 100%\n\n(.+)\n:::", text)
    assert [b[0] for b in blocks] == ["performance/model-size.png", "performance/attention.png",
                                      "performance/training.png"]
    for rel, alt, caption in blocks:
        png = folder / rel
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(alt) > 60 and not re.search(r"\.png|/", alt.replace("÷", "")), alt
        assert caption.strip()
    assert "does not reach 1.72" in blocks[2][1]


def test_the_goal_paragraph_follows_the_model_ratio():
    within = bench_page.render(fake_results(model_ratio=1.04))
    assert "**The goal holds**" in within and "1.04×" in within
    above = bench_page.render(fake_results(model_ratio=1.25))
    assert "**Above the goal** of 1.1×" in above and "1.25×" in above and "in_proj_weight" in above


def test_a_page_without_an_earlier_run_says_how_to_get_the_noise(written):
    _, text, _ = written
    assert "There is no earlier run on this machine to compare with: run `make bench` again" in text


def test_the_page_reports_how_much_the_figures_moved_between_two_runs(tmp_path):
    before, after = fake_results(1.0), fake_results(1.2, started="2026-01-02T11:00:00+00:00")
    text = bench_page.render(after, before)
    assert "Between the previous run (2026-01-02T10:00:00+00:00" in text
    assert "| Times |" in text and "| 20% | 20% (" in text  # every time moved by +20%
    assert "| Ratios (course ÷ PyTorch, naive ÷ fused, speed-ups) |" in text
    # within the run: the repeats' spread
    assert re.search(r"the repeats of a figure spread .* by \d+% for the median figure", text)


def test_a_partial_results_document_renders_its_sections_only():
    results = fake_results()
    results["sections"] = {"checks": results["sections"]["checks"]}
    results.pop("make_test")
    text = bench_page.render(results)
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings == ["The machine", "In short", "The checks", "How much the figures move", "Reproduce"]
    assert bench_page.draw_figures.__name__  # nothing drawn without the sections' data


# ---------------------------------------------------------------------------
# Comparing two runs
# ---------------------------------------------------------------------------


def test_compare_relative_changes_for_times_ratios_and_rates_absolute_for_slopes_and_steps():
    a = fake_results()
    b = copy.deepcopy(a)
    b["sections"]["modules"]["data"][0]["ratio"]["median"] = 0.62 * 1.1  # +10%
    b["sections"]["attention"]["data"]["slopes"]["naive_time"] = 2.25  # +0.25
    b["sections"]["training"]["data"][0]["reached_step"] = 400  # +100 steps
    b["sections"]["generation"]["data"][0]["cache"]["median"] = 500  # -50%
    del b["sections"]["checks"]  # a figure in one run only is left out
    diff = bench_compare.compare(a, b)
    rows = {r["name"]: r for r in diff["rows"]}
    assert rows["MultiHeadAttention, forward: ratio"]["change"] == pytest.approx(0.1)
    assert rows["attention slope: naive time"]["change"] == pytest.approx(0.25)
    assert rows["Chapter 8: step at which the target is reached"]["change"] == 100
    assert rows["Chapter 9's language model, generate, batch 1: tokens/s with the cache"]["change"] == \
        pytest.approx(-0.5)
    assert not any(name.startswith("check ") for name in rows)
    assert diff["by_kind"]["ratio"]["max"] == pytest.approx(0.1)
    assert diff["by_kind"]["ratio"]["max_name"] == "MultiHeadAttention, forward: ratio"
    assert diff["by_kind"]["slope"] == {"n": 4, "median": 0.0, "max": pytest.approx(0.25),
                                        "max_name": "attention slope: naive time"}
    assert diff["by_kind"]["rate"]["max"] == pytest.approx(0.5)
    # unchanged figures: no change at all
    same = bench_compare.compare(a, copy.deepcopy(a))
    assert all(r["change"] == 0 for r in same["rows"]) and len(same["rows"]) == len(bench_compare.figures(a))


def test_figures_skip_what_was_not_measured():
    results = fake_results()
    figs = bench_compare.figures(results)
    assert "Chapter 9: training time to the target" not in figs  # not reached: None
    assert figs["Chapter 8: training time to the target"] == (30.0, "time")
    assert figs["notebook notebooks/01_attention.ipynb"] == (12.0, "time")
    assert figs["grader --jobs 2: submissions per minute"] == (12.0, "rate")
    assert {kind for _, kind in figs.values()} == set(bench_compare.KINDS)


def test_within_run_spread_is_max_minus_min_over_the_median():
    results = {"sections": {"checks": {"data": [
        {"exercise": "a", "right": s(1.0, 0.9, 1.1), "wrong": s(2.0, 1.0, 3.0)},
        {"exercise": "b", "right": s(1.0, 1.0, 1.0), "wrong": s(5.0, 5.0, 5.0, n=1)},  # one repeat: left out
    ]}}}
    inside = bench_compare.within_run(results)
    assert inside["n"] == 3
    assert inside["median"] == pytest.approx(0.2) and inside["max"] == pytest.approx(1.0)
    assert inside["max_name"] == "check a, wrong answer"
    assert bench_compare.within_run({"sections": {}}) is None


def test_compare_command_prints_every_figure(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(fake_results()))
    b.write_text(json.dumps(fake_results(1.5)))
    assert bench_compare.main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "make book" in out and "+50.0%" in out and "median change" in out


def test_the_previous_complete_run_on_the_same_cpu_is_the_one_compared(tmp_path):
    def save(name, **changes):
        doc = fake_results()
        for key, value in changes.items():
            doc[key] = value
        (tmp_path / name).write_text(json.dumps(doc))
        return tmp_path / name

    older = save("20260101-100000.json")
    save("20260101-110000.json", sections={"checks": {}})  # partial: not a run of everything
    save("20260101-120000.json", machine={**fake_results()["machine"], "cpu": "Another CPU"})
    current = save("20260101-130000.json")
    machine = fake_results()["machine"]
    assert bench_run.previous_complete(tmp_path, current, machine) == older
    assert bench_run.previous_complete(tmp_path, older, machine) == current
    (tmp_path / "20260101-140000.json").write_text("{not json")
    assert bench_run.previous_complete(tmp_path, current, machine) == older


def test_a_capped_training_run_cites_the_latest_full_one_on_the_same_cpu(tmp_path):
    """Training capped by --train-cap: the page says so and cites the last uncapped run."""
    capped = fake_results()
    ch9 = capped["sections"]["training"]["data"][1]  # not reached, stopped before the recipe's end
    full = fake_results()
    full["options"] = {**full["options"], "train_cap_s": 0}
    full["sections"] = {"training": full["sections"]["training"]}
    full["sections"]["training"]["data"][1].update(reached_step=800, reached_seconds=83.0)
    other_cpu = json.loads(json.dumps(full))
    other_cpu["machine"]["cpu"] = "Another CPU"
    (tmp_path / "20260101-100000.json").write_text(json.dumps(full))
    (tmp_path / "20260101-110000.json").write_text(json.dumps(capped))  # capped: not a full run
    (tmp_path / "20260101-120000.json").write_text(json.dumps(other_cpu))
    found = bench_run.full_training_run(tmp_path, capped["machine"])
    assert found == tmp_path / "20260101-100000.json"
    text = bench_page.render(capped, None, {}, "x.json", json.loads(found.read_text()))
    assert "**Shortened runs.**" in text and f"step {ch9['steps']} of the recipe's 1200" in text
    assert "Chapter 9 reached its validation perplexity target (1.72) at step 800 of 1200, after 83 s" in text
    assert "**The full runs**" not in bench_page.render(capped, None, {}, "x.json", None)


# ---------------------------------------------------------------------------
# make test's record, the checks' answers
# ---------------------------------------------------------------------------


def test_make_test_records_its_duration_for_the_page(tmp_path):
    out = tmp_path / "make-test.json"
    data = record_make_test.record(1000.0, out, end=1154.4)
    assert data["seconds"] == 154.4 and data["command"] == "make test"
    assert bench_course.make_test_record(out) == json.loads(out.read_text())
    assert bench_course.make_test_record(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert bench_course.make_test_record(tmp_path / "bad.json") is None
    assert record_make_test.main(["not-a-number", str(out)]) == 0  # never fails make test


def test_the_makefile_records_make_test_and_runs_the_benchmark():
    makefile = (ROOT / "Makefile").read_text()
    test = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "benchmarks/record_make_test.py $(TEST_START)" in test
    assert re.search(r"^TEST_START := \$\(shell date \+%s\)$", makefile, re.M)
    bench = re.search(r"^bench:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "benchmarks/run.py" in bench


def test_every_exercise_has_a_right_and_a_wrong_answer_to_time():
    """What make bench times for each registered exercise is what it says: a pass and a failure."""
    from transformer_workbook.exercises import all_exercises

    for ex in all_exercises():
        right, how, wrong = bench_course.answers(ex)
        assert right().passed, ex.id
        assert wrong is not None and not wrong().passed, ex.id
        assert how == "check" or "forbidden" in how
