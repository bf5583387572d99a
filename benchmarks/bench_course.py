"""The course as a learner and a maintainer meet it: notebooks, the book, `make test`, the checks.

- :func:`notebook_rows`: each notebook of the available chapters (``notebooks/``,
  ``solutions/``, ``exercises/``, from the table of chapters) executed top to bottom
  in a fresh kernel, on a scratch copy; a time budget can leave the last ones out
  (they are listed as not timed).
- :func:`book_rows`: ``make book`` (the strict Jupyter Book build), timed.
- :func:`make_test_record`: ``make test``'s duration, which ``make test`` itself
  writes to ``_build/make-test.json`` when it passes (``benchmarks/record_make_test.py``):
  ``make bench`` cannot run it (it takes longer than the benchmark's budget).
- :func:`check_rows`: ``check(...)`` on every registered exercise, with a right
  answer (the reference's source code run as a learner's notebook would define
  it: the package's own function handed in is refused as "uses-package") and a
  wrong answer that no known mistake explains (the slowest verdict: every known
  mistake is tried first).
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from bench_common import ROOT, summary

from transformer_workbook import chapters

FOLDERS = ("notebooks", "solutions", "exercises")
#: What make test writes when it passes (see record_make_test.py).
MAKE_TEST_RECORD = ROOT / "_build" / "make-test.json"


# ---------------------------------------------------------------------------
# Notebooks
# ---------------------------------------------------------------------------


def available_notebooks(folders=FOLDERS) -> list[tuple[str, str, pathlib.Path]]:
    """``(folder, slug, path)`` of every notebook of the available chapters, folder by folder."""
    out = []
    for folder in folders:
        for c in chapters.available():
            path = ROOT / folder / f"{c.slug}.ipynb"
            if path.exists():
                out.append((folder, c.slug, path))
    return out


def notebook_rows(budget_s: float | None = None, folders=FOLDERS) -> dict:
    """Execute each notebook once, from a fresh kernel, on a scratch copy.

    With ``budget_s``, a notebook is started only while the time spent so far is
    under the budget; the rest are listed in ``not_timed``.
    """
    from transformer_workbook.notebook_tools import execute_notebook

    rows, not_timed = [], []
    start = time.perf_counter()
    for folder, slug, path in available_notebooks(folders):
        if budget_s is not None and time.perf_counter() - start > budget_s:
            not_timed.append(f"{folder}/{path.name}")
            continue
        with tempfile.TemporaryDirectory(prefix="tw-bench-nb-") as tmp:
            copy = pathlib.Path(tmp) / path.name
            shutil.copy(path, copy)
            try:
                seconds, error = execute_notebook(copy), ""
            except Exception as exc:  # noqa: BLE001 - a failing notebook is a result, not a crash
                seconds, error = float("nan"), f"{type(exc).__name__}: {str(exc)[:200]}"
        rows.append({"folder": folder, "chapter": slug, "notebook": f"{folder}/{path.name}",
                     "seconds": seconds, "error": error})
        print(f"   {folder}/{path.name:40} {seconds:6.1f} s {error}", flush=True)
    totals = {}
    for folder in folders:
        done = [r["seconds"] for r in rows if r["folder"] == folder and not r["error"]]
        if done:
            totals[folder] = sum(done)
    return {"rows": rows, "totals": totals, "not_timed": not_timed, "budget_s": budget_s}


# ---------------------------------------------------------------------------
# make book, make test
# ---------------------------------------------------------------------------


def book_rows(repeats: int = 3) -> dict:
    """``make book`` timed ``repeats`` times (the build is strict and from scratch every time)."""
    times, error = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run(["make", "--no-print-directory", "book"], cwd=ROOT, capture_output=True,
                              text=True, timeout=900)
        if proc.returncode != 0:
            error = (proc.stdout + proc.stderr)[-500:]
            break
        times.append(time.perf_counter() - start)
        print(f"   make book: {times[-1]:.1f} s", flush=True)
    return {"time": summary(times) if times else None, "error": error}


def make_test_record(path: pathlib.Path = MAKE_TEST_RECORD) -> dict | None:
    """What the last passing ``make test`` recorded about itself, or None."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "seconds" in data else None


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------


def learner_copy(ex):
    """The reference's source code, defined again as a learner's notebook cell would define it.

    Compiled from the source text in a namespace like the reference module's
    (so the names it uses resolve), under ``__main__``: new code objects, so the
    check treats it as the learner's own code, not the package's.
    """
    module = sys.modules[ex.reference.__module__]
    namespace = dict(vars(module))
    namespace["__name__"] = "__main__"
    exec(compile(ex.solution_source(), f"<learner's {ex.target}>", "exec"), namespace)  # noqa: S102
    return namespace[ex.reference.__name__]


#: The ways :func:`_off` changes a float tensor: scaled and shifted (most checks see
#: wrong values), negated (for an answer judged by what it does, where a scaled
#: one may still do the same, like a W_Q judged by the attention it makes), zeros.
OFF_WAYS = 3


def _off(value, way: int = 0):
    """``value`` changed so that no known mistake explains it (floats: see :data:`OFF_WAYS`)."""
    import torch

    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            return (value * 1.5 + 0.25, -value, torch.zeros_like(value))[way]
        return ~value if value.dtype == torch.bool else value + 1
    if isinstance(value, torch.nn.Module):  # a function that builds a module (encoder.make_block)
        forward = value.forward
        value.forward = lambda *args, **kwargs: _off(forward(*args, **kwargs), way)
        return value
    if isinstance(value, tuple):
        return (_off(value[0], way), *value[1:])
    if isinstance(value, bool):  # a verdict (masking.leakage_test): the other one
        return not value
    if isinstance(value, str):  # a name (training.diagnose_run): another one
        return value[::-1] + "?"
    if isinstance(value, (int, float)):
        return value + 1
    return value


def wrong_answer(fn, way: int = 0):
    """A wrong answer built on ``fn`` (a function or an ``nn.Module`` class): its output is off."""
    if isinstance(fn, type):
        class Wrong(fn):
            def forward(self, *args, **kwargs):
                return _off(super().forward(*args, **kwargs), way)

        Wrong.__name__ = fn.__name__
        return Wrong

    def wrong(*args, **kwargs):
        return _off(fn(*args, **kwargs), way)

    return wrong


def answers(ex):
    """``(right, how, wrong)`` for timing an exercise's check.

    ``right`` is a call that judges the learner-style copy of the reference
    (:func:`learner_copy`): ``check`` itself when the copy passes it, else, when
    the copy only fails the rule on forbidden calls (its source uses a helper
    of the package that the exercise forbids a learner), ``run_cases`` and
    ``evaluate`` with that rule off, as the registry tests judge references.
    ``how`` says which. ``wrong`` checks :func:`wrong_answer` of the copy (or is
    None when that changes nothing on the cases). Each returns the CheckResult.
    """
    from transformer_workbook.exercises import check, evaluate, run_cases

    copy = learner_copy(ex)
    if check(ex.id, copy, quiet=True).passed:
        def right():
            return check(ex.id, copy, quiet=True)
        how = "check"
    else:
        def right():
            cases = ex.cases()
            options = {**ex.run_options(), "forbidden": ()}
            return evaluate(ex, cases, run_cases(copy, cases, call=ex.call, **options))
        how = "run_cases + evaluate, no forbidden-call rule"
    for way in range(OFF_WAYS):  # the first change of the output that the check rejects
        bad = wrong_answer(copy, way)
        if not check(ex.id, bad, quiet=True).passed:
            def wrong(bad=bad):
                return check(ex.id, bad, quiet=True)
            return right, how, wrong
    return right, how, None


def check_rows(repeats: int = 5) -> list[dict]:
    """Seconds per ``check(...)`` for every registered exercise, a right and a wrong answer."""
    from transformer_workbook.exercises import all_exercises

    rows = []
    for ex in all_exercises():
        right, how, wrong = answers(ex)
        row = {"exercise": ex.id, "chapter": ex.chapter, "cases": len(ex.cases()), "right_how": how}
        first = right()
        row["right_status"] = first.status
        if wrong is not None:
            res = wrong()
            row["wrong_status"], row["wrong_mistake"] = res.status, res.mistake
        for name, fn in (("right", right if first.passed else None), ("wrong", wrong)):
            if fn is None:
                row[name] = None
                continue
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            row[name] = summary(times)
        rows.append(row)
        shown = {k: f"{row[k]['median'] * 1e3:6.1f} ms" if row[k] else "   -" for k in ("right", "wrong")}
        print(f"   {ex.id:45} right {shown['right']} ({row['right_status']})  wrong {shown['wrong']} "
              f"({row.get('wrong_mistake')})", flush=True)
    return rows
