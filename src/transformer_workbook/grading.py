"""Grade learners' exercise notebooks: ``python -m transformer_workbook grade``.

How one submission is graded (see ``book/instructors.md`` for the instructor's view):

1. The notebook file is read once (its bytes and SHA-256 are kept) and parsed;
   its chapter comes from the notebook metadata
   (``metadata.transformer_workbook.chapter``), else from the file name.
2. A scratch folder is made for it: ``work/`` (the kernel's working directory,
   holding a copy of the notebook), ``home/`` (``HOME``), ``tmp/``
   (``TMPDIR``) and ``grader/`` (the grader's own files).
3. A fresh IPython kernel starts there, under a memory limit
   (``RLIMIT_AS``), in its own process group, with a small environment (no
   secrets of the instructor's shell). The notebook runs top to bottom with
   nbclient; a failing cell does not stop it, a cell that runs past the
   per-cell limit is interrupted, and a watchdog kills the kernel's process
   group when the whole submission runs past its limit.
4. Only then are the test cases written (to a file with a random name) and
   one *harness* cell runs in the same kernel: it looks up each exercise's
   function by name and runs it on the cases with
   :func:`~transformer_workbook.exercises.core.run_cases`, the same code the
   learner's ``check(...)`` uses, and saves the outcomes as plain tensors and
   strings (:func:`~transformer_workbook.exercises.core.outcomes_to_payload`).
5. The kernel is killed. The grader loads the outcomes with
   ``torch.load(weights_only=True)`` (no code is unpickled) and judges them in
   its own process with :func:`~transformer_workbook.exercises.core.evaluate`:
   the reference, the known mistakes and the comparison never run in the
   learner's process, so nothing the notebook redefines (``check``,
   ``torch.allclose``, the package's reference functions...) can change the
   verdict. The message is the very message ``check`` printed for the learner.

Points live in the exercise registry (:attr:`Exercise.points`); a submission's
score is the sum of the points of its passed exercises.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
import pathlib
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

# Submission statuses.
GRADED = "graded"  # the notebook ran and every exercise was judged
FLAGGED = "flagged"  # graded, but it changed files outside its scratch folder
TIMEOUT = "timeout"  # ran past the per-submission time limit; killed
KERNEL_DIED = "kernel died"  # the kernel process exited (os._exit, a crash, ...)
INVALID = "invalid notebook"  # not readable, not JSON, or not a notebook
UNKNOWN_CHAPTER = "unknown chapter"  # no chapter in the metadata or the file name
GRADER_ERROR = "grader error"  # the grader itself failed (the only non-zero exit)

# Exercise statuses: check's own ("passed", "failed", "not attempted", "error"), plus:
MISSING = "missing"  # no function of the expected name in the notebook
NOT_GRADED = "not graded"  # the notebook could not be run far enough to grade it

MAX_NOTEBOOK_BYTES = 50 * 2**20
MAX_PAYLOAD_BYTES = 64 * 2**20
MAX_NOTES = 8

# The kernel launcher: sets the limits, then becomes the IPython kernel (exec
# keeps the process id, so the limits and the process group are the kernel's).
# No braces in this code: jupyter_client formats every argument of a kernel
# command with {connection_file}-style fields.
_LAUNCHER = """\
import os, resource, sys
for name, var in (("RLIMIT_AS", "TW_GRADER_MEMORY_BYTES"), ("RLIMIT_FSIZE", "TW_GRADER_FILE_BYTES")):
    limit = int(os.environ.pop(var, "0") or 0)
    if limit > 0:
        resource.setrlimit(getattr(resource, name), (limit, limit))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", "-f", sys.argv[1]])
"""
_KERNEL_NAME = "transformer-workbook-grader"

# Environment variables passed on to the learner's kernel; everything else
# (tokens, credentials, the instructor's paths) is left out.
_ENV_KEEP = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH", "VIRTUAL_ENV",
             "SYSTEMROOT")

# The harness: runs in the learner's kernel after the notebook, in its own
# globals (so names the learner shadowed, such as `torch`, `open`, `len` or
# `run_cases`, are not used), and fetches only the learner's functions from
# the notebook's namespace. Writes one file per exercise, atomically, so an
# exercise that kills the kernel leaves the earlier results readable.
_HARNESS = '''\
def _tw_harness():
    import importlib
    import importlib.util
    import os
    import sys

    torch = importlib.import_module("torch")
    # A fresh copy of the check machinery, loaded from its file: the notebook
    # may have replaced attributes of the imported module (run_cases, ...).
    name = "transformer_workbook.exercises._grader_core"
    spec = importlib.util.spec_from_file_location(name, CORE_PATH)
    core = importlib.util.module_from_spec(spec)
    sys.modules[name] = core
    try:
        spec.loader.exec_module(core)
    finally:
        sys.modules.pop(name, None)
    jobs = torch.load(CASES_PATH, weights_only=True)
    for i, job in enumerate(jobs):
        result = {"id": job["id"], "status": "missing", "type": "", "module": ""}
        fn = USER_NS.get(job["target"], _MISSING)
        if fn is _MISSING:
            pass
        elif not callable(fn):
            result["status"] = "not-callable"
            result["type"] = str(type(fn).__name__)
        else:
            call = None
            if job["custom_call"]:  # only exercises that need one look into the registry
                call = importlib.import_module("transformer_workbook.exercises").get(job["id"]).call
            cases = [_case(core, c) for c in job["cases"]]
            outcomes = core.run_cases(fn, cases, call=call, **job["run"])
            result["status"] = "ran"
            result["module"] = str(getattr(fn, "__module__", "") or "")[:200]
            result["outcomes"] = core.outcomes_to_payload(outcomes)
        tmp = OUT_PREFIX + str(i) + ".tmp"
        torch.save(result, tmp)
        os.replace(tmp, OUT_PREFIX + str(i) + ".pt")


def _case(core, data):
    """A case rebuilt from plain data: its class (Case or a subclass), then its fields."""
    import importlib

    fields = dict(data["fields"])
    for name in data["frozensets"]:
        fields[name] = frozenset(fields[name])
    module, qualname = data["cls"]
    if (module, qualname) == ("transformer_workbook.exercises.core", "Case"):
        cls = core.Case
    else:
        cls = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
    return cls(**fields)


_MISSING = object()
_tw_harness()
'''

_HARNESS_CELL = """\
import builtins as _tw_builtins
_tw_builtins.exec({code!r}, {{"__builtins__": _tw_builtins, "__name__": "tw_grader_harness", \
"USER_NS": _tw_builtins.__import__("sys")._getframe(0).f_globals, \
"CORE_PATH": {core!r}, "CASES_PATH": {cases!r}, "OUT_PREFIX": {prefix!r}}})
"""


# --------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------


@dataclasses.dataclass
class ExerciseReport:
    id: str
    status: str
    points: int
    max_points: int
    message: str
    mistake: str | None = None


@dataclasses.dataclass
class SubmissionReport:
    path: str
    status: str
    score: int = 0
    max_score: int = 0
    chapter: str = ""
    message: str = ""
    exercises: list[ExerciseReport] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    sha256: str = ""

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "score": self.score,
            "max_score": self.max_score,
            "status": self.status,
            "chapter": self.chapter,
            "message": self.message,
            "seconds": round(self.seconds, 2),
            "sha256": self.sha256,
            "exercises": [dataclasses.asdict(e) for e in self.exercises],
        }


@dataclasses.dataclass
class GradeOptions:
    """Limits for one submission (the command's options)."""

    timeout_s: float = 300.0  # the whole notebook plus grading, after the kernel started
    cell_timeout_s: float = 60.0  # one cell; it is interrupted, and the notebook goes on
    memory_mb: int = 4096  # address space of the kernel (and its children)
    file_mb: int = 512  # largest file the kernel may write
    startup_timeout_s: float = 60.0
    chapter: str | None = None  # grade every submission as this chapter
    # Draw the cases with this seed instead of each exercise's own (the one the
    # learner's check used), so answers hard-coded for those inputs fail.
    seed: int | None = None


# --------------------------------------------------------------------------
# Exercises and chapters
# --------------------------------------------------------------------------


def chapter_exercises() -> dict[str, list]:
    """``{chapter: [Exercise, ...]}`` from the registry, in registry order."""
    from .exercises import all_exercises

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


def _core_path() -> str:
    from .exercises import core

    return str(pathlib.Path(core.__file__).resolve())


def _case_to_data(case) -> dict:
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


# --------------------------------------------------------------------------
# Grading one submission
# --------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _short(text: str, n: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip() and not line.strip().startswith("#"):
            return _short(line.strip(), 60)
    return ""


def _folder_state(folder: pathlib.Path, limit: int = 5000) -> dict[str, tuple]:
    """Name -> (size, mtime, inode) of the entries of ``folder`` (not recursive)."""
    state: dict[str, tuple] = {}
    try:
        with os.scandir(folder) as it:
            for i, entry in enumerate(it):
                if i >= limit:
                    break
                try:
                    st = entry.stat(follow_symlinks=False)
                    if entry.is_dir(follow_symlinks=False):  # a folder: only its identity
                        state[entry.name] = ("folder", st.st_ino)
                    else:
                        state[entry.name] = (st.st_size, st.st_mtime_ns, st.st_ino)
                except OSError:
                    state[entry.name] = ("?",)
    except OSError:
        pass
    return state


def _folder_changes(before: dict, after: dict) -> list[str]:
    changes = [f"created {n}" for n in sorted(after.keys() - before.keys())]
    changes += [f"deleted {n}" for n in sorted(before.keys() - after.keys())]
    changes += [f"modified {n}" for n in sorted(before.keys() & after.keys()) if before[n] != after[n]]
    return changes


def restore_file(path: pathlib.Path, data: bytes) -> None:
    """Put ``data`` back at ``path`` (replacing, never writing through, a link)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tw-restore-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _kill_marked(marker: str) -> None:
    """Kill every process whose environment carries ``marker`` (escaped children)."""
    needle = f"TW_GRADER_SUBMISSION={marker}".encode()
    proc = pathlib.Path("/proc")
    if not proc.is_dir():
        return
    for d in proc.iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if needle in (d / "environ").read_bytes().split(b"\0"):
                os.kill(int(d.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def _kernel_spec_dir(root: pathlib.Path) -> pathlib.Path:
    spec = root / "kernels" / _KERNEL_NAME
    if not (spec / "kernel.json").exists():
        spec.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-c", _LAUNCHER, "{connection_file}"]
        tmp = spec / f"kernel.json.{os.getpid()}"
        tmp.write_text(json.dumps({"argv": argv, "display_name": "Grader (Python 3)",
                                   "language": "python", "interrupt_mode": "signal"}))
        os.replace(tmp, spec / "kernel.json")
    return root / "kernels"


def _kernel_env(scratch: pathlib.Path, marker: str, options: GradeOptions) -> dict[str, str]:
    env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
    home, tmp = scratch / "home", scratch / "tmp"
    env.update(
        HOME=str(home),
        TMPDIR=str(tmp), TMP=str(tmp), TEMP=str(tmp),
        IPYTHONDIR=str(home / ".ipython"),
        MPLCONFIGDIR=str(home / ".config" / "matplotlib"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        JUPYTER_RUNTIME_DIR=str(home / ".jupyter-runtime"),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONNOUSERSITE="1",
        PYDEVD_DISABLE_FILE_VALIDATION="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        MALLOC_ARENA_MAX="2",
        CUDA_VISIBLE_DEVICES="",
        TW_GRADER_MEMORY_BYTES=str(int(options.memory_mb) * 2**20),
        TW_GRADER_FILE_BYTES=str(int(options.file_mb) * 2**20),
        TW_GRADER_SUBMISSION=marker,
    )
    return env


@dataclasses.dataclass
class _Run:
    """What happened while the notebook and the harness ran."""

    finished: bool = False  # the harness cell ran to its end
    timed_out: bool = False
    died: bool = False
    died_in: str = ""  # "cell 5 (`os._exit(1)`)" or "harness"
    exit_info: str = ""
    cell_errors: list = dataclasses.field(default_factory=list)  # (index, ename, evalue)
    interrupted: list = dataclasses.field(default_factory=list)  # cell indices
    harness_error: str = ""


def _signal_name(code: int | None) -> str:
    if code is None:
        return ""
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _execute(nb, scratch: pathlib.Path, jobs_data: list, options: GradeOptions, marker: str,
             spec_dirs: pathlib.Path) -> tuple[_Run, str]:
    """Run the notebook, then the harness, in one fresh kernel. Returns the run and OUT_PREFIX."""
    import nbformat
    import torch
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionComplete, DeadKernelError

    class QuietClient(NotebookClient):
        """Keeps no outputs (a flood of prints cannot fill the grader's memory)."""

        def process_message(self, msg, cell, cell_index):
            if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                raise CellExecutionComplete()
            return None

    run = _Run()
    work, grader = scratch / "work", scratch / "grader"
    km = AsyncKernelManager(kernel_name=_KERNEL_NAME,
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_dirs)]))
    km.connection_file = str(grader / "connection.json")
    # Unix sockets in the scratch folder rather than TCP ports: nothing listens
    # on the network, and parallel kernels cannot race for the same port.
    km.transport = "ipc"
    km.ip = str(grader / "kernel-ipc")
    client = QuietClient(
        nb, km=km, timeout=int(max(1, options.cell_timeout_s)),
        startup_timeout=int(options.startup_timeout_s), allow_errors=True,
        interrupt_on_timeout=True, shutdown_kernel="immediate", store_widget_state=False,
        record_timing=False, resources={"metadata": {"path": str(work)}},
    )
    replies: dict[int, dict] = {}

    def on_executed(cell, cell_index, execute_reply):
        replies[cell_index] = (execute_reply or {}).get("content", {})

    client.on_cell_executed = on_executed
    state = {"pgid": None, "stage": ""}
    killed = threading.Event()

    def kill_kernel(timeout: bool = False) -> None:
        if timeout:
            run.timed_out = True
        killed.set()
        if state["pgid"]:
            with contextlib.suppress(OSError):
                os.killpg(state["pgid"], signal.SIGKILL)
        _kill_marked(marker)

    out_prefix = ""
    watchdog = None
    stderr = state["stderr"] = open(grader / "kernel-stderr.txt", "wb")  # noqa: SIM115 - closed below
    try:
        with client.setup_kernel(env=_kernel_env(scratch, marker, options), cwd=str(work),
                                 stdout=subprocess.DEVNULL, stderr=stderr):
            prov = km.provisioner
            state["pgid"] = getattr(prov, "pgid", None) or getattr(prov, "pid", None)
            deadline = time.monotonic() + options.timeout_s
            watchdog = threading.Timer(options.timeout_s, kill_kernel, kwargs={"timeout": True})
            watchdog.daemon = True
            watchdog.start()
            try:
                for index, cell in enumerate(list(nb.cells)):
                    if cell.cell_type != "code" or not cell.source.strip():
                        continue
                    state["stage"] = f"cell {index + 1} (`{_first_line(cell.source)}`)"
                    start = time.monotonic()
                    client.execute_cell(cell, index)
                    reply = replies.get(index, {})
                    if reply.get("status") == "error":
                        ename = str(reply.get("ename", "Error"))[:80]
                        evalue = _short(str(reply.get("evalue", "")), 120)
                        overran = time.monotonic() - start >= options.cell_timeout_s
                        if ename == "KeyboardInterrupt" and overran:
                            run.interrupted.append(index)
                        else:
                            run.cell_errors.append((index, ename, evalue))
                    if killed.is_set():
                        break
                if not killed.is_set():
                    # The cases exist on disk only from now on, under a random name.
                    token = secrets.token_hex(16)
                    cases_path = grader / f"{token}-cases.pt"
                    out_prefix = str(grader / f"{token}-out-")
                    torch.save(jobs_data, cases_path)
                    source = _HARNESS_CELL.format(code=_HARNESS, core=_core_path(), cases=str(cases_path),
                                                  prefix=out_prefix)
                    harness = nbformat.v4.new_code_cell(source)
                    nb.cells.append(harness)
                    budget = sum(j["time_limit_s"] for j in jobs_data) + 30
                    client.timeout = int(max(1, min(budget, deadline - time.monotonic() + 1)))
                    state["stage"] = "harness"
                    client.execute_cell(harness, len(nb.cells) - 1)
                    reply = replies.get(len(nb.cells) - 1, {})
                    if reply.get("status") == "error":
                        error = f"{reply.get('ename', '')}: {reply.get('evalue', '')}"
                        run.harness_error = _short(error, 200)
                    else:
                        run.finished = not killed.is_set()
            except DeadKernelError:
                run.died = True
                run.died_in = state["stage"]
            if killed.is_set() and not run.finished:
                run.died, run.died_in = True, state["stage"]
            # Record how the kernel ended before it is shut down.
            proc = getattr(km.provisioner, "process", None)
            if run.died and proc is not None:
                with contextlib.suppress(Exception):
                    proc.wait(timeout=5)
                    run.exit_info = _signal_name(proc.poll())
    except Exception as exc:
        if state["pgid"] is None:  # the kernel never started: the grader's problem
            tail = ""
            with contextlib.suppress(OSError):
                state["stderr"].flush()
                tail = (grader / "kernel-stderr.txt").read_bytes()[-600:].decode("utf-8", "replace")
            raise RuntimeError(f"the kernel could not start ({type(exc).__name__}: {exc}). "
                               f"Its error output ends with: {_short(tail, 600)}") from exc
        if not isinstance(exc, DeadKernelError):
            raise
        run.died = True
        run.died_in = run.died_in or state["stage"]
    finally:
        if watchdog is not None:
            watchdog.cancel()
        kill_kernel()
        stderr.close()
    return run, out_prefix


def _load_result(path: pathlib.Path, ex) -> dict | None:
    """The harness's file for one exercise, validated; None when absent or unreadable."""
    import torch

    try:
        if not path.is_file() or path.stat().st_size > MAX_PAYLOAD_BYTES:
            return None
        data = torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # noqa: BLE001 - untrusted file
        return None
    if not isinstance(data, dict) or data.get("id") != ex.id:
        return None
    if data.get("status") not in ("missing", "not-callable", "ran"):
        return None
    return data


def _judge(ex, cases, data: dict | None, definer: str) -> ExerciseReport:
    """The verdict on one exercise from the harness's (untrusted) result."""
    from .exercises import evaluate, outcomes_from_payload

    def report(status: str, message: str, mistake: str | None = None) -> ExerciseReport:
        pts = ex.points if status == "passed" else 0
        return ExerciseReport(ex.id, status, pts, ex.points, message, mistake)

    if data is None:
        return report("error", "The grader could not collect the results of "
                      f"`{ex.target}` from the notebook's kernel.", "unreadable")
    if data["status"] == "missing":
        msg = (f"The notebook defines no function named `{ex.target}`: keep the name and signature "
               "of the exercise's stub.")
        if definer:
            msg += f" ({definer} should define it, but it raised an error.)"
        return report(MISSING, msg, "missing")
    if data["status"] == "not-callable":
        kind = _short(str(data.get("type", "")), 40)
        return report("failed", f"`{ex.target}` is a {kind}, not a function.", "not-callable")
    try:
        outcomes = outcomes_from_payload(data.get("outcomes"))
        result = evaluate(ex, cases, outcomes)
    except Exception:  # noqa: BLE001 - malformed outcomes
        return report("error", "The grader could not read the results of "
                      f"`{ex.target}` (malformed data).", "unreadable")
    return report(result.status, result.message, result.mistake)


def _definer_errors(nb, run: _Run, targets: Sequence[str]) -> dict[str, str]:
    """For each target, the failing cell that should have defined it ("cell 4 (SyntaxError: ...)")."""
    errors = {i: (e, v) for i, e, v in run.cell_errors}
    out = {}
    for t in targets:
        defines = re.compile(rf"^\s*(?:async\s+def|def|class)\s+{re.escape(t)}\b", re.M)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and i in errors and defines.search(cell.source):
                e, v = errors[i]
                out[t] = f"cell {i + 1}, which raised {e}: {v}".rstrip(": ")
                break
    return out


def _run_notes(run: _Run, options: GradeOptions) -> list[str]:
    notes = []
    for i in run.interrupted:
        notes.append(f"cell {i + 1} ran past the per-cell limit of {options.cell_timeout_s:g} s and "
                     "was interrupted")
    for i, ename, evalue in run.cell_errors:
        note = f"cell {i + 1} raised {ename}" + (f": {evalue}" if evalue else "")
        if "memory" in f"{ename} {evalue}".lower():
            note += f" (the memory limit is {options.memory_mb} MiB)"
        notes.append(note)
    if len(notes) > MAX_NOTES:
        notes = notes[:MAX_NOTES] + [f"and {len(notes) - MAX_NOTES} more"]
    return notes


def grade_submission(path: str | os.PathLike, options: GradeOptions | None = None,
                     run_root: str | os.PathLike | None = None,
                     shared_folder: bool = False) -> SubmissionReport:
    """Grade one notebook; never raises (a failure is a report with a status)."""
    options = options or GradeOptions()
    start = time.monotonic()
    path = pathlib.Path(path)
    report = SubmissionReport(path=str(path), status=GRADER_ERROR)
    own_root = run_root is None
    root = pathlib.Path(tempfile.mkdtemp(prefix="tw-grade-")) if own_root else pathlib.Path(run_root)
    try:
        _grade_into(report, path, options, root, shared_folder)
    except Exception as exc:  # noqa: BLE001 - one submission never stops the batch
        report.status = GRADER_ERROR
        report.message = (f"The grader failed on this submission: {type(exc).__name__}: "
                          f"{_short(str(exc), 300)}")
        for e in report.exercises:
            if e.status == NOT_GRADED:
                e.message = "Not graded: the grader failed."
    finally:
        if own_root:
            shutil.rmtree(root, ignore_errors=True)
        report.seconds = time.monotonic() - start
    return report


def _grade_into(report: SubmissionReport, path: pathlib.Path, options: GradeOptions,
                root: pathlib.Path, shared_folder: bool) -> None:
    import nbformat

    chapters = chapter_exercises()

    def set_exercises(exs, message: str) -> None:
        report.max_score = sum(ex.points for ex in exs)
        report.exercises = [ExerciseReport(ex.id, NOT_GRADED, 0, ex.points, message) for ex in exs]

    # 1. Read and parse (the bytes are read once; the file is never written to).
    try:
        data = path.read_bytes() if path.stat().st_size <= MAX_NOTEBOOK_BYTES else None
    except OSError as exc:
        report.status, report.message = INVALID, f"Cannot read the file: {exc.strerror or exc}."
        return
    if data is None:
        report.status = INVALID
        report.message = f"The file is larger than {MAX_NOTEBOOK_BYTES // 2**20} MiB."
        return
    report.sha256 = _sha256(data)
    nb, problem = None, ""
    try:
        text = data.decode("utf-8")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("it has no list of cells")
        for cell in nb.cells:
            kind, source = cell.get("cell_type"), cell.get("source")
            if kind not in ("code", "markdown", "raw") or not isinstance(source, str):
                raise ValueError("a cell has no type or no source")
    except UnicodeDecodeError:
        problem = "The file is not text (UTF-8): it is not a Jupyter notebook."
    except nbformat.reader.NotJSONError:
        problem = "The file is not JSON: it is not a Jupyter notebook (was it saved from Jupyter?)."
    except Exception as exc:  # noqa: BLE001
        problem = f"The file is JSON but not a valid Jupyter notebook ({_short(str(exc), 160)})."
    chapter = options.chapter or detect_chapter(nb if not problem else {}, path, chapters)
    if chapter not in chapters:
        chapter = None
    report.chapter = chapter or ""
    exercises = chapters.get(chapter, [])
    if problem:
        report.status, report.message = INVALID, problem
        set_exercises(exercises, "Not graded: the file is not a notebook.")
        return
    if chapter is None:
        report.status = UNKNOWN_CHAPTER
        report.message = (
            "Cannot tell which chapter this notebook belongs to: its metadata has no "
            "transformer_workbook.chapter and its file name contains none of "
            f"{', '.join(sorted(c for c in chapters if c))}. Rename it or pass --chapter."
        )
        return
    set_exercises(exercises, "Not graded.")

    # 2. Cases, made here, in the grader.
    seed = options.seed
    cases = {ex.id: ex.cases(seed) for ex in exercises}
    jobs_data = [
        {"id": ex.id, "target": ex.target, "time_limit_s": float(ex.time_limit_s), "run": ex.run_options(),
         "custom_call": ex.call is not None, "cases": [_case_to_data(c) for c in cases[ex.id]]}
        for ex in exercises
    ]

    # 3. Scratch folder and a copy of the notebook.
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="sub-", dir=root))
    try:
        for sub in ("work", "home", "tmp", "grader"):
            (scratch / sub).mkdir()
        name = path.name if path.suffix == ".ipynb" else "submission.ipynb"
        (scratch / "work" / name).write_bytes(data)
        folder = path.resolve().parent
        before = _folder_state(folder)
        marker = secrets.token_hex(12)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        run, out_prefix = _execute(nb, scratch, jobs_data, options, marker, _kernel_spec_dir(root))

        # 4. Judge, here.
        definers = _definer_errors(nb, run, [ex.target for ex in exercises])
        notes = _run_notes(run, options)
        results: list[ExerciseReport | None] = []
        for i, ex in enumerate(exercises):
            data_i = _load_result(pathlib.Path(f"{out_prefix}{i}.pt"), ex) if out_prefix else None
            if data_i is None and not run.finished:
                results.append(None)  # the harness never got to it
            else:
                results.append(_judge(ex, cases[ex.id], data_i, definers.get(ex.target, "")))

        report.status = GRADED
        if run.timed_out:
            report.status = TIMEOUT
            report.message = (f"The notebook did not finish within the limit of {options.timeout_s:g} s "
                              f"(it was running {run.died_in or 'a cell'}), so it was stopped.")
        elif run.died:
            report.status = KERNEL_DIED
            how = f" ({run.exit_info})" if run.exit_info else ""
            where = ("while the grader ran the notebook's functions on the test cases"
                     if run.died_in == "harness" else f"while running {run.died_in or 'the notebook'}")
            report.message = (f"The kernel died{how} {where}. Typical causes: os._exit(), a crash in "
                              "C code (ctypes, a segmentation fault), or memory use above the limit "
                              f"of {options.memory_mb} MiB.")
        elif not run.finished:
            notes.append(f"the grader's harness failed in the kernel ({run.harness_error})")
        not_graded = report.message or "the grader could not run the notebook's functions."
        for i, ex in enumerate(exercises):
            res = results[i]
            if res is None:
                first_missing = i == 0 or results[i - 1] is not None
                if run.died and not run.timed_out and run.died_in == "harness" and first_missing:
                    res = ExerciseReport(ex.id, "error", 0, ex.points,
                                         f"The kernel died while running `{ex.target}` on the test "
                                         "cases (os._exit, a crash in C code, or the memory limit).",
                                         "kernel-died")
                else:
                    res = ExerciseReport(ex.id, NOT_GRADED, 0, ex.points, f"Not graded: {not_graded}")
            report.exercises[i] = res

        # 5. Writes outside the scratch folder.
        changes = _folder_changes(before, _folder_state(folder))
        try:
            now = path.read_bytes()
        except OSError:
            now = None
        if now != data:
            try:
                restore_file(path, data)
                changes.append(f"changed the submission file {path.name} (restored)")
            except OSError as exc:
                changes.append(f"changed the submission file {path.name} (NOT restored: {exc})")
        if changes:
            shown = ", ".join(changes[:6]) + (f" and {len(changes) - 6} more" if len(changes) > 6 else "")
            msg = f"Files changed in the submission's folder {folder} while it was graded: {shown}."
            if shared_folder:
                msg += (" Other submissions in that folder were graded at the same time, so any of "
                        "them may have done it: grade them again with --jobs 1 to find out.")
            notes.insert(0, msg)
            if report.status == GRADED:
                report.status = FLAGGED
        if notes:
            notes_text = "Notes: " + "; ".join(notes) + "."
            report.message = f"{report.message} {notes_text}" if report.message else notes_text
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report.score = sum(e.points for e in report.exercises)


# --------------------------------------------------------------------------
# A batch
# --------------------------------------------------------------------------


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[pathlib.Path]:
    """Files as given; folders become the notebooks under them (checkpoints skipped)."""
    out: list[pathlib.Path] = []
    for p in map(pathlib.Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts)
        else:
            out.append(p)
    return out


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)
    # A Ctrl-C in the terminal reaches the whole process group: let the parent handle it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def grade_many(
    paths: Sequence[str | os.PathLike],
    options: GradeOptions | None = None,
    jobs: int | None = None,
    progress: Callable[[int, int, SubmissionReport], None] | None = None,
) -> list[SubmissionReport]:
    """Grade every submission (in parallel with ``jobs`` > 1); reports in input order."""
    options = options or GradeOptions()
    paths = [pathlib.Path(p) for p in paths]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(paths) or 1))
    # Which folders hold several submissions (attribution of writes is then ambiguous)?
    folders: dict[pathlib.Path, int] = {}
    for p in paths:
        folders[p.resolve().parent] = folders.get(p.resolve().parent, 0) + 1
    shared = [jobs > 1 and folders[p.resolve().parent] > 1 for p in paths]
    originals: dict[int, bytes] = {}
    for i, p in enumerate(paths):
        with contextlib.suppress(OSError):
            if p.is_file() and p.stat().st_size <= MAX_NOTEBOOK_BYTES:
                originals[i] = p.read_bytes()
    chapter_exercises()  # fail early (a broken registry is the grader's problem)
    root = pathlib.Path(tempfile.mkdtemp(prefix="tw-grade-"))
    reports: list[SubmissionReport | None] = [None] * len(paths)
    done = 0
    try:
        if jobs == 1:
            for i, p in enumerate(paths):
                reports[i] = grade_submission(p, options, root, shared[i])
                done += 1
                if progress:
                    progress(done, len(paths), reports[i])
        else:
            ctx = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=ctx,
                                                        initializer=_worker_init) as pool:
                futures = {pool.submit(grade_submission, p, options, str(root), shared[i]): i
                           for i, p in enumerate(paths)}
                for fut in concurrent.futures.as_completed(futures):
                    i = futures[fut]
                    try:
                        reports[i] = fut.result()
                    except Exception as exc:  # noqa: BLE001 - a worker process died
                        reports[i] = SubmissionReport(str(paths[i]), GRADER_ERROR,
                                                      message=f"The grading process failed: {exc!r}")
                    done += 1
                    if progress:
                        progress(done, len(paths), reports[i])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    # A submission's file changed by any notebook of the batch is put back.
    for i, p in enumerate(paths):
        if i in originals:
            try:
                same = p.read_bytes() == originals[i]
            except OSError:
                same = False
            if not same:
                note = "Its file was changed during the batch (by this or another submission)"
                try:
                    restore_file(p, originals[i])
                    note += " and restored."
                except OSError as exc:
                    note += f"; restoring it failed: {exc}."
                rep = reports[i]
                rep.message = f"{rep.message} {note}" if rep.message else note
    return [r for r in reports if r is not None]


# --------------------------------------------------------------------------
# Output: terminal table, JSON, CSV
# --------------------------------------------------------------------------


def format_table(report: SubmissionReport, width: int = 100) -> str:
    lines = [f"{report.path}  [{report.chapter or '?'}]  {report.status}  "
             f"{report.score}/{report.max_score} points"]
    if report.exercises:
        idw = max(len(e.id) for e in report.exercises)
        stw = max(len(e.status) for e in report.exercises)
        for e in report.exercises:
            head = f"  {e.id:<{idw}}  {e.status:<{stw}}  {e.points:>2}/{e.max_points:<2} "
            lines.append(head + _short(e.message, max(20, width - len(head))))
    if report.message:
        lines.append("  " + _short(report.message, 400))
    return "\n".join(lines)


def to_json(reports: Sequence[SubmissionReport]) -> dict:
    return {"submissions": [r.to_json() for r in reports]}


def write_csv(reports: Sequence[SubmissionReport], out: io.TextIOBase) -> None:
    ids: list[str] = []
    for exs in chapter_exercises().values():
        for ex in exs:
            if any(e.id == ex.id for r in reports for e in r.exercises) and ex.id not in ids:
                ids.append(ex.id)
    writer = csv.writer(out)
    writer.writerow(["path", "chapter", "status", "score", "max_score", *ids])
    for r in reports:
        points = {e.id: e.points for e in r.exercises}
        writer.writerow([r.path, r.chapter, r.status, r.score, r.max_score,
                         *[points.get(i, "") for i in ids]])


def main(args) -> int:
    """The ``grade`` command (arguments parsed in ``__main__``)."""
    paths = expand_paths(args.submissions)
    if not paths:
        print("grade: no notebooks found", file=sys.stderr)
        return 2
    options = GradeOptions(timeout_s=args.timeout, cell_timeout_s=min(args.cell_timeout, args.timeout),
                           memory_mb=args.memory, chapter=args.chapter, seed=args.seed)
    if args.chapter is not None and args.chapter not in chapter_exercises():
        print(f"grade: unknown chapter {args.chapter!r}; chapters: "
              f"{', '.join(sorted(chapter_exercises()))}", file=sys.stderr)
        return 2
    start = time.monotonic()

    def progress(done: int, total: int, rep: SubmissionReport) -> None:
        print(f"[{done}/{total}] {rep.path}: {rep.status}, {rep.score}/{rep.max_score} "
              f"({rep.seconds:.1f} s)", file=sys.stderr, flush=True)

    reports = grade_many(paths, options, jobs=args.jobs, progress=progress)
    width = max(100, shutil.get_terminal_size((120, 24)).columns)
    print()
    for rep in reports:
        print(format_table(rep, width))
        print()
    counts: dict[str, int] = {}
    for rep in reports:
        counts[rep.status] = counts.get(rep.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    print(f"{len(reports)} submission(s) in {time.monotonic() - start:.1f} s: {summary}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(to_json(reports), indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.json}")
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as f:
            write_csv(reports, f)
        print(f"wrote {args.csv}")
    return 1 if any(r.status == GRADER_ERROR for r in reports) else 0
