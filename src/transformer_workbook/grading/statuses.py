"""Every status the grader reports, in one place.

An **exercise**'s status is one of ``check``'s own (the constants of
:mod:`transformer_workbook.exercises.judging`), or one of the grader's:
:data:`MISSING` and :data:`NOT_GRADED`. A **submission**'s status is one of
:data:`SUBMISSION_STATUSES`.
"""

from __future__ import annotations

from ..exercises.judging import ERRORED, FAILED, NOT_ATTEMPTED, PASSED

# Exercise statuses: check's own...
__all__ = ["PASSED", "FAILED", "NOT_ATTEMPTED", "ERRORED"]
# ...and the grader's.
MISSING = "missing"  # no function of the expected name in the notebook
NOT_GRADED = "not graded"  # the notebook could not be run far enough to grade it
EXERCISE_STATUSES = (PASSED, FAILED, NOT_ATTEMPTED, ERRORED, MISSING, NOT_GRADED)

# Submission statuses.
GRADED = "graded"  # the notebook ran and every exercise was judged
FLAGGED = "flagged"  # graded, but it changed files outside its scratch folder
TIMEOUT = "timeout"  # ran past the per-submission time limit; killed
KERNEL_DIED = "kernel died"  # the kernel process exited (os._exit, a crash, ...)
INVALID = "invalid notebook"  # not readable, not JSON, or not a notebook
UNKNOWN_CHAPTER = "unknown chapter"  # no chapter in the metadata or the file name
GRADER_ERROR = "grader error"  # the grader itself failed (the only non-zero exit)
SUBMISSION_STATUSES = (GRADED, FLAGGED, TIMEOUT, KERNEL_DIED, INVALID, UNKNOWN_CHAPTER, GRADER_ERROR)

__all__ += ["MISSING", "NOT_GRADED", "EXERCISE_STATUSES", "GRADED", "FLAGGED", "TIMEOUT", "KERNEL_DIED",
            "INVALID", "UNKNOWN_CHAPTER", "GRADER_ERROR", "SUBMISSION_STATUSES"]
