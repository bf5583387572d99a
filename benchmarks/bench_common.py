"""What every benchmark section shares: the machine, the load, timing side by side, summaries.

Timings are wall-clock seconds (``time.perf_counter``). Every figure is a
*median over repeats* with its spread (min and max), and every comparison is
measured *side by side*: the two functions alternate, repeat after repeat, in
an order that swaps each time, so a change in the machine's load hits both and
their ratio holds on another machine better than either time does.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence

ROOT = pathlib.Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------
# The machine and its load
# ---------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` says)."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load() -> list[float]:
    """The load average over 1, 5 and 15 minutes, rounded."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine() -> dict:
    """Everything a figure needs to say where it came from."""
    import torch

    return {
        "cpu": cpu_model(),
        "cores": cores(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
    }


def git_commit() -> str:
    """The checked-out commit (short), with ``+changes`` when the working tree differs from it."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{sha}+changes" if sha and dirty else sha


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds")


# ---------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------


def summary(values: Sequence[float]) -> dict:
    """``{"median", "min", "max", "n"}`` of some repeats (the raw values are not kept)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no values to summarize")
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def spread(s: dict) -> float:
    """The spread of a :func:`summary` relative to its median: ``(max - min) / median``."""
    return (s["max"] - s["min"]) / s["median"] if s["median"] else 0.0


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------


def calibrate(fn: Callable[[], object], min_seconds: float = 0.05, max_number: int = 1000) -> int:
    """How many calls of ``fn`` make one sample of at least ``min_seconds`` (fn runs as a warm-up)."""
    start = time.perf_counter()
    fn()
    one = time.perf_counter() - start
    return max(1, min(max_number, int(min_seconds / max(one, 1e-9)) + 1))


def time_side_by_side(
    fns: dict[str, Callable[[], object]],
    repeats: int = 5,
    min_seconds: float = 0.05,
    warmup: int = 0,
) -> dict[str, list[float]]:
    """Seconds per call of each function, ``repeats`` samples each, taken in alternation.

    Each function first runs once untimed (a warm-up, which also measures it),
    plus ``warmup`` more times. Each sample times ``number`` calls (the same for
    every function, chosen so that the slowest function's sample takes at least
    ``min_seconds``) and divides. Samples alternate between the functions, and
    the order rotates at each repeat, so that neither always runs first (a warm
    cache, a quiet moment). Returns ``{name: [seconds per call, ...]}``.
    """
    names = list(fns)
    number = min(calibrate(fns[name], min_seconds) for name in names)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            fn = fns[name]
            start = time.perf_counter()
            for _ in range(number):
                fn()
            times[name].append((time.perf_counter() - start) / number)
    return times


def compare(ours: list[float], theirs: list[float]) -> dict:
    """Two side-by-side timings as figures: both summaries and the ratio ours / theirs.

    The ratio's median is over the repeats' own ratios (each pair was measured
    back to back), its spread their min and max.
    """
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    return {"ours": summary(ours), "theirs": summary(theirs), "ratio": summary(ratios)}


class Section:
    """Times one section of the benchmark and records the load before and after it."""

    def __init__(self, name: str, command: str):
        self.name, self.command = name, command

    def __enter__(self) -> Section:
        self.load_before = load()
        self.start = time.perf_counter()
        print(f"\n## {self.name}   (load average {self.load_before[:1]})", flush=True)
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start
        self.load_after = load()
        print(f"   {self.name}: {self.seconds:.1f} s (load average {self.load_after[:1]})", flush=True)

    def header(self) -> dict:
        return {"command": self.command, "load_before": self.load_before,
                "load_after": self.load_after, "seconds": round(self.seconds, 2)}
