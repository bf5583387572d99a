"""The grader's options for one run (the ``grade`` command's flags)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class GradeOptions:
    """Limits for one submission, and how its cases are drawn.

    The time limits count the kernel's own time (:class:`.kernel.KernelClock`):
    wall-clock time minus the time the kernel waited for a CPU core that other
    processes held, so a grade does not depend on how busy the machine is. A
    wall-clock backstop of :data:`.kernel.WALL_BACKSTOP` times each limit bounds
    a run on a machine overloaded beyond that.
    """

    timeout_s: float = 300.0  # the notebook's cells plus grading, after the kernel started
    cell_timeout_s: float = 60.0  # one cell; it is interrupted, and the notebook goes on
    memory_mb: int = 4096  # address space of the kernel (and its children)
    file_mb: int = 512  # largest file the kernel may write
    startup_timeout_s: float = 60.0  # wall clock, for the kernel to start and answer
    chapter: str | None = None  # grade every submission as this chapter
    # Draw the cases with this seed instead of each exercise's own (the one the
    # learner's check used), so answers hard-coded for those inputs fail.
    seed: int | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)
