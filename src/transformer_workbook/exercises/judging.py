"""Judging the learner's outcomes: the reference, the known mistakes, and what to say.

Runs in the judging process only: in the learner's kernel for ``check``, in
the grader's own process for the grader. The reference and the known mistakes
always run in torch's fresh-session settings (:class:`~.core.standard_torch_state`),
whatever the learner's notebook changed, so both give the same verdict.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .core import (
    ERROR,
    NOT_IMPLEMENTED,
    NOT_RUN,
    TIMEOUT,
    VALUE,
    Case,
    Outcome,
    Unsupported,
    describe_value,
    run_cases,
    standard_torch_state,
)

# Exercise statuses (the grader adds its own: see transformer_workbook.grading).
PASSED, FAILED, NOT_ATTEMPTED, ERRORED = "passed", "failed", "not attempted", "error"
STATUSES = (PASSED, FAILED, NOT_ATTEMPTED, ERRORED)


# --------------------------------------------------------------------------
# Comparing outcomes
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Tolerance:
    """How close the learner's numbers must be to the reference's.

    ``zero_atol``: where the reference is exactly 0 (a masked weight, an
    underflowed probability), the learner's value must be at most this in
    magnitude: small enough to be 0 in float32 arithmetic, far below what a
    finite mask value such as -20 leaves (about 2e-9).
    """

    rtol: float = 1e-4
    atol: float = 1e-5
    zero_atol: float = 1e-30


def _close(a: Any, b: Any, tol: Tolerance) -> bool:
    """Do two sanitized values agree (same structure, shapes, dtypes, values)?"""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.dtype == torch.bool or not (a.is_floating_point() or a.is_complex()):
            return bool(torch.equal(a, b))
        a64, b64 = a.double(), b.double()
        if not torch.allclose(a64, b64, rtol=tol.rtol, atol=tol.atol, equal_nan=True):
            return False
        exact_zero = b64 == 0
        return not bool((a64[exact_zero].abs() > tol.zero_atol).any())
    if isinstance(a, tuple) or isinstance(b, tuple):
        return (
            isinstance(a, tuple)
            and isinstance(b, tuple)
            and len(a) == len(b)
            and all(_close(x, y, tol) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=tol.rtol, abs_tol=tol.atol) or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def _wrong_exception(case: Case, mine: Outcome) -> bool:
    """A case that must raise a named exception, and the learner raised another."""
    return bool(case.must_raise and case.raises and mine.kind == ERROR
                and not set(case.raises) & set(mine.error_types))


def outcomes_agree(mine: Outcome, theirs: Outcome, tol: Tolerance, *, both_raise_ok: bool = True) -> bool:
    """Same behaviour on one case: both return close values, or both raise.

    ``both_raise_ok=False`` when comparing with the reference on a case that
    is not meant to raise: there, "both raised" means something went wrong on
    both sides, never that the learner got it right.
    """
    if mine.kind in (TIMEOUT, NOT_RUN) or theirs.kind in (TIMEOUT, NOT_RUN):
        return False  # nothing to compare: never counts as agreeing
    if mine.kind != theirs.kind:
        return False
    if mine.kind != VALUE:  # both raised (the exception type does not matter)
        return both_raise_ok
    return _close(mine.value, theirs.value, tol)


# --------------------------------------------------------------------------
# Exercises and their known mistakes
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Mistake:
    """A known wrong answer: an implementation of it, and what to tell the learner.

    The learner's code is diagnosed with this mistake when its outcome agrees
    with ``implementation``'s on every case (see :func:`evaluate`), except the
    cases carrying one of ``ignore_tags``: there the mistake's outcome depends
    on details the learner may spell either way (e.g. masking with -inf or
    -1e9 once the softmax runs over the wrong axis). Write each implementation
    as a small, explicit function (or class, for module exercises) that makes
    exactly this mistake.
    """

    id: str
    message: str
    implementation: Callable
    ignore_tags: frozenset = frozenset()


#: Generic problems: the topic-free part of each message. An exercise adds
#: its own words for its topic in ``Exercise.notes`` (same keys).
GENERIC_NOTES = {
    "exception": "Check what this case has that the others do not (its sizes, number of "
                 "dimensions, optional arguments).",
    "nondeterministic": "Something random runs when it should not (torch.rand, or dropout "
                        "left on when the module is in eval mode).",
    "must-raise": "Silently returning a result for invalid input hides the bug from whoever "
                  "called your function: raise a ValueError that says what is wrong.",
    "not-exact-zero": "",
}


@dataclasses.dataclass
class Exercise:
    """One graded exercise: its cases, reference, known mistakes and feedback.

    Args:
        id: ``"chapter_module.name"``, e.g. ``"attention.softmax"``.
        title: shown in feedback and hints.
        target: the name the learner defines in the notebook.
        reference: the package's canonical implementation (function or class).
        make_cases: ``seed -> [Case, ...]``; vary every size a learner could
            hard-code across the cases.
        mistakes: the known wrong answers, in the order they are tried.
        hints: most general first.
        outputs: names of the returned values when the result is a tuple
            (``("output", "weights")``), used in messages; ``()`` for one value.
        call: how to run one case (default ``fn(*case.args, **case.kwargs)``);
            module exercises use :func:`.modules.build_and_call`.
        forbidden: qualified names (``"torch.softmax"``, ``"torch.Tensor.softmax"``)
            the learner's code must not call; the reference itself is always
            forbidden. ``forbidden_reason`` says why, in the exercise's words.
        notes: the exercise's words for generic problems (keys of
            :data:`GENERIC_NOTES`): e.g. what its inputs vary in.
        repeat: run each case twice to catch randomness (dropout left on).
        explain: ``(cases, outcomes, reference_outcomes) -> (mistake_id, message)``
            or ``None``: names a mistake that no single implementation makes
            (e.g. a scale large enough on some cases only); tried after
            ``mistakes``, before the generic messages.
    """

    id: str
    title: str
    target: str
    reference: Callable
    make_cases: Callable[[int], list[Case]]
    mistakes: list[Mistake] = dataclasses.field(default_factory=list)
    hints: list[str] = dataclasses.field(default_factory=list)
    points: int = 1
    chapter: str = ""
    outputs: tuple[str, ...] = ()
    call: Callable[[Callable, Case], Any] | None = None
    forbidden: tuple[str, ...] = ()
    forbidden_reason: str = ""
    notes: dict[str, str] = dataclasses.field(default_factory=dict)
    tolerance: Tolerance = dataclasses.field(default_factory=Tolerance)
    time_limit_s: float = 10.0
    repeat: bool = True
    seed: int = 0
    explain: Callable[[list[Case], list[Outcome], list[Outcome]], tuple[str, str] | None] | None = None

    @property
    def reference_name(self) -> str:
        return f"{self.reference.__module__}.{self.reference.__qualname__}"

    def run_options(self) -> dict:
        """The keyword arguments of :func:`~.core.run_cases` for this exercise (plain data)."""
        return {
            "time_limit_s": float(self.time_limit_s),
            "forbidden": [self.reference_name, *self.forbidden],
            "repeat": bool(self.repeat),
        }

    def cases(self, seed: int | None = None) -> list[Case]:
        """The cases, made in torch's fresh-session settings (a notebook's cannot change them)."""
        with standard_torch_state():
            return self.make_cases(self.seed if seed is None else seed)

    def note(self, key: str) -> str:
        return " ".join(t for t in (GENERIC_NOTES.get(key, ""), self.notes.get(key, "")) if t)

    def solution_source(self) -> str:
        return textwrap.dedent(inspect.getsource(self.reference))


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclasses.dataclass
class CheckResult:
    """The verdict on one exercise.

    ``status`` is one of ``"passed"``, ``"failed"``, ``"not attempted"`` or
    ``"error"`` (the code raised or ran past its time limit); ``mistake`` is
    the id of the diagnosed :class:`Mistake`, or a generic problem such as
    ``"wrong-shape"``, or ``None``. In a notebook it shows itself once, as a
    coloured box (see :mod:`.feedback`).
    """

    exercise_id: str
    status: str
    message: str
    mistake: str | None = None
    cases_passed: int = 0
    cases_total: int = 0
    title: str = ""
    _shown: bool = dataclasses.field(default=False, repr=False, compare=False)

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def __repr__(self) -> str:
        return f"CheckResult({self.exercise_id!r}, status={self.status!r}, mistake={self.mistake!r})"

    def feedback(self, width: int | None = None) -> str:
        """The plain-text feedback (wrapped at ``width`` characters when given)."""
        from .feedback import as_text

        return as_text(self, width)

    def _repr_html_(self) -> str:
        from .feedback import as_html

        return as_html(self)

    def _ipython_display_(self) -> None:
        """Show the feedback once: ``check`` already showed it, so its returned value shows nothing."""
        if self._shown:
            return
        from .feedback import display

        display(self)


# --------------------------------------------------------------------------
# Describing what went wrong
# --------------------------------------------------------------------------


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def describe_output(x: Any) -> str:
    if isinstance(x, Unsupported):
        return f"an object of type {x}"
    if x is None:
        return "None"
    if isinstance(x, tuple):
        return f"a tuple or list of {len(x)}: (" + ", ".join(describe_output(v) for v in x) + ")"
    if isinstance(x, torch.Tensor):
        return "a " + describe_value(x)
    name = type(x).__name__
    if isinstance(x, (int, float, bool)):
        return f"{_article(name)} {name} ({x!r})"
    return f"{_article(name)} {name}"


def _label(names: Sequence[str], i: int, n: int) -> str:
    if i < len(names):
        return f"`{names[i]}` (item {i} of the tuple)"
    return f"item {i} of the tuple"


def _structure_problem(mine: Any, ref: Any, names: Sequence[str], path: str = "the result"
                       ) -> tuple[str, str] | None:
    """The first difference in structure, shape or dtype, as (problem id, message)."""
    if isinstance(ref, tuple):
        what = f"a tuple of {len(ref)}" + (f" `({', '.join(names)})`" if len(names) == len(ref) else "")
        if not isinstance(mine, tuple):
            if mine is None:
                return "returned-none", (
                    f"{path} is None: the function must `return` {what} "
                    "(did you forget the `return` statement?)."
                )
            return "wrong-type", f"{path} should be {what}; got {describe_output(mine)}."
        if len(mine) != len(ref):
            return "wrong-type", f"{path} should be {what}; got a tuple of {len(mine)}."
        for i, (m, r) in enumerate(zip(mine, ref, strict=True)):
            problem = _structure_problem(m, r, (), _label(names, i, len(ref)))
            if problem:
                return problem
        return None
    if isinstance(ref, torch.Tensor):
        if mine is None:
            return "returned-none", (
                f"{path} is None: the function must `return` a tensor "
                "(did you forget the `return` statement?)."
            )
        if not isinstance(mine, torch.Tensor):
            return "wrong-type", f"{path} should be a torch.Tensor; got {describe_output(mine)}."
        if mine.shape != ref.shape:
            return "wrong-shape", (
                f"{path} has shape {tuple(mine.shape)}, but it should have shape {tuple(ref.shape)}."
            )
        if mine.dtype != ref.dtype:
            return "wrong-dtype", (
                f"{path} has dtype {mine.dtype}, but it should have dtype {ref.dtype} "
                "(the dtype of the input tensors; float32, torch's default, for a table "
                "built from sizes alone)."
            )
        if ref.is_floating_point():
            bad = ~torch.isfinite(mine) & torch.isfinite(ref)
            if bad.any():
                kind = "NaN" if torch.isnan(mine[bad]).any() else "inf"
                return "not-finite", (
                    f"{path} contains {kind} ({int(bad.sum())} of {mine.numel()} entries) where a "
                    "finite number was expected: look for exp() overflowing, 0/0, or -inf - (-inf)."
                )
        return None
    if type(mine) is not type(ref):
        # The type only: a message never shows the expected value.
        want = type(ref).__name__
        return "wrong-type", f"{path} should be {_article(want)} {want}; got {describe_output(mine)}."
    return None


def _swapped_order(mine: Any, ref: Any, tol: Tolerance) -> tuple[int, ...] | None:
    """The order the learner returned the reference's items in, when it is another order."""
    if not (isinstance(mine, tuple) and isinstance(ref, tuple) and len(mine) == len(ref) > 1):
        return None
    import itertools

    for order in itertools.permutations(range(len(ref))):
        if list(order) != list(range(len(ref))) and all(
            _close(mine[i], ref[j], tol) for i, j in enumerate(order)
        ):
            return order
    return None


def _max_error(mine: Any, ref: Any) -> float | None:
    if isinstance(mine, torch.Tensor) and isinstance(ref, torch.Tensor):
        if mine.shape == ref.shape and mine.is_floating_point() and ref.is_floating_point():
            return float((mine.double() - ref.double()).abs().nan_to_num(math.inf).max())
        return None
    if isinstance(mine, tuple) and isinstance(ref, tuple):
        errs = [_max_error(a, b) for a, b in zip(mine, ref, strict=False)]
        errs = [e for e in errs if e is not None]
        return max(errs) if errs else None
    return None


def _not_exact_zero(mine: Any, ref: Any, tol: Tolerance) -> float | None:
    """When the only differences are small values where the reference is exactly 0: the largest."""
    if isinstance(mine, tuple) and isinstance(ref, tuple) and len(mine) == len(ref):
        found = None
        for m, r in zip(mine, ref, strict=True):
            if _close(m, r, tol):
                continue
            v = _not_exact_zero(m, r, tol)
            if v is None:
                return None
            found = max(found or 0.0, v)
        return found
    if not (isinstance(mine, torch.Tensor) and isinstance(ref, torch.Tensor)):
        return None
    if mine.shape != ref.shape or not (mine.is_floating_point() and ref.is_floating_point()):
        return None
    m, r = mine.double(), ref.double()
    zero = r == 0
    if not zero.any():
        return None
    residue = m[zero].abs()
    if not (residue > tol.zero_atol).any() or residue.max() > 1e-3:
        return None
    # Elsewhere the values must be right, up to how much the residue moved the rest.
    if not torch.allclose(m[~zero], r[~zero], rtol=tol.rtol, atol=max(tol.atol, 10 * float(residue.max()))):
        return None
    return float(residue.max())


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --------------------------------------------------------------------------
# The verdict
# --------------------------------------------------------------------------


def _forbidden_message(ex: Exercise, names: Sequence[str]) -> tuple[str, str]:
    if any(n.split(" ")[0] == ex.reference_name for n in names):
        return "uses-package", (
            f"`{ex.target}` runs the course package's own `{ex.reference_name}`, not your "
            "implementation: write it yourself (the check and the grader both give this 0 points)."
        )
    shown = ", ".join(f"`{n}`" for n in names[:3])
    reason = f" {ex.forbidden_reason}" if ex.forbidden_reason else ""
    return "forbidden-call", (
        f"Your code calls {shown}, which this exercise asks you not to use.{reason} "
        "(The check and the grader both give this 0 points, however the call is spelled.)"
    )


def _state_note(outcomes: Sequence[Outcome]) -> str:
    notes = next((o.state for o in outcomes if o.state), ())
    if not notes:
        return ""
    return (f" Note: your session has {', '.join(notes)}; the check's inputs are built in "
            "torch's defaults, and code that relies on the changed setting may fail here: "
            "restart the kernel or undo the setting.")


def evaluate(exercise: Exercise, cases: Sequence[Case], outcomes: Sequence[Outcome]) -> CheckResult:
    """Judge the learner's ``outcomes`` on ``cases`` against the reference.

    Runs in the judging process only (the reference and the known mistakes run
    here, in torch's fresh-session settings, never in the learner's code
    path). Robust to anything in ``outcomes``: malformed data gives an
    ``"error"`` result, not an exception.
    """
    ex = exercise
    total = len(cases)

    def result(status: str, message: str, mistake: str | None = None, n_ok: int = 0) -> CheckResult:
        return CheckResult(ex.id, status, message, mistake, n_ok, total, ex.title)

    try:
        outcomes = list(outcomes)
        if len(outcomes) != total or not all(isinstance(o, Outcome) for o in outcomes):
            return result(ERRORED, "The check could not read your function's results.", "unreadable")
    except Exception:  # noqa: BLE001
        return result(ERRORED, "The check could not read your function's results.", "unreadable")

    if outcomes and outcomes[0].kind == NOT_IMPLEMENTED:
        return result(
            NOT_ATTEMPTED,
            f"Replace `raise NotImplementedError` in `{ex.target}` with your code, "
            "run that cell, then run this check again.",
            "not-attempted",
        )

    replaced = [s for o in outcomes[:1] for s in o.state if s.endswith("replaced by a notebook function")]
    if replaced:
        return result(
            ERRORED,
            f"Your notebook replaced {', '.join(s.split(' ')[0] for s in replaced)} with a function of "
            "its own, so the check cannot judge your code against torch: remove that assignment, "
            "restart the kernel (Kernel → Restart) and run the notebook again.",
            "torch-modified",
        )

    used = [name for o in outcomes for name in o.forbidden]
    if used:
        mistake, message = _forbidden_message(ex, list(dict.fromkeys(used)))
        return result(FAILED, message, mistake)

    for case, o in zip(cases, outcomes, strict=True):
        if o.mutated:
            return result(
                FAILED,
                f"Your function changed its input {', '.join(o.mutated)} in place on case "
                f"'{case.describe()}'. Compute new tensors instead (e.g. `x = x - m`, not "
                "`x -= m` or `x.sub_(m)`): callers still need their inputs.",
                "modifies-input",
            )

    with standard_torch_state():
        ref = run_cases(ex.reference, cases, call=ex.call, time_limit_s=60.0, repeat=False)
    agree = [
        outcomes_agree(m, r, ex.tolerance, both_raise_ok=case.must_raise) and not _wrong_exception(case, m)
        for case, m, r in zip(cases, outcomes, ref, strict=True)
    ]
    n_ok = sum(agree)
    if all(agree):
        return result(PASSED, f"All {total} test cases match the reference. Well done!", None, n_ok)

    # A known mistake explains the outcomes on every case?
    for mistake in ex.mistakes:
        with standard_torch_state():
            theirs = run_cases(mistake.implementation, cases, call=ex.call, time_limit_s=60.0, repeat=False)
        if all(
            outcomes_agree(m, t, ex.tolerance)
            for case, m, t in zip(cases, outcomes, theirs, strict=True)
            if not (case.tags & mistake.ignore_tags)
        ):
            return result(FAILED, mistake.message, mistake.id, n_ok)
    if ex.explain is not None:
        named = ex.explain(cases, outcomes, ref)
        if named is not None:
            return result(FAILED, named[1], named[0], n_ok)

    if any(o.varies for o, ok in zip(outcomes, agree, strict=True) if not ok):
        case = next(c for c, o, ok in zip(cases, outcomes, agree, strict=True) if o.varies and not ok)
        return result(
            FAILED,
            f"Your function returned different results for the same input on case "
            f"'{case.describe()}' (the check runs every case twice). {ex.note('nondeterministic')}",
            "nondeterministic",
            n_ok,
        )

    # Otherwise describe the first case that goes wrong.
    state = _state_note(outcomes)
    for case, mine, r, ok in zip(cases, outcomes, ref, agree, strict=True):
        if ok:
            continue
        where = f"On case '{case.describe()}'"
        if mine.kind == TIMEOUT:
            message = (
                f"{where} your function was still running when the time limit "
                f"({ex.time_limit_s:g} s of CPU time for all cases) ran out, so it was stopped. "
                "Look for a loop that never ends (a `while` whose condition never "
                "changes), or a loop over every element where a tensor operation would do."
            )
            if mine.abandoned:
                message += (
                    " It did not stop when asked (it catches every exception, with a bare "
                    "`except:` or `except BaseException:`, or it was inside one very long "
                    "operation), so it may still be running in the background and slowing your "
                    "notebook down: restart the kernel (Kernel → Restart), and catch only the "
                    "exceptions you expect (`except ValueError:`)."
                )
            return result(ERRORED, message, "timeout", n_ok)
        if _wrong_exception(case, mine):
            at = f" (at {mine.where})" if mine.where else ""
            wanted = " or ".join(case.raises)
            return result(
                FAILED,
                f"{where} your function raised {mine.error.rstrip('.')}{at}. This input is invalid, "
                f"so raising is right, but the statement asks for {_article(wanted)} {wanted} with a message "
                "that says what is wrong: an error raised by accident further down (a reshape or "
                "a broadcast that fails) tells the caller nothing about why. Check the input "
                f"first and raise it yourself. {ex.notes.get('must-raise', '')}".rstrip(),
                "wrong-exception",
                n_ok,
            )
        if mine.kind in (ERROR, NOT_IMPLEMENTED):
            at = f" (at {mine.where})" if mine.where else ""
            hint = ""
            if n_ok:
                hint = f" It worked on {_plural(n_ok, 'other case')}. {ex.note('exception')}"
            return result(ERRORED, f"{where} your function raised {mine.error.rstrip('.')}{at}.{hint}{state}",
                          "exception", n_ok)
        if mine.kind == NOT_RUN:
            continue
        if case.must_raise and mine.kind == VALUE:
            return result(
                FAILED,
                f"{where} your function returned {describe_output(mine.value)}, but this input is "
                f"invalid and it should raise an error. {ex.note('must-raise')}",
                "should-raise",
                n_ok,
            )
        if r.kind != VALUE:  # the reference itself failed: a bug in the exercise
            return result(
                ERRORED, f"{where} the reference could not run ({r.error}). Please report this.", "reference"
            )
        order = _swapped_order(mine.value, r.value, ex.tolerance)
        if order is not None and len(ex.outputs) == len(order):
            got = ", ".join(ex.outputs[j] for j in order)
            return result(
                FAILED,
                f"Your values are right but in the wrong order: you return ({got}); return "
                f"({', '.join(ex.outputs)}).",
                "wrong-order",
                n_ok,
            )
        problem = _structure_problem(mine.value, r.value, ex.outputs)
        if problem:
            return result(FAILED, f"{where}: {problem[1]}{state}", problem[0], n_ok)
        residue = _not_exact_zero(mine.value, r.value, ex.tolerance)
        if residue is not None:
            return result(
                FAILED,
                f"{where} your values are right except where they should be exactly 0: yours are "
                f"small but not 0 (up to {residue:.2g}). {ex.note('not-exact-zero')}".rstrip(),
                "not-exact-zero",
                n_ok,
            )
        err = _max_error(mine.value, r.value)
        detail = f" (largest difference {err:.3g})" if err is not None else ""
        return result(
            FAILED,
            f"{where} your result has the right shape but the wrong values{detail}. "
            f"It matches the reference on {n_ok} of {total} cases. Try `hint({ex.id!r})`.{state}",
            "wrong-values",
            n_ok,
        )
    return result(ERRORED, "The check could not run your function.", "unreadable", n_ok)
