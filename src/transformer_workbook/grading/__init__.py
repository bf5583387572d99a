"""Grade learners' exercise notebooks: ``python -m transformer_workbook grade``.

How one submission is graded (see ``book/instructors.md`` for the instructor's view):

1. The notebook file is read once (its bytes and SHA-256 are kept) and parsed;
   its chapter comes from the notebook metadata
   (``metadata.transformer_workbook.chapter``), else from the file name
   (:mod:`.submission`, :mod:`.cases`).
2. A scratch folder is made for it (:mod:`.sandbox`): ``work/`` (the kernel's
   working directory, holding a copy of the notebook), ``home/`` (``HOME``),
   ``tmp/`` (``TMPDIR``) and ``grader/`` (the grader's own files).
3. A fresh IPython kernel starts there (:mod:`.kernel`), under a memory limit
   (``RLIMIT_AS``), in its own process group, with a small environment (no
   secrets of the instructor's shell). The notebook runs top to bottom with
   nbclient; a failing cell does not stop it, a cell that runs past the
   per-cell limit is interrupted, and the kernel's process group is killed
   when the whole submission runs past its limit. Both limits count the
   kernel's own time, not the time it waited for a busy CPU, so a grade does
   not depend on the machine's load.
4. Only then are the test cases written (to a file with a random name) and
   one *harness* cell runs in the same kernel (:mod:`.harness`): in a fresh
   namespace, it looks up each exercise's function by name and runs it on the
   cases with :func:`~transformer_workbook.exercises.core.run_cases`, the same
   code the learner's ``check(...)`` uses, and saves the outcomes as plain
   tensors and strings
   (:func:`~transformer_workbook.exercises.core.outcomes_to_payload`).
5. The kernel is killed. The grader loads the outcomes with
   ``torch.load(weights_only=True)`` (no code is unpickled) and judges them in
   its own process with :func:`~transformer_workbook.exercises.core.evaluate`
   (:mod:`.judge`): the reference, the known mistakes and the comparison never
   run in the learner's process, so nothing the notebook redefines (``check``,
   ``torch.allclose``, the package's reference functions...) can change the
   verdict. The message is the very message ``check`` printed for the learner.

Each report also says where the submission's time went (``timings``: starting the
kernel, the notebook, the harness, stopping the kernel, judging, the rest), and the
command line prints the medians (:func:`~.report.format_timings`).

Points live in the exercise registry (:attr:`Exercise.points`); a submission's
score is the sum of the points of its passed exercises. Reports, the cohort
summary and merging shard reports: :mod:`.report`; many submissions and
shards: :mod:`.batch`; the command line: :mod:`.cli`; every status:
:mod:`.statuses`.
"""

from __future__ import annotations

from .batch import expand_paths, grade_many, parse_shard, select_shard, shard_list
from .cases import case_to_data, chapter_exercises, detect_chapter, run_options
from .cli import main, merge_main
from .judge import judge, load_result
from .options import GradeOptions
from .report import (
    TIMING_STAGES,
    ExerciseReport,
    MergeError,
    SubmissionReport,
    cohort_summary,
    format_summary,
    format_table,
    format_timings,
    merge_reports,
    timing_summary,
    to_json,
    write_csv,
    write_summary_figure,
)
from .sandbox import restore_file
from .statuses import (
    FLAGGED,
    GRADED,
    GRADER_ERROR,
    INVALID,
    KERNEL_DIED,
    MISSING,
    NOT_GRADED,
    TIMEOUT,
    UNKNOWN_CHAPTER,
)
from .submission import grade_submission

__all__ = [
    "FLAGGED", "GRADED", "GRADER_ERROR", "INVALID", "KERNEL_DIED", "MISSING", "NOT_GRADED", "TIMEOUT",
    "UNKNOWN_CHAPTER", "TIMING_STAGES", "ExerciseReport", "GradeOptions", "MergeError", "SubmissionReport",
    "case_to_data", "chapter_exercises", "cohort_summary", "detect_chapter", "expand_paths",
    "format_summary", "format_table", "format_timings", "grade_many", "grade_submission", "judge",
    "load_result", "main", "merge_main", "merge_reports", "parse_shard", "restore_file", "run_options",
    "select_shard", "shard_list", "timing_summary", "to_json", "write_csv", "write_summary_figure",
]
