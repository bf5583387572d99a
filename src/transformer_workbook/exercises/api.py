"""The notebook-facing functions: ``check``, ``hint``, ``solution``, and the registry."""

from __future__ import annotations

import difflib

from .core import run_cases, safe_str, sanitize
from .feedback import display
from .judging import ERRORED, FAILED, CheckResult, Exercise, describe_output, evaluate

REGISTRY: dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    if exercise.id in REGISTRY:
        raise ValueError(f"exercise {exercise.id!r} registered twice")
    REGISTRY[exercise.id] = exercise
    return exercise


def _unknown(exercise_id: object) -> str:
    name = safe_str(exercise_id, 80)
    close = difflib.get_close_matches(name, list(REGISTRY), n=1, cutoff=0.6)
    if close:
        return f"There is no exercise called {name!r}. Did you mean {close[0]!r}?"
    return f"There is no exercise called {name!r}; the exercises are: {', '.join(REGISTRY)}."


def get(exercise_id: str) -> Exercise:
    """The exercise called ``exercise_id`` (``KeyError`` with a "did you mean" otherwise)."""
    from . import _load_all

    _load_all()
    try:
        return REGISTRY[exercise_id]
    except (KeyError, TypeError):
        raise KeyError(_unknown(exercise_id)) from None


def _check(exercise_id: str, fn: object) -> CheckResult:
    try:
        ex = get(exercise_id)
    except KeyError as exc:
        return CheckResult(safe_str(exercise_id, 80), ERRORED, exc.args[0], "unknown-exercise")
    if fn is None or not callable(fn):
        return CheckResult(
            ex.id,
            FAILED,
            f"Pass your function itself, e.g. `check({ex.id!r}, {ex.target})`: "
            f"got {describe_output(sanitize(fn))}, which cannot be called.",
            "not-callable",
            title=ex.title,
        )
    cases = ex.cases()
    outcomes = run_cases(fn, cases, call=ex.call, **ex.run_options())
    return evaluate(ex, cases, outcomes)


def check(exercise_id: str, fn: object, *, quiet: bool = False) -> CheckResult:
    """Check the learner's ``fn`` for ``exercise_id`` and show the feedback.

    Returns a :class:`CheckResult` (``.passed``, ``.status``, ``.message``,
    ``.mistake``); in a notebook it is shown once, as a coloured box. Never
    raises, whatever ``fn`` does (only a Jupyter interrupt is passed on, once
    the learner's code has stopped). The grader gives the same verdict on the
    same code.
    """
    try:
        res = _check(exercise_id, fn)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a bug of ours must not look like the learner's
        res = CheckResult(
            safe_str(exercise_id, 80),
            ERRORED,
            f"The check itself failed ({type(exc).__name__}: {safe_str(exc, 200)}). This is a "
            "bug in the course, not in your code: please report it.",
            "check-failed",
        )
    if not quiet:
        display(res)
    return res


def hint(exercise_id: str) -> None:
    """Print the hints for an exercise, most general first."""
    try:
        ex = get(exercise_id)
    except KeyError as exc:
        print(exc.args[0])
        return
    print(f"Hints for {ex.id} ({ex.title}):")
    for i, h in enumerate(ex.hints, 1):
        print(f"  {i}. {h}")


def solution(exercise_id: str) -> None:
    """Print the reference solution's code."""
    try:
        ex = get(exercise_id)
    except KeyError as exc:
        print(exc.args[0])
        return
    print(f"Reference solution for {ex.id}:\n")
    print(ex.solution_source())
