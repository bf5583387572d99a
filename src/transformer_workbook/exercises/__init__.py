"""Graded exercises: ``check``, ``hint`` and ``solution``.

>>> from transformer_workbook.exercises import check, hint, solution
>>> check("attention.softmax", softmax)   # shows the feedback, returns a CheckResult

The machinery, in the order it runs:

- :mod:`.core`: cases, and running the learner's code on them (in the
  learner's process; self-contained, so the grader can load a fresh copy);
- :mod:`.judging`: the reference, the known mistakes, the verdict;
- :mod:`.feedback`: how the verdict looks (one HTML box, or plain text);
- :mod:`.modules`: the shared helper for exercises where the learner writes an
  ``nn.Module``;
- :mod:`.api`: ``check``, ``hint``, ``solution`` and the registry.

Each chapter's exercises live in a module of this package named after the
chapter's module (``attention.py`` for Chapter 1) and register themselves in
:data:`REGISTRY` when imported. Which modules: the available chapters' exercise
modules in the table of chapters (:mod:`transformer_workbook.chapters`).
"""

from __future__ import annotations

import importlib

from ..chapters import exercise_modules
from .api import REGISTRY, check, get, hint, register, solution
from .core import (
    Case,
    Outcome,
    outcomes_from_payload,
    outcomes_to_payload,
    run_cases,
)
from .judging import (
    ERRORED,
    FAILED,
    NOT_ATTEMPTED,
    PASSED,
    STATUSES,
    CheckResult,
    Exercise,
    Mistake,
    Tolerance,
    evaluate,
)
from .modules import ModuleCase, build_and_call

#: Exercise modules, in chapter order (from the table of chapters).
CHAPTER_MODULES = exercise_modules()

_loaded = False


def _load_all() -> None:
    global _loaded
    if not _loaded:
        for name in CHAPTER_MODULES:
            importlib.import_module(f"{__name__}.{name}")
        _loaded = True


def all_exercises() -> list[Exercise]:
    """Every registered exercise, in chapter order (then in the order its module registers them).

    Not the registry's own order: that depends on which exercise module happened to be
    imported first, and two processes (a learner's kernel, the grader) must agree.
    """
    _load_all()
    chapter = {name: i for i, name in enumerate(CHAPTER_MODULES)}

    def key(item):
        index, ex = item
        return chapter.get(ex.id.split(".")[0], len(chapter)), index

    return [ex for _, ex in sorted(enumerate(REGISTRY.values()), key=key)]


__all__ = [
    "ERRORED",
    "FAILED",
    "NOT_ATTEMPTED",
    "PASSED",
    "REGISTRY",
    "STATUSES",
    "Case",
    "CheckResult",
    "Exercise",
    "Mistake",
    "ModuleCase",
    "Outcome",
    "Tolerance",
    "all_exercises",
    "build_and_call",
    "check",
    "evaluate",
    "get",
    "hint",
    "outcomes_from_payload",
    "outcomes_to_payload",
    "register",
    "run_cases",
    "solution",
]
