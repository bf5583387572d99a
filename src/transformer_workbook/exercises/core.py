"""The exercise-check machinery, in three separate pieces.

1. **Cases** (:meth:`Exercise.make_cases`): seeded inputs the learner's code is
   run on. Pure data: tensors, numbers, tuples; no code.
2. **Running** (:func:`run_cases`): calls the learner's function on the cases,
   in the learner's process, with a time limit, and records what happened
   (:class:`Outcome`: a value, an exception, a time-out, an in-place change of
   the inputs). It never looks at the reference.
3. **Judging** (:func:`evaluate`): runs the reference on the same cases,
   compares, and names the learner's mistake when their outcomes agree with
   one of the exercise's known wrong answers (:class:`Mistake`).

In a notebook, :func:`check` does all three in the learner's kernel, for
instant feedback. The grader does only step 2 in the learner's kernel, ships
the outcomes back as plain tensors and strings (:func:`outcomes_to_payload`),
and judges them in its own process, where nothing the learner redefined can
reach the reference or the comparison.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import signal
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

# --------------------------------------------------------------------------
# Cases and outcomes
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    """One input to an exercise: ``fn(*args, **kwargs)``.

    ``name`` is shown to the learner ("3-D batch with a padding mask"), so it
    describes the input's shape and purpose, never the expected answer.
    ``tags`` let a mistake say on which kinds of case it shows.
    """

    name: str
    args: tuple = ()
    kwargs: dict = dataclasses.field(default_factory=dict)
    tags: frozenset = frozenset()

    def describe(self) -> str:
        parts = [_describe_value(a) for a in self.args]
        parts += [f"{k}={_describe_value(v)}" for k, v in self.kwargs.items()]
        return f"{self.name} ({', '.join(parts)})"


def randn(g: torch.Generator, *shape: int, scale: float = 1.0, dtype=torch.float32) -> torch.Tensor:
    """Seeded N(0, scale^2) case data, drawn in float64 then cast (same values for any dtype)."""
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def _describe_value(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        dtype = str(x.dtype).replace("torch.", "")
        return f"{dtype} tensor of shape {tuple(x.shape)}"
    if isinstance(x, (tuple, list)):
        return "(" + ", ".join(_describe_value(v) for v in x) + ")"
    return repr(x)


#: Outcome kinds.
VALUE, ERROR, TIMEOUT, NOT_IMPLEMENTED, NOT_RUN = (
    "value",
    "error",
    "timeout",
    "not_implemented",
    "not_run",
)


@dataclasses.dataclass
class Outcome:
    """What happened when a function ran on one case (plain data only)."""

    kind: str
    value: Any = None  # sanitized output: tensors, numbers, str, None, tuples
    error: str = ""  # "ValueError: ..." for ERROR
    where: str = ""  # last line of the learner's traceback, for ERROR
    mutated: tuple = ()  # names of the inputs the call changed in place
    seconds: float = 0.0


class Unsupported(str):
    """Marks an output of a type the checks do not handle (its type name)."""


class CheckTimeout(BaseException):
    """Raised inside the learner's code when it runs past its time limit.

    A ``BaseException`` so that a learner's ``except Exception`` inside an
    endless loop cannot swallow it.
    """


def _sanitize(x: Any, depth: int = 0) -> Any:
    """Detach the learner's output from their objects: plain tensors and values.

    The result holds only tensors, numbers, strings, None, tuples and
    :class:`Unsupported` markers, so it can be shipped to the grader and
    loaded there with ``torch.load(weights_only=True)``.
    """
    if depth > 4:
        return Unsupported("deeply nested structure")
    if isinstance(x, torch.Tensor):
        t = x.detach().as_subclass(torch.Tensor)
        if t.layout != torch.strided:
            t = t.to_dense()
        return t.cpu().clone()
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, (tuple, list)) and len(x) <= 16:
        return tuple(_sanitize(v, depth + 1) for v in x)
    return Unsupported(f"{type(x).__module__}.{type(x).__qualname__}")


def _snapshot(args: tuple, kwargs: dict) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    named = [(f"argument {i + 1}", a) for i, a in enumerate(args)]
    named += [(f"`{k}`", v) for k, v in kwargs.items()]
    return [(n, a, a.detach().clone()) for n, a in named if isinstance(a, torch.Tensor)]


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`CheckTimeout` in the running code after ``seconds``.

    In the main thread on Unix this uses a real-time interval timer (SIGALRM),
    which interrupts any Python loop; elsewhere (Windows, a worker thread) a
    trace function checks the clock on every line of Python code.
    """
    if seconds is None or seconds <= 0 or not math.isfinite(seconds):
        yield
        return
    use_signal = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if use_signal:

        def on_alarm(signum, frame):
            raise CheckTimeout()

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    else:
        deadline = time.monotonic() + seconds
        previous_trace = sys.gettrace()

        def tracer(frame, event, arg):
            if time.monotonic() > deadline:
                raise CheckTimeout()
            return tracer

        sys.settrace(tracer)
        try:
            yield
        finally:
            sys.settrace(previous_trace)


def _learner_frame(tb) -> str:
    """The innermost traceback line outside this package (the learner's code)."""
    here = __name__.rsplit(".", 2)[0].replace(".", "/")
    frames = [f for f in traceback.extract_tb(tb) if here not in f.filename.replace("\\", "/")]
    if not frames:
        return ""
    f = frames[-1]
    line = (f.line or "").strip()
    return f"line {f.lineno}: {line}" if line else f"line {f.lineno}"


def run_cases(
    fn: Callable,
    cases: Sequence[Case],
    call: Callable[[Callable, Case], Any] | None = None,
    time_limit_s: float = 10.0,
) -> list[Outcome]:
    """Run ``fn`` on every case in this process and record what happened.

    ``call(fn, case)`` says how to run one case (default:
    ``fn(*case.args, **case.kwargs)``); class exercises build an instance
    there. ``time_limit_s`` bounds the whole run: a case that times out ends
    it, and the rest are marked not run. Each case gets fresh copies of its
    tensors, so a learner's in-place change is seen and does not leak into the
    next case. Never raises for anything the learner's code does.
    """
    call = call or (lambda f, case: f(*case.args, **case.kwargs))
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + time_limit_s
    timed_out = False
    for case in cases:
        if timed_out:
            outcomes.append(Outcome(NOT_RUN))
            continue
        args = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in case.args)
        kwargs = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.kwargs.items()}
        fresh = dataclasses.replace(case, args=args, kwargs=kwargs)
        before = _snapshot(args, kwargs)
        start = time.monotonic()
        remaining = max(deadline - start, 0.05)
        try:
            with time_limit(remaining):
                result = call(fn, fresh)
            outcome = Outcome(VALUE, value=_sanitize(result))
        except CheckTimeout:
            timed_out = True
            outcome = Outcome(TIMEOUT)
        except NotImplementedError as exc:
            outcome = Outcome(NOT_IMPLEMENTED, error=f"NotImplementedError: {exc}")
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - the learner's code may raise anything
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            outcome = Outcome(
                ERROR,
                error=f"{type(exc).__name__}: {msg}"[:300],
                where=_learner_frame(exc.__traceback__),
            )
        outcome.seconds = time.monotonic() - start
        outcome.mutated = tuple(
            name
            for name, now, then in before
            if now.shape != then.shape or not torch.equal(now.detach(), then)
        )
        outcomes.append(outcome)
    return outcomes


# --------------------------------------------------------------------------
# Comparing outcomes
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Tolerance:
    rtol: float = 1e-4
    atol: float = 1e-5


def _close(a: Any, b: Any, tol: Tolerance) -> bool:
    """Do two sanitized values agree (same structure, shapes, dtypes, values)?"""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.dtype == torch.bool or not (a.is_floating_point() or a.is_complex()):
            return torch.equal(a, b)
        return torch.allclose(a.double(), b.double(), rtol=tol.rtol, atol=tol.atol, equal_nan=True)
    if isinstance(a, tuple) or isinstance(b, tuple):
        return (
            isinstance(a, tuple)
            and isinstance(b, tuple)
            and len(a) == len(b)
            and all(_close(x, y, tol) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=tol.rtol, abs_tol=tol.atol) or (
            math.isnan(a) and math.isnan(b)
        )
    return type(a) is type(b) and a == b


def outcomes_agree(mine: Outcome, theirs: Outcome, tol: Tolerance) -> bool:
    """Same behaviour on one case: both raise, or both return close values."""
    if mine.kind in (TIMEOUT, NOT_RUN) or theirs.kind in (TIMEOUT, NOT_RUN):
        return False  # nothing to compare: never counts as agreeing
    if mine.kind != theirs.kind:
        return False
    if mine.kind != VALUE:  # both raised (the exception type does not matter)
        return True
    return _close(mine.value, theirs.value, tol)


# --------------------------------------------------------------------------
# Exercises, mistakes, results
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Mistake:
    """A known wrong answer: an implementation of it, and what to tell the learner.

    The learner's code is diagnosed with this mistake when its outcome agrees
    with ``implementation``'s on every case (see :func:`evaluate`), except the
    cases carrying one of ``ignore_tags``: there the mistake's outcome depends
    on details the learner may spell either way (e.g. masking with -inf or
    -1e9 once the softmax runs over the wrong axis).
    """

    id: str
    message: str
    implementation: Callable
    ignore_tags: frozenset = frozenset()


@dataclasses.dataclass
class Exercise:
    """One graded exercise: its cases, reference, known mistakes and feedback."""

    id: str
    title: str
    target: str  # the name the learner defines in the notebook
    reference: Callable
    make_cases: Callable[[int], list[Case]]
    mistakes: list[Mistake] = dataclasses.field(default_factory=list)
    hints: list[str] = dataclasses.field(default_factory=list)
    points: int = 1
    chapter: str = ""
    call: Callable[[Callable, Case], Any] | None = None
    tolerance: Tolerance = dataclasses.field(default_factory=Tolerance)
    time_limit_s: float = 10.0
    seed: int = 0

    def solution_source(self) -> str:
        return textwrap.dedent(inspect.getsource(self.reference))


@dataclasses.dataclass
class CheckResult:
    """The verdict on one exercise.

    ``status`` is one of ``"passed"``, ``"failed"``, ``"not attempted"`` or
    ``"error"`` (the code raised or ran past its time limit); ``mistake`` is
    the id of the diagnosed :class:`Mistake`, or a generic problem such as
    ``"wrong-shape"``, or ``None``.
    """

    exercise_id: str
    status: str
    message: str
    mistake: str | None = None
    cases_passed: int = 0
    cases_total: int = 0

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __repr__(self) -> str:
        return f"CheckResult({self.exercise_id!r}, status={self.status!r}, mistake={self.mistake!r})"

    def feedback(self) -> str:
        icon = {"passed": "✅", "failed": "❌", "not attempted": "⏳", "error": "💥"}
        return f"{icon.get(self.status, '')} {self.exercise_id}: {self.status}. {self.message}"


PASSED, FAILED, NOT_ATTEMPTED, ERRORED = "passed", "failed", "not attempted", "error"


def _describe_output(x: Any) -> str:
    if isinstance(x, Unsupported):
        return f"an object of type {x}"
    if x is None:
        return "None"
    if isinstance(x, tuple):
        return f"a tuple of {len(x)}: (" + ", ".join(_describe_output(v) for v in x) + ")"
    if isinstance(x, torch.Tensor):
        return _describe_value(x)
    return f"a {type(x).__name__}"


def _structure_problem(mine: Any, ref: Any, path: str = "the result") -> tuple[str, str] | None:
    """The first difference in structure, shape or dtype, as (problem id, message)."""
    if isinstance(ref, tuple):
        if not isinstance(mine, tuple):
            if mine is None:
                return "returned-none", (
                    f"{path} is None: the function must `return` a tuple of {len(ref)} "
                    "(did you forget the `return` statement?)."
                )
            return "wrong-type", (
                f"{path} should be a tuple of {len(ref)} values, "
                f"{_describe_output(ref)}; got {_describe_output(mine)}."
            )
        if len(mine) != len(ref):
            return "wrong-type", f"{path} should be a tuple of {len(ref)} values; got {len(mine)}."
        names = ["output", "weights", "third value", "fourth value"]
        for i, (m, r) in enumerate(zip(mine, ref, strict=True)):
            label = f"the {names[i] if i < len(names) else f'value {i + 1}'} (item {i} of the tuple)"
            problem = _structure_problem(m, r, label)
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
            return "wrong-type", f"{path} should be a torch.Tensor; got {_describe_output(mine)}."
        if mine.shape != ref.shape:
            return "wrong-shape", (
                f"{path} has shape {tuple(mine.shape)}, but it should have shape {tuple(ref.shape)}."
            )
        if mine.dtype != ref.dtype:
            return "wrong-dtype", (
                f"{path} has dtype {mine.dtype}, but it should have dtype {ref.dtype} "
                "(keep the dtype of the inputs)."
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
        return "wrong-type", f"{path} should be {_describe_output(ref)}; got {_describe_output(mine)}."
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


def evaluate(
    exercise: Exercise,
    cases: Sequence[Case],
    outcomes: Sequence[Outcome],
) -> CheckResult:
    """Judge the learner's ``outcomes`` on ``cases`` against the reference.

    Runs in the judging process only (the reference and the known mistakes run
    here, never in the learner's code path). Robust to anything in
    ``outcomes``: malformed data gives an ``"error"`` result, not an exception.
    """
    ex = exercise
    total = len(cases)

    def result(status: str, message: str, mistake: str | None = None, n_ok: int = 0) -> CheckResult:
        return CheckResult(ex.id, status, message, mistake, n_ok, total)

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

    for case, o in zip(cases, outcomes, strict=True):
        if o.mutated:
            return result(
                FAILED,
                f"Your function changed its input {', '.join(o.mutated)} in place on case "
                f"'{case.describe()}'. Compute new tensors instead (e.g. `x = x - m`, not "
                "`x -= m` or `x.sub_(m)`): callers still need their inputs.",
                "modifies-input",
            )

    ref = run_cases(ex.reference, cases, call=ex.call, time_limit_s=60.0)
    agree = [outcomes_agree(m, r, ex.tolerance) for m, r in zip(outcomes, ref, strict=True)]
    n_ok = sum(agree)
    if all(agree):
        return result(PASSED, f"All {total} test cases match the reference. Well done!", None, n_ok)

    # A known mistake explains the outcomes on every case?
    for mistake in ex.mistakes:
        theirs = run_cases(mistake.implementation, cases, call=ex.call, time_limit_s=60.0)
        if all(
            outcomes_agree(m, t, ex.tolerance)
            for case, m, t in zip(cases, outcomes, theirs, strict=True)
            if not (case.tags & mistake.ignore_tags)
        ):
            return result(FAILED, mistake.message, mistake.id, n_ok)

    # Otherwise describe the first case that goes wrong.
    for case, mine, r, ok in zip(cases, outcomes, ref, agree, strict=True):
        if ok:
            continue
        where = f"On case '{case.describe()}'"
        if mine.kind == TIMEOUT:
            return result(
                ERRORED,
                f"{where} your function was still running when the time limit "
                f"({ex.time_limit_s:g} s for all cases) ran out, so it was stopped. "
                "Look for a loop that never ends (a `while` whose condition never "
                "changes), or a loop over every element where a tensor operation would do.",
                "timeout",
                n_ok,
            )
        if mine.kind in (ERROR, NOT_IMPLEMENTED):
            at = f" (at {mine.where})" if mine.where else ""
            hint = ""
            if n_ok:
                hint = (
                    f" It worked on {n_ok} other case(s): check the inputs this case has that "
                    "those do not (number of dimensions, a mask, different lengths)."
                )
            return result(ERRORED, f"{where} your function raised {mine.error}{at}.{hint}", "exception", n_ok)
        if mine.kind == NOT_RUN:
            continue
        if r.kind != VALUE:  # the reference itself failed: a bug in the exercise
            return result(
                ERRORED, f"{where} the reference could not run ({r.error}). Please report this.", "reference"
            )
        problem = _structure_problem(mine.value, r.value)
        if problem:
            return result(FAILED, f"{where}: {problem[1]}", problem[0], n_ok)
        err = _max_error(mine.value, r.value)
        detail = f" (largest difference {err:.3g})" if err is not None else ""
        return result(
            FAILED,
            f"{where} your result has the right shape but the wrong values{detail}. "
            f"It matches the reference on {n_ok} of {total} cases. Try `hint({ex.id!r})`.",
            "wrong-values",
            n_ok,
        )
    return result(ERRORED, "The check could not run your function.", "unreadable", n_ok)


# --------------------------------------------------------------------------
# Registry and the notebook-facing API
# --------------------------------------------------------------------------

REGISTRY: dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    if exercise.id in REGISTRY:
        raise ValueError(f"exercise {exercise.id!r} registered twice")
    REGISTRY[exercise.id] = exercise
    return exercise


def get(exercise_id: str) -> Exercise:
    from . import _load_all

    _load_all()
    try:
        return REGISTRY[exercise_id]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise KeyError(f"no exercise called {exercise_id!r}; the exercises are: {known}") from None


def check(exercise_id: str, fn: Any, *, quiet: bool = False) -> CheckResult:
    """Check the learner's ``fn`` for ``exercise_id`` and print the feedback.

    Returns a :class:`CheckResult` (``.passed``, ``.status``, ``.message``).
    Never raises because of the learner's code.
    """
    ex = get(exercise_id)
    if fn is None or not callable(fn):
        res = CheckResult(
            ex.id,
            FAILED,
            f"Pass your function itself, e.g. `check({ex.id!r}, {ex.target})`: "
            f"got {_describe_output(_sanitize(fn))}, which cannot be called.",
            "not-callable",
        )
    else:
        cases = ex.make_cases(ex.seed)
        outcomes = run_cases(fn, cases, call=ex.call, time_limit_s=ex.time_limit_s)
        res = evaluate(ex, cases, outcomes)
    if not quiet:
        print(res.feedback())
    return res


def hint(exercise_id: str) -> None:
    """Print the hints for an exercise, most general first."""
    ex = get(exercise_id)
    print(f"Hints for {ex.id} ({ex.title}):")
    for i, h in enumerate(ex.hints, 1):
        print(f"  {i}. {h}")


def solution(exercise_id: str) -> None:
    """Print the reference solution's code."""
    ex = get(exercise_id)
    print(f"Reference solution for {ex.id}:\n")
    print(ex.solution_source())


# --------------------------------------------------------------------------
# Shipping outcomes between processes (for the grader)
# --------------------------------------------------------------------------


def _encode(x: Any) -> Any:
    if isinstance(x, Unsupported):
        return {"unsupported": str(x)}
    if isinstance(x, tuple):
        return {"tuple": [_encode(v) for v in x]}
    return x


def _decode(x: Any) -> Any:
    if isinstance(x, dict):
        if set(x) == {"unsupported"}:
            return Unsupported(str(x["unsupported"]))
        if set(x) == {"tuple"} and isinstance(x["tuple"], list):
            return tuple(_decode(v) for v in x["tuple"])
        return Unsupported("dict")
    if x is None or isinstance(x, (torch.Tensor, bool, int, float, str)):
        return x
    return Unsupported(type(x).__name__)


def outcomes_to_payload(outcomes: Sequence[Outcome]) -> list[dict]:
    """Plain data (loadable with ``torch.load(weights_only=True)``)."""
    return [
        {
            "kind": o.kind,
            "value": _encode(o.value),
            "error": o.error,
            "where": o.where,
            "mutated": list(o.mutated),
            "seconds": float(o.seconds),
        }
        for o in outcomes
    ]


def outcomes_from_payload(payload: Any) -> list[Outcome]:
    """Rebuild outcomes from untrusted data; raises ValueError if malformed."""
    if not isinstance(payload, list):
        raise ValueError("payload is not a list")
    out = []
    kinds = {VALUE, ERROR, TIMEOUT, NOT_IMPLEMENTED, NOT_RUN}
    for item in payload:
        if not isinstance(item, dict) or item.get("kind") not in kinds:
            raise ValueError("malformed outcome")
        out.append(
            Outcome(
                kind=item["kind"],
                value=_decode(item.get("value")),
                error=str(item.get("error", ""))[:300],
                where=str(item.get("where", ""))[:300],
                mutated=tuple(str(m) for m in item.get("mutated", []) if isinstance(m, str)),
                seconds=float(seconds) if isinstance(seconds := item.get("seconds"), (int, float)) else 0.0,
            )
        )
    return out
