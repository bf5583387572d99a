"""Graded "Try it" exercises: ``check``, ``hint`` and ``solution``.

>>> from transformer_workbook.exercises import check, hint, solution
>>> check("attention.softmax", softmax)   # prints feedback, returns a CheckResult

Each chapter's exercises live in a module of this package named after the
chapter's module (``attention.py`` for Chapter 1) and register themselves in
:data:`REGISTRY` when imported. Which modules: the available chapters' exercise
modules in the table of chapters (:mod:`transformer_workbook.chapters`).
"""

from __future__ import annotations

import importlib

from ..chapters import exercise_modules
from .core import (
    REGISTRY,
    Case,
    CheckResult,
    Exercise,
    Mistake,
    Outcome,
    check,
    evaluate,
    get,
    hint,
    outcomes_from_payload,
    outcomes_to_payload,
    run_cases,
    solution,
)

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
    """Every registered exercise, in chapter order."""
    _load_all()
    return list(REGISTRY.values())


__all__ = [
    "REGISTRY",
    "Case",
    "CheckResult",
    "Exercise",
    "Mistake",
    "Outcome",
    "all_exercises",
    "check",
    "evaluate",
    "get",
    "hint",
    "outcomes_from_payload",
    "outcomes_to_payload",
    "run_cases",
    "solution",
]
