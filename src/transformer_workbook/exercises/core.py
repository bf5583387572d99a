"""Running the learner's code on an exercise's cases: the part that runs in the learner's process.

The check machinery has three separate pieces:

1. **Cases** (:class:`Case`, made by each exercise's ``make_cases``): seeded
   inputs, pure data (tensors, numbers, tuples; no code).
2. **Running** (:func:`run_cases`, this module): calls the learner's function
   on the cases and records what happened (:class:`Outcome`): a value, an
   exception, a time-out, an in-place change of the inputs, a call to
   something the exercise forbids, different results for the same input. It
   never looks at the reference.
3. **Judging** (:mod:`.judging`): runs the reference and the known mistakes,
   compares, and names the learner's mistake.

In a notebook, ``check`` does all three in the learner's kernel. The grader
does step 2 in the learner's kernel, ships the outcomes back as plain tensors
and strings (:func:`outcomes_to_payload`), and judges them in its own process.
Both call this very module, so both see the same outcomes.

This file imports nothing from the rest of the package (only the standard
library and torch): the grader loads a fresh copy of it from its path inside
the learner's kernel, where the imported package may have been tampered with.

How the time limit holds whatever the learner's code catches: the learner's
code runs in a worker thread while this thread watches the process's CPU time
(not the wall clock, so a busy machine does not change the verdict). Past the
limit, the watcher raises :class:`CheckTimeout` in the worker, again and
again; a trace function raises it once more whenever the worker is inside a
handler that caught it, so a bare ``except:`` in a loop does not keep it
alive. A function that still survives (it catches everything, everywhere) is
left behind and reported, and the check returns all the same; so does a
Jupyter interrupt, which reaches this thread, not the learner's loop.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
import inspect
import math
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import torch

# --------------------------------------------------------------------------
# Cases and outcomes
# --------------------------------------------------------------------------

#: A case carrying this tag is invalid input: the function must raise on it.
RAISES = "raises"


@dataclasses.dataclass
class Case:
    """One input to an exercise: ``fn(*args, **kwargs)``.

    ``name`` is shown to the learner ("3-D batch with a padding mask"), so it
    describes the input's shape and purpose, never the expected answer.
    ``tags`` let a mistake say on which kinds of case it shows; the tag
    :data:`RAISES` marks an input the function must reject with an exception.
    ``raises`` names the exception classes the statement asks for there
    (``("ValueError",)``; a subclass counts); empty: any exception will do.
    """

    name: str
    args: tuple = ()
    kwargs: dict = dataclasses.field(default_factory=dict)
    tags: frozenset = frozenset()
    raises: tuple = ()

    def describe(self) -> str:
        parts = [describe_value(a) for a in self.args]
        parts += [f"{k}={describe_value(v)}" for k, v in self.kwargs.items()]
        return f"{self.name} ({', '.join(parts)})"

    @property
    def must_raise(self) -> bool:
        return RAISES in self.tags


def randn(g: torch.Generator, *shape: int, scale: float = 1.0, dtype=torch.float32) -> torch.Tensor:
    """Seeded N(0, scale^2) case data, drawn in float64 then cast (same values for any dtype)."""
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def describe_value(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        dtype = str(x.dtype).replace("torch.", "")
        return f"{dtype} tensor of shape {tuple(x.shape)}"
    if isinstance(x, (tuple, list)):
        return "(" + ", ".join(describe_value(v) for v in x) + ")"
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
    seconds: float = 0.0  # CPU seconds
    forbidden: tuple = ()  # forbidden callables the call reached ("torch.softmax", ...)
    varies: bool = False  # a second call on the same input gave a different result
    state: tuple = ()  # the learner's global torch state, where it differs from torch's defaults
    abandoned: bool = False  # TIMEOUT only: the code caught every attempt to stop it
    error_types: tuple = ()  # ERROR only: the exception's class and its bases, by name


class Unsupported(str):
    """Marks an output of a type the checks do not handle (its type name)."""


class CheckTimeout(BaseException):
    """Raised inside the learner's code when it runs past its time limit.

    A ``BaseException`` so that ``except Exception`` cannot swallow it; see
    the module's docstring for bare ``except:``.
    """


def safe_str(x: Any, limit: int = 300) -> str:
    """``str(x)`` for any object, even one whose ``__str__`` raises or returns a non-string."""
    try:
        text = str(x)
        if not isinstance(text, str):
            raise TypeError
    except BaseException:  # noqa: BLE001 - a learner's exception class may do anything
        text = f"<{type(x).__name__} whose str() is not text>"  # no address: messages stay the same
    return shorten(text, limit)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a word boundary, never mid-bracket.

    A cut message ends with " …" after a complete word, and before any
    bracket or quote it would leave open (so "tensor([[1., 2." is not shown).
    """
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - 2)]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    opening = {")": "(", "]": "[", "}": "{"}
    stack: list[tuple[str, int]] = []
    for i, ch in enumerate(cut):
        if ch in "([{":
            stack.append((ch, i))
        elif ch in opening and stack and stack[-1][0] == opening[ch]:
            stack.pop()
        elif ch in "'\"`":
            if stack and stack[-1][0] == ch:
                stack.pop()
            else:
                stack.append((ch, i))
    if stack:
        cut = cut[: stack[0][1]]
    return cut.rstrip(" ,:;(=") + " …"


def sanitize(x: Any, depth: int = 0) -> Any:
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
    if x is None:
        return None
    for base in (bool, int, float, str):  # subclasses (numpy.float64, ...) become the base type
        if isinstance(x, base):
            return base(x)
    if isinstance(x, (tuple, list)) and len(x) <= 16:
        return tuple(sanitize(v, depth + 1) for v in x)
    return Unsupported(f"{type(x).__module__}.{type(x).__qualname__}")


def same_values(a: Any, b: Any) -> bool:
    """Exactly the same sanitized values (NaN equal to NaN): used to spot randomness."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.is_floating_point() or a.is_complex():
            return bool(torch.equal(a.nan_to_num(0.125), b.nan_to_num(0.125)) and
                        torch.equal(a.isnan(), b.isnan()))
        return bool(torch.equal(a, b))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same_values(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and (a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)))


def _snapshot(args: tuple, kwargs: dict) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    named = [(f"argument {i + 1}", a) for i, a in enumerate(args)]
    named += [(f"`{k}`", v) for k, v in kwargs.items()]
    return [(n, a, a.detach().clone()) for n, a in named if isinstance(a, torch.Tensor)]


def _fresh(value: Any) -> Any:
    """A copy of case data the learner's code may change without touching the case."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_fresh(v) for v in value)
    return value


def fresh_case(case: Case) -> Case:
    """The case with fresh copies of every tensor it holds (any field of a Case subclass)."""
    changes = {f.name: _fresh(getattr(case, f.name)) for f in dataclasses.fields(case)
               if f.init and f.name not in ("name", "tags")}
    return dataclasses.replace(case, **changes)


# --------------------------------------------------------------------------
# Global torch state: the learner's, and the fixed one references run in
# --------------------------------------------------------------------------


def torch_state() -> dict:
    """The global torch settings a learner's cell can change that change results.

    (The default device is left out: this course runs on the CPU, and
    switching ``torch.set_default_device`` from a worker thread while a trace
    function is set sends Python 3.11 into a loop.)
    """
    return {"default_dtype": torch.get_default_dtype(), "grad": torch.is_grad_enabled()}


def set_torch_state(state: dict) -> None:
    torch.set_default_dtype(state["default_dtype"])
    torch.set_grad_enabled(state["grad"])


#: torch's state in a fresh session: the references and the known mistakes run in it.
STANDARD_STATE = {"default_dtype": torch.float32, "grad": True}


class standard_torch_state:
    """Context manager: torch's fresh-session settings inside, the caller's restored after."""

    def __enter__(self):
        self.saved = torch_state()
        set_torch_state(STANDARD_STATE)
        return self

    def __exit__(self, *exc):
        set_torch_state(self.saved)
        return False


def state_differences(state: dict | None = None) -> tuple[str, ...]:
    """What differs from a fresh session, in words ("default dtype torch.float64")."""
    state = torch_state() if state is None else state
    notes = []
    if state["default_dtype"] != STANDARD_STATE["default_dtype"]:
        notes.append(f"default dtype {state['default_dtype']} (torch.set_default_dtype)")
    return tuple(notes)


#: Modules whose functions a notebook might replace (``torch.softmax = my_softmax``).
_PATCHABLE = ("torch", "torch.nn.functional", "math")


def replaced_functions() -> tuple[str, ...]:
    """Names in torch, torch.Tensor, torch.nn.functional or math that now hold a notebook's function.

    A function defined in a notebook has ``__module__ == "__main__"``; the
    check cannot judge code in a torch whose own functions were replaced.
    """
    found = []
    spaces = [(name, vars(sys.modules[name])) for name in _PATCHABLE if name in sys.modules]
    spaces.append(("torch.Tensor", vars(torch.Tensor)))
    for prefix, space in spaces:
        for attr, value in list(space.items()):
            if callable(value) and getattr(value, "__module__", None) == "__main__":
                found.append(f"{prefix}.{attr}")
    return tuple(sorted(found))


# --------------------------------------------------------------------------
# Forbidden calls
# --------------------------------------------------------------------------


def _import_qualified(name: str) -> Any:
    """The object called ``name`` ("torch.nn.functional.softmax"), or None."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except Exception:  # noqa: BLE001 - not a module at this depth
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


class Forbidden:
    """The callables an exercise forbids, resolved in this process, and a record of calls to them.

    Python functions (and every function of a forbidden class) are recognised
    by their code object, so aliases, subclasses and wrappers reach them too;
    C functions by identity; tensor methods (``torch.Tensor.softmax``) by name
    when called on a tensor (``x.softmax(...)``).
    """

    def __init__(self, names: Sequence[str]):
        self.codes: dict = {}
        self.c_functions: dict = {}
        self.tensor_methods: dict = {}
        for name in names:
            obj = _import_qualified(name)
            if obj is None:
                continue
            if isinstance(obj, type):
                for value in vars(obj).values():
                    self._add_function(value, name)
            elif not self._add_function(obj, name):
                if name.startswith("torch.Tensor."):
                    self.tensor_methods[name.rsplit(".", 1)[1]] = name
                else:
                    try:
                        self.c_functions[obj] = name
                    except TypeError:
                        pass
        self.seen: list[str] = []

    def _add_function(self, value: Any, name: str) -> bool:
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        value = inspect.unwrap(value) if callable(value) else value
        code = getattr(value, "__code__", None)
        if code is None:
            return False
        self.codes[code] = name
        return True

    def __bool__(self) -> bool:
        return bool(self.codes or self.c_functions or self.tensor_methods)

    def note(self, frame, event: str, arg: Any) -> None:
        name = None
        if event == "call":
            name = self.codes.get(frame.f_code)
        elif event == "c_call":
            try:
                name = self.c_functions.get(arg)
            except TypeError:
                name = None
            if name is None and isinstance(getattr(arg, "__self__", None), torch.Tensor):
                method = self.tensor_methods.get(getattr(arg, "__name__", ""))
                if method:
                    name = f"{method} (as tensor.{arg.__name__}(...))"
        if name and name not in self.seen:
            self.seen.append(name)


# --------------------------------------------------------------------------
# Running the learner's code: a worker thread, a CPU-time limit
# --------------------------------------------------------------------------

_HERE = __file__


#: Worker threads left behind (their code caught every attempt to stop it):
#: their CPU time is not charged to later checks.
_ABANDONED: list[threading.Thread] = []


def _thread_cpu(thread: threading.Thread) -> float:
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except (AttributeError, OSError, TypeError):  # no per-thread clocks here (Windows, macOS)
        return 0.0


def cpu_time() -> float:
    """This process's CPU time, less what the threads left behind by earlier checks used."""
    _ABANDONED[:] = [t for t in _ABANDONED if t.is_alive()]
    return time.process_time() - sum(_thread_cpu(t) for t in _ABANDONED)


def _raise_in(thread_id: int, exc: type[BaseException]) -> None:
    """Make ``exc`` be raised in the thread ``thread_id`` as soon as it runs Python.

    (Never call the C function with NULL to cancel: in Python 3.11 that leaves
    the interpreter's "pending" flag set for good, and a traced thread then
    loops forever.)
    """
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc))


class _Guard:
    """Trace and profile hooks of the worker thread: forbidden calls, and the time limit's teeth.

    Past the limit, the trace function raises :class:`CheckTimeout` on every
    line of the learner's code. A trace function that raises is switched off
    by Python, so the profile function switches it back on at the next call.
    Neither hook may be interrupted itself (a hook that raises is switched
    off), so the watching thread sends its own time-outs only while the worker
    is paused in the learner's code (see :meth:`kick`).
    """

    def __init__(self, forbidden: Forbidden | None):
        self.forbidden = forbidden
        self.expired = False
        self.hooks = {self.tracer.__func__.__code__, self.profiler.__func__.__code__}

    def tracer(self, frame, event, arg):
        if not self.expired:
            frame.f_trace_lines = False  # no line events before the limit: nothing slows down
        elif event == "line" and frame.f_code.co_filename != _HERE:
            raise CheckTimeout()
        return self.tracer

    def _arm(self, frame) -> None:
        while frame is not None and frame.f_code.co_filename != _HERE:
            frame.f_trace = self.tracer
            frame.f_trace_lines = True
            frame = frame.f_back

    def profiler(self, frame, event, arg):
        if self.forbidden is not None and event in ("call", "c_call"):
            self.forbidden.note(frame, event, arg)
        if self.expired and sys.gettrace() is None:
            sys.settrace(self.tracer)  # switched off by a raise: back on
            self._arm(frame)

    def kick(self, thread_id: int) -> None:
        """From the watching thread: raise the time-out in the worker if it is in the learner's code."""
        frame = sys._current_frames().get(thread_id)
        if frame is None or frame.f_code in self.hooks or frame.f_code.co_filename == _HERE:
            return
        self._arm(frame)
        _raise_in(thread_id, CheckTimeout)


_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep


def _learner_frame(tb) -> str:
    """The innermost traceback line outside this package (the learner's code)."""
    here = __name__.rsplit(".", 2)[0].replace(".", "/")
    frames = [
        f for f in traceback.extract_tb(tb)
        if here not in f.filename.replace("\\", "/") and f.filename != _HERE
        and not f.filename.startswith(_TORCH_DIR)  # torch's own lines say nothing to a learner
    ]
    if not frames:
        return ""
    f = frames[-1]
    line = (f.line or "").strip()
    return f"line {f.lineno}: {shorten(line, 120)}" if line else f"line {f.lineno}"


def _error_outcome(exc: BaseException) -> Outcome:
    if isinstance(exc, NotImplementedError):
        return Outcome(NOT_IMPLEMENTED, error=f"NotImplementedError: {safe_str(exc)}")
    msg = safe_str(exc, 2000).strip().splitlines()
    first = msg[0] if msg else ""
    name = safe_str(getattr(type(exc), "__name__", "Exception"), 80)
    try:
        types = tuple(safe_str(getattr(c, "__name__", ""), 80) for c in type(exc).__mro__)
    except Exception:  # noqa: BLE001 - a learner's exception class may do anything
        types = (name,)
    return Outcome(ERROR, error=shorten(f"{name}: {first}".rstrip(": "), 400),
                   where=_learner_frame(exc.__traceback__), error_types=types[:12])


def default_call(fn: Callable, case: Case) -> Any:
    return fn(*case.args, **case.kwargs)


def run_cases(
    fn: Callable,
    cases: Sequence[Case],
    call: Callable[[Callable, Case], Any] | None = None,
    time_limit_s: float = 10.0,
    forbidden: Sequence[str] = (),
    repeat: bool = True,
) -> list[Outcome]:
    """Run ``fn`` on every case in this process and record what happened.

    ``call(fn, case)`` says how to run one case (default:
    ``fn(*case.args, **case.kwargs)``); module exercises build an instance
    there. ``time_limit_s`` bounds the CPU time of the whole run: a case that
    times out ends it, and the rest are marked not run. ``forbidden`` names
    callables the code must not reach (recorded per case). With ``repeat``,
    each case runs twice and a different second result is recorded
    (``Outcome.varies``: randomness, or dropout left on). Each call gets
    fresh copies of the case's tensors, so an in-place change is seen and
    does not leak into the next case; the learner's global torch settings are
    restored after each case. Never raises for anything the learner's code
    does (a Jupyter interrupt is passed on as ``KeyboardInterrupt`` once the
    code has stopped).
    """
    call = call or default_call
    watch = Forbidden(forbidden) if forbidden else None
    guard = _Guard(watch)
    lock = threading.Lock()
    done = [False]
    # Wait on our own event, not Thread.join: in Python 3.11 a join interrupted
    # by Ctrl-C releases the running thread's lock and marks it stopped.
    finished = threading.Event()
    outcomes: list[Outcome] = []
    learner_state = torch_state()
    notes = state_differences(learner_state)
    notes += tuple(f"{name} replaced by a notebook function" for name in replaced_functions())

    def run_one(case: Case) -> Outcome:
        set_torch_state(learner_state)
        if watch is not None:
            watch.seen = []
        fresh = fresh_case(case)
        before = _snapshot(fresh.args, fresh.kwargs)
        start = time.process_time()
        try:
            outcome = Outcome(VALUE, value=sanitize(call(fn, fresh)))
            if repeat:
                set_torch_state(learner_state)
                again = sanitize(call(fn, fresh_case(case)))
                outcome.varies = not same_values(outcome.value, again)
        except CheckTimeout:
            outcome = Outcome(TIMEOUT)
        except BaseException as exc:  # noqa: BLE001 - the learner's code may raise anything
            outcome = _error_outcome(exc)
        outcome.seconds = time.process_time() - start
        outcome.mutated = tuple(
            name for name, now, then in before
            if now.shape != then.shape or not torch.equal(now.detach(), then)
        )
        outcome.forbidden = tuple(watch.seen) if watch is not None else ()
        outcome.state = notes
        return outcome

    def work() -> None:
        try:
            sys.settrace(guard.tracer)
            sys.setprofile(guard.profiler)
            for case in cases:
                outcome = run_one(case)
                outcomes.append(outcome)
                if outcome.kind == TIMEOUT or guard.expired:
                    break
        except CheckTimeout:  # it arrived between two cases
            pass
        finally:
            while True:  # switch the hooks off; a time-out still pending is raised (and caught) here
                try:
                    sys.setprofile(None)
                    sys.settrace(None)
                    with lock:
                        done[0] = True  # from now on the watching thread sends none
                    time.sleep(0)
                    break
                except CheckTimeout:
                    continue
            finished.set()

    worker = threading.Thread(target=work, name="transformer-workbook-check", daemon=True)
    cpu0, wall0 = cpu_time(), time.monotonic()
    wall_limit = 5 * time_limit_s + 5  # a backstop for code that sleeps (no CPU time)
    interrupted = abandoned = False
    try:
        worker.start()  # (inside the try: an interrupt may come while it starts)
        while not finished.wait(0.02):
            if cpu_time() - cpu0 > time_limit_s or time.monotonic() - wall0 > wall_limit:
                break
    except KeyboardInterrupt:  # the learner pressed stop: stop their code, then pass it on
        interrupted = True
    if not finished.is_set() and worker.ident is not None:
        guard.expired = True
        give_up = time.monotonic() + 3.0
        while not finished.is_set():
            try:
                if time.monotonic() > give_up:
                    abandoned = True  # it catches everything, everywhere: leave it behind
                    _ABANDONED.append(worker)
                    break
                with lock:
                    if not done[0]:
                        guard.kick(worker.ident)
                finished.wait(0.002)
            except KeyboardInterrupt:
                interrupted = True
    set_torch_state(learner_state)
    results = list(outcomes[: len(cases)])
    if len(results) < len(cases) and not (results and results[-1].kind == TIMEOUT):
        results.append(Outcome(TIMEOUT, state=notes))
    if results and results[-1].kind == TIMEOUT:
        results[-1].abandoned = abandoned
    results += [Outcome(NOT_RUN, state=notes) for _ in range(len(cases) - len(results))]
    if interrupted:
        raise KeyboardInterrupt
    return results


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
            "forbidden": list(o.forbidden),
            "varies": bool(o.varies),
            "state": list(o.state),
            "abandoned": bool(o.abandoned),
            "error_types": list(o.error_types),
        }
        for o in outcomes
    ]


def _strings(items: Any, limit: int = 8) -> tuple[str, ...]:
    if not isinstance(items, list):
        return ()
    return tuple(str(s)[:300] for s in items[:limit] if isinstance(s, str))


def outcomes_from_payload(payload: Any) -> list[Outcome]:
    """Rebuild outcomes from untrusted data; raises ValueError if malformed."""
    if not isinstance(payload, list):
        raise ValueError("payload is not a list")
    out = []
    kinds = {VALUE, ERROR, TIMEOUT, NOT_IMPLEMENTED, NOT_RUN}
    for item in payload:
        if not isinstance(item, dict) or item.get("kind") not in kinds:
            raise ValueError("malformed outcome")
        seconds = item.get("seconds")
        out.append(
            Outcome(
                kind=item["kind"],
                value=_decode(item.get("value")),
                error=str(item.get("error", ""))[:400],
                where=str(item.get("where", ""))[:300],
                mutated=_strings(item.get("mutated", [])),
                seconds=float(seconds) if isinstance(seconds, (int, float)) else 0.0,
                forbidden=_strings(item.get("forbidden", [])),
                varies=item.get("varies") is True,
                state=_strings(item.get("state", [])),
                abandoned=item.get("abandoned") is True,
                error_types=_strings(item.get("error_types", []), limit=12),
            )
        )
    return out
