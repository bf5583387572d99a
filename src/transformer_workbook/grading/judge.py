"""From the harness's (untrusted) result files to exercise reports, in the grader's process.

The verdict comes from :func:`~transformer_workbook.exercises.core.evaluate`,
the function ``check`` uses, so the message is the one the learner saw.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Sequence

from . import harness
from .kernel import Run, short
from .options import GradeOptions
from .report import ExerciseReport
from .statuses import ERRORED, FAILED, MISSING, PASSED

MAX_PAYLOAD_BYTES = 64 * 2**20
MAX_NOTES = 8


def load_result(path: pathlib.Path, ex) -> dict | None:
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
    if data.get("status") not in harness.RESULT_STATUSES:
        return None
    return data


def exercise_report(ex, status: str, message: str, mistake: str | None = None) -> ExerciseReport:
    """An exercise's report: its points when it passed, else 0."""
    return ExerciseReport(ex.id, status, ex.points if status == PASSED else 0, ex.points, message, mistake)


def judge(ex, cases, data: dict | None, definer: str) -> ExerciseReport:
    """The verdict on one exercise from the harness's (untrusted) result."""
    from ..exercises import evaluate, outcomes_from_payload

    if data is None:
        return exercise_report(ex, ERRORED, "The grader could not collect the results of "
                               f"`{ex.target}` from the notebook's kernel.", "unreadable")
    if data["status"] == harness.ABSENT:
        msg = (f"The notebook defines no function named `{ex.target}`: keep the name and signature "
               "of the exercise's stub.")
        if definer:
            msg += f" ({definer} should define it, but it raised an error.)"
        return exercise_report(ex, MISSING, msg, "missing")
    if data["status"] == harness.NOT_CALLABLE:
        kind = short(str(data.get("type", "")), 40)
        return exercise_report(ex, FAILED, f"`{ex.target}` is a {kind}, not a function.", "not-callable")
    try:
        outcomes = outcomes_from_payload(data.get("outcomes"))
        result = evaluate(ex, cases, outcomes)
    except Exception:  # noqa: BLE001 - malformed outcomes
        return exercise_report(ex, ERRORED, "The grader could not read the results of "
                               f"`{ex.target}` (malformed data).", "unreadable")
    return exercise_report(ex, result.status, result.message, result.mistake)


def definer_errors(nb, run: Run, targets: Sequence[str]) -> dict[str, str]:
    """For each target, the failing cell that should have defined it ("cell 4, which raised ...")."""
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


def run_notes(run: Run, options: GradeOptions) -> list[str]:
    """The notes on a run: interrupted cells, cells that raised (at most :data:`MAX_NOTES`)."""
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
