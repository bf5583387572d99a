"""Run one notebook, then the grader's harness cell, in a fresh kernel.

The time limits count **kernel time** (:class:`KernelClock`), not the wall
clock: on a busy machine the kernel waits for a CPU core while other processes
use them, and that waiting is not the notebook's doing. The limits are enforced
by one thread, :class:`Watchdog`, which interrupts a cell (SIGINT, as Jupyter's
"interrupt" does) when it runs past the per-cell limit, and kills the kernel's
process group when the submission runs past its limit. nbclient itself waits
without a time limit; it detects a dead kernel by polling the kernel process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import secrets
import signal
import subprocess
import threading
import time

from . import harness, sandbox
from .options import GradeOptions

#: The wall-clock backstop: a limit of L seconds of kernel time also stops
#: after WALL_BACKSTOP * L seconds of wall-clock time, whatever the load.
WALL_BACKSTOP = 10.0
#: Seconds between two looks of the watchdog at the kernel's clock.
POLL_S = 0.05
#: The harness cell's limit, beyond the sum of the exercises' own time limits.
HARNESS_MARGIN_S = 30.0
HARNESS_STAGE = "harness"
#: The status of an execute_reply for a cell that raised (Jupyter's messaging protocol).
REPLY_ERROR = "error"


class KernelClock:
    """Seconds of the kernel's own time since the clock was made.

    Wall-clock time minus the time the kernel was held up waiting for a CPU
    core while other processes used them. Linux counts that wait per thread
    (second field of ``/proc/PID/task/TID/schedstat``, nanoseconds). A cell may
    do its work in any of the kernel's threads (a check runs the learner's code
    in a worker thread while the main thread sleeps; torch computes in several),
    so between two looks the clock counts as held up the longest wait of any one
    thread: what the slowest worker lost, without adding up threads that waited
    side by side. What remains is the time the kernel computed, slept or waited
    for I/O: about what it would have taken on an idle machine. Where the files
    cannot be read, this is the wall clock (:attr:`exact` is False).
    ``schedstat=`` reads one file instead (one thread), ``tasks=`` another
    folder of threads (both for tests).
    """

    def __init__(self, pid: int, schedstat: str | os.PathLike | None = None,
                 tasks: str | os.PathLike | None = None):
        self.path = pathlib.Path(schedstat) if schedstat else None
        self.tasks = None if schedstat else pathlib.Path(tasks or f"/proc/{pid}/task")
        self.wall_start = time.monotonic()
        self._lock = threading.Lock()
        first = self._readings()
        self.exact = first is not None
        self._seen = first or {}  # thread -> its wait at the last look
        self._waited_s = 0.0

    @staticmethod
    def _read(path: pathlib.Path) -> float | None:
        try:
            return int(path.read_text().split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            return None

    def _readings(self) -> dict[str, float] | None:
        if self.path is not None:
            one = self._read(self.path)
            return None if one is None else {"": one}
        try:
            tids = [d.name for d in self.tasks.iterdir()]
        except OSError:
            return None
        found = {tid: self._read(self.tasks / tid / "schedstat") for tid in tids}
        found = {tid: w for tid, w in found.items() if w is not None}
        return found or None

    def wall(self) -> float:
        return time.monotonic() - self.wall_start

    def waited(self) -> float:
        """Seconds the kernel was held up waiting for a CPU since the clock started (0 if unknown)."""
        with self._lock:
            now = self._readings()
            if now:  # a process that is gone keeps its last reading
                # A thread first seen now started after the last look: all its wait is new.
                steps = [w - self._seen.get(tid, 0.0) for tid, w in now.items()]
                self._waited_s += max([0.0, *steps])
                self._seen = now
            return self._waited_s

    def now(self) -> float:
        wall = self.wall()
        return max(0.0, wall - self.waited())


class Watchdog(threading.Thread):
    """Enforces the per-cell and per-submission limits in kernel time.

    The grader calls :meth:`start_cell` and :meth:`end_cell` around each cell
    (under a lock shared with the checks, so an interrupt is only ever sent
    while the grader considers that cell running). The submission's time is the
    sum of its cells' kernel time: the grader's own work between cells is not
    counted.
    """

    def __init__(self, clock: KernelClock, timeout_s: float, interrupt, kill):
        super().__init__(daemon=True, name="tw-grader-watchdog")
        self.clock, self.timeout_s = clock, float(timeout_s)
        self._interrupt, self._kill = interrupt, kill
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self.used = 0.0  # kernel time of the finished cells
        self.timed_out = False
        self._cell_start: float | None = None  # kernel time
        self._cell_wall = 0.0  # wall-clock reading of the clock
        self._cell_limit = 0.0
        self._next_interrupt = 0.0
        self._interrupted = False

    def start_cell(self, limit_s: float) -> None:
        with self._lock:
            self._cell_start, self._cell_wall = self.clock.now(), self.clock.wall()
            self._cell_limit = self._next_interrupt = max(float(limit_s), POLL_S)
            self._interrupted = False

    def end_cell(self) -> bool:
        """Ends the current cell; whether the watchdog interrupted it."""
        with self._lock:
            if self._cell_start is not None:
                self.used += max(0.0, self.clock.now() - self._cell_start)
            self._cell_start = None
            return self._interrupted

    def spent(self) -> float:
        with self._lock:
            return self._spent(self.clock.now())

    def _spent(self, now: float) -> float:
        running = now - self._cell_start if self._cell_start is not None else 0.0
        return self.used + max(0.0, running)

    def stop(self) -> None:
        self._halt.set()

    def check(self) -> bool:
        """One look at the clock: interrupt or kill as the limits say. False once the kernel is killed."""
        with self._lock:
            now = self.clock.now()
            if self._spent(now) >= self.timeout_s or self.clock.wall() >= WALL_BACKSTOP * self.timeout_s:
                self.timed_out = True
                self._kill()
                return False
            if self._cell_start is None:
                return True
            in_cell = now - self._cell_start
            wall_in_cell = self.clock.wall() - self._cell_wall
            if in_cell >= self._next_interrupt or wall_in_cell >= WALL_BACKSTOP * self._next_interrupt:
                self._interrupted = True
                self._next_interrupt += self._cell_limit  # again, if the cell goes on
                self._interrupt()
            return True

    def run(self) -> None:
        while not self._halt.wait(POLL_S) and self.check():
            pass


@dataclasses.dataclass
class Run:
    """What happened while the notebook and the harness ran."""

    finished: bool = False  # the harness cell ran to its end
    timed_out: bool = False
    died: bool = False
    died_in: str = ""  # "cell 5 (`os._exit(1)`)" or "harness"
    exit_info: str = ""
    cell_errors: list = dataclasses.field(default_factory=list)  # (index, ename, evalue)
    interrupted: list = dataclasses.field(default_factory=list)  # cell indices
    harness_error: str = ""
    kernel_seconds: float = 0.0  # the kernel time the cells and the harness took
    exact_clock: bool = True  # False: the limits were measured on the wall clock
    #: Where the wall-clock time went, in seconds, by stage (:data:`STAGES`; a stage
    #: that never began is absent). Reported, never used to decide anything.
    timings: dict = dataclasses.field(default_factory=dict)


#: The stages of :func:`execute`, in order: starting the kernel (until it answers),
#: the notebook's cells, the harness cell, and stopping the kernel.
STAGES = ("kernel_start", "notebook", "harness", "kernel_stop")


def signal_name(code: int | None) -> str:
    """``"exit code 3"``, ``"killed by signal SIGSEGV"``, or ``""``."""
    if code is None:
        return ""
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def short(text: str, n: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip() and not line.strip().startswith("#"):
            return short(line.strip(), 60)
    return ""


def harness_limit(jobs_data: list) -> float:
    """The harness cell's limit in kernel time: the exercises' own limits, plus a margin."""
    return sum(float(j["run"].get("time_limit_s", 0.0)) for j in jobs_data) + HARNESS_MARGIN_S


def execute(nb, scratch: pathlib.Path, jobs_data: list, options: GradeOptions, marker: str,
            spec_dirs: pathlib.Path) -> tuple[Run, str]:
    """Run the notebook, then the harness, in one fresh kernel. Returns the run and the results' prefix."""
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

    run = Run()
    lap = {"stage": STAGES[0], "since": time.monotonic()}

    def next_stage(stage: str | None) -> None:
        """The wall time since the last call goes to the stage in progress; ``stage`` begins."""
        now = time.monotonic()
        done = lap["stage"]
        run.timings[done] = run.timings.get(done, 0.0) + now - lap["since"]
        lap["stage"], lap["since"] = stage or done, now

    work, grader = scratch / "work", scratch / "grader"
    km = AsyncKernelManager(kernel_name=sandbox.KERNEL_NAME,
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_dirs)]))
    km.connection_file = str(grader / "connection.json")
    # Unix sockets in the scratch folder rather than TCP ports: nothing listens
    # on the network, and parallel kernels cannot race for the same port.
    km.transport = "ipc"
    km.ip = str(grader / "kernel-ipc")
    # No nbclient time limit: the watchdog enforces them, in kernel time.
    client = QuietClient(
        nb, km=km, timeout=None, startup_timeout=int(options.startup_timeout_s), allow_errors=True,
        interrupt_on_timeout=False, shutdown_kernel="immediate", store_widget_state=False,
        record_timing=False, resources={"metadata": {"path": str(work)}},
    )
    replies: dict[int, dict] = {}

    def on_executed(cell, cell_index, execute_reply):
        replies[cell_index] = (execute_reply or {}).get("content", {})

    client.on_cell_executed = on_executed
    state = {"pgid": None, "stage": ""}
    killed = threading.Event()

    def interrupt() -> None:
        if state["pgid"]:
            with contextlib.suppress(OSError):
                os.killpg(state["pgid"], signal.SIGINT)

    def kill_kernel() -> None:
        killed.set()
        if state["pgid"]:
            with contextlib.suppress(OSError):
                os.killpg(state["pgid"], signal.SIGKILL)
        sandbox.kill_marked(marker)

    def run_cell(cell, index: int, limit_s: float) -> tuple[dict, bool]:
        watchdog.start_cell(limit_s)
        try:
            client.execute_cell(cell, index)
        finally:
            interrupted = watchdog.end_cell()
        return replies.get(index, {}), interrupted

    out_prefix = ""
    watchdog = None
    stderr = open(grader / "kernel-stderr.txt", "wb")  # noqa: SIM115 - closed below
    env = sandbox.kernel_env(scratch, marker, options.memory_mb, options.file_mb)
    try:
        with client.setup_kernel(env=env, cwd=str(work), stdout=subprocess.DEVNULL, stderr=stderr):
            prov = km.provisioner
            pid = getattr(prov, "pid", None)
            state["pgid"] = getattr(prov, "pgid", None) or pid
            clock = KernelClock(pid or 0)
            run.exact_clock = clock.exact
            watchdog = Watchdog(clock, options.timeout_s, interrupt, kill_kernel)
            watchdog.start()
            next_stage("notebook")  # the kernel has answered (nbclient waited for it)
            try:
                for index, cell in enumerate(list(nb.cells)):
                    if cell.cell_type != "code" or not cell.source.strip():
                        continue
                    state["stage"] = f"cell {index + 1} (`{first_line(cell.source)}`)"
                    reply, interrupted = run_cell(cell, index, options.cell_timeout_s)
                    if reply.get("status") == REPLY_ERROR:
                        ename = str(reply.get("ename", "Error"))[:80]
                        evalue = short(str(reply.get("evalue", "")), 120)
                        if ename == "KeyboardInterrupt" and interrupted:
                            run.interrupted.append(index)
                        else:
                            run.cell_errors.append((index, ename, evalue))
                    if killed.is_set():
                        break
                next_stage("harness")
                if not killed.is_set():
                    # The cases exist on disk only from now on, under a random name.
                    token = secrets.token_hex(16)
                    cases_path = grader / f"{token}-cases.pt"
                    out_prefix = str(grader / f"{token}-out-")
                    torch.save(jobs_data, cases_path)
                    source = harness.cell_source(core_path(), str(cases_path), out_prefix)
                    cell = nbformat.v4.new_code_cell(source)
                    nb.cells.append(cell)
                    state["stage"] = HARNESS_STAGE
                    reply, _ = run_cell(cell, len(nb.cells) - 1, harness_limit(jobs_data))
                    if reply.get("status") == REPLY_ERROR:
                        error = f"{reply.get('ename', '')}: {reply.get('evalue', '')}"
                        run.harness_error = short(error, 200)
                    else:
                        run.finished = not killed.is_set()
                next_stage("kernel_stop")
            except DeadKernelError:
                run.died = True
                run.died_in = state["stage"]
            if killed.is_set() and not run.finished:
                run.died, run.died_in = True, state["stage"]
            # Record how the kernel ended before it is shut down.
            proc = getattr(km.provisioner, "process", None)
            if run.died and proc is not None:
                with contextlib.suppress(Exception):
                    proc.wait(timeout=30)
                    run.exit_info = signal_name(proc.poll())
    except Exception as exc:
        if state["pgid"] is None:  # the kernel never started: the grader's problem
            tail = ""
            with contextlib.suppress(OSError):
                stderr.flush()
                tail = (grader / "kernel-stderr.txt").read_bytes()[-600:].decode("utf-8", "replace")
            raise RuntimeError(f"the kernel could not start ({type(exc).__name__}: {exc}). "
                               f"Its error output ends with: {short(tail, 600)}") from exc
        if not isinstance(exc, DeadKernelError):
            raise
        run.died = True
        run.died_in = run.died_in or state["stage"]
    finally:
        next_stage("kernel_stop")  # the stage in progress ends; stopping the kernel begins
        if watchdog is not None:
            watchdog.stop()
            watchdog.join()
            run.timed_out = watchdog.timed_out
            run.kernel_seconds = watchdog.used
        kill_kernel()
        stderr.close()
        next_stage(None)
    return run, out_prefix


def core_path() -> str:
    """The file of the check machinery, which the harness loads afresh in the kernel."""
    from ..exercises import core

    return str(pathlib.Path(core.__file__).resolve())
