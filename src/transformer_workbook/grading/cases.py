"""The exercises a submission is graded on, and what the grader hands the
harness: each exercise's cases as plain data, and the options of
:func:`~transformer_workbook.exercises.core.run_cases`.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterable
from typing import Any


def chapter_exercises() -> dict[str, list]:
    """``{chapter: [Exercise, ...]}`` from the registry, in registry order."""
    from ..exercises import all_exercises

    chapters: dict[str, list] = {}
    for ex in all_exercises():
        chapters.setdefault(ex.chapter, []).append(ex)
    return chapters


def detect_chapter(nb: Any, path: pathlib.Path, chapters: Iterable[str]) -> str | None:
    """The submission's chapter: notebook metadata first, then the file name."""
    chapters = [c for c in chapters if c]
    meta = nb.get("metadata", {}) if isinstance(nb, dict) else {}
    tw_meta = meta.get("transformer_workbook") if isinstance(meta, dict) else None
    if isinstance(tw_meta, dict) and tw_meta.get("chapter") in chapters:
        return tw_meta["chapter"]
    stem = path.stem
    if stem in chapters:
        return stem
    found = [c for c in chapters if c in stem]  # e.g. "alice_01_attention.ipynb"
    return found[0] if len(found) == 1 else None


def run_options(ex) -> dict:
    """The keyword arguments the harness passes to ``core.run_cases`` for exercise ``ex``.

    The one place that decides them: the harness passes them through as they
    are (``core.run_cases(fn, cases, call=call, **job["run"])``), so an option
    ``check`` gains is given to the grader here, and only here. Plain data only
    (the kernel loads it with ``torch.load(weights_only=True)``).
    """
    return ex.run_options()


def case_to_data(case) -> dict:
    """A case as plain data (for ``torch.load(weights_only=True)`` in the kernel).

    Keeps its class (a chapter may subclass :class:`Case`, e.g. with weights
    to load into a module) and every field; sets become lists.
    """
    fields, frozensets = {}, []
    for f in dataclasses.fields(case):
        if not f.init:
            continue
        value = getattr(case, f.name)
        if isinstance(value, (set, frozenset)):
            value = sorted(value, key=str)
            frozensets.append(f.name)
        fields[f.name] = value
    cls = type(case)
    return {"cls": (cls.__module__, cls.__qualname__), "fields": fields, "frozensets": frozensets}


def make_jobs(exercises, cases: dict) -> list[dict]:
    """One job per exercise, in order: what the harness needs to run the learner's function."""
    return [
        {"id": ex.id, "target": ex.target, "custom_call": ex.call is not None,
         "run": run_options(ex), "cases": [case_to_data(c) for c in cases[ex.id]]}
        for ex in exercises
    ]
