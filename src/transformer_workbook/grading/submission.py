"""Grading one submission: read it, make its cases, run it in a fresh kernel,
judge the results, and check what it changed outside its scratch folder.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import secrets
import shutil
import tempfile
import time
import warnings

from .. import chapters as course_chapters
from . import judge, kernel, sandbox
from .cases import chapter_exercises, detect_chapter, make_jobs
from .kernel import short
from .options import GradeOptions
from .report import ExerciseReport, SubmissionReport
from .statuses import (
    ERRORED,
    FLAGGED,
    GRADED,
    GRADER_ERROR,
    INVALID,
    KERNEL_DIED,
    NOT_GRADED,
    TIMEOUT,
    UNKNOWN_CHAPTER,
)


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
                          f"{short(str(exc), 300)}")
        for e in report.exercises:
            if e.status == NOT_GRADED:
                e.message = "Not graded: the grader failed."
    finally:
        if own_root:
            shutil.rmtree(root, ignore_errors=True)
        report.seconds = time.monotonic() - start
        # Whatever no stage accounts for: reading the file, making the cases, the
        # scratch folder, looking for files the notebook changed.
        report.timings["other"] = max(0.0, report.seconds - sum(report.timings.values()))
    return report


def read_notebook(path: pathlib.Path) -> tuple[bytes | None, object, str]:
    """``(bytes, notebook, problem)``: the file read once, parsed; ``problem`` says why it is no notebook."""
    import nbformat

    try:
        data = path.read_bytes() if path.stat().st_size <= sandbox.MAX_NOTEBOOK_BYTES else None
    except OSError as exc:
        return None, None, f"Cannot read the file: {exc.strerror or exc}."
    if data is None:
        return None, None, f"The file is larger than {sandbox.MAX_NOTEBOOK_BYTES // 2**20} MiB."
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
        problem = f"The file is JSON but not a valid Jupyter notebook ({short(str(exc), 160)})."
    return data, nb, problem


def _grade_into(report: SubmissionReport, path: pathlib.Path, options: GradeOptions,
                root: pathlib.Path, shared_folder: bool) -> None:
    chapters = chapter_exercises()

    def set_exercises(exs, message: str) -> None:
        report.max_score = sum(ex.points for ex in exs)
        report.exercises = [ExerciseReport(ex.id, NOT_GRADED, 0, ex.points, message) for ex in exs]

    # 1. Read and parse (the bytes are read once; the file is never written to).
    data, nb, problem = read_notebook(path)
    if data is None:
        report.status, report.message = INVALID, problem
        return
    report.sha256 = hashlib.sha256(data).hexdigest()
    chapter = options.chapter or detect_chapter(nb if not problem else {}, path, course_chapters.slugs())
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
            f"{', '.join(course_chapters.slugs())}. Rename it or pass --chapter."
        )
        return
    set_exercises(exercises, "Not graded.")

    # 2. Cases, made here, in the grader.
    seed = options.seed
    cases = {ex.id: ex.cases(seed) for ex in exercises}  # in torch's default settings
    jobs_data = make_jobs(exercises, cases)

    # 3. Scratch folder and a copy of the notebook.
    scratch = sandbox.make_scratch(root)
    try:
        name = path.name if path.suffix == ".ipynb" else "submission.ipynb"
        (scratch / "work" / name).write_bytes(data)
        folder = path.resolve().parent
        before = sandbox.folder_state(folder)
        marker = secrets.token_hex(12)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        run, out_prefix = kernel.execute(nb, scratch, jobs_data, options, marker,
                                         sandbox.kernel_spec_dir(root))

        report.timings.update(run.timings)

        # 4. Judge, here.
        judging_start = time.monotonic()
        definers = judge.definer_errors(nb, run, [ex.target for ex in exercises])
        notes = judge.run_notes(run, options)
        results: list[ExerciseReport | None] = []
        for i, ex in enumerate(exercises):
            data_i = (judge.load_result(pathlib.Path(f"{out_prefix}{i}.pt"), ex)
                      if out_prefix else None)
            if data_i is None and not run.finished:
                results.append(None)  # the harness never got to it
            else:
                results.append(judge.judge(ex, cases[ex.id], data_i, definers.get(ex.target, "")))
        _set_status(report, run, options, notes)
        not_graded = report.message or "the grader could not run the notebook's functions."
        for i, ex in enumerate(exercises):
            res = results[i]
            if res is None:
                first_missing = i == 0 or results[i - 1] is not None
                if (run.died and not run.timed_out and run.died_in == kernel.HARNESS_STAGE
                        and first_missing):
                    res = judge.exercise_report(
                        ex, ERRORED, f"The kernel died while running `{ex.target}` on the test "
                        "cases (os._exit, a crash in C code, or the memory limit).", "kernel-died")
                else:
                    res = judge.exercise_report(ex, NOT_GRADED, f"Not graded: {not_graded}")
            report.exercises[i] = res
        report.timings["judging"] = time.monotonic() - judging_start

        # 5. Writes outside the scratch folder.
        _flag_changes(report, path, data, folder, before, notes, shared_folder)
        if notes:
            notes_text = "Notes: " + "; ".join(n.rstrip(".") for n in notes) + "."
            report.message = f"{report.message} {notes_text}" if report.message else notes_text
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report.score = sum(e.points for e in report.exercises)


def _set_status(report: SubmissionReport, run: kernel.Run, options: GradeOptions, notes: list) -> None:
    report.status = GRADED
    if run.timed_out:
        report.status = TIMEOUT
        report.message = (f"The notebook did not finish within the limit of {options.timeout_s:g} s "
                          f"(it was running {run.died_in or 'a cell'}), so it was stopped.")
    elif run.died:
        report.status = KERNEL_DIED
        how = f" ({run.exit_info})" if run.exit_info else ""
        where = ("while the grader ran the notebook's functions on the test cases"
                 if run.died_in == kernel.HARNESS_STAGE else f"while running {run.died_in or 'the notebook'}")
        report.message = (f"The kernel died{how} {where}. Typical causes: os._exit(), a crash in "
                          "C code (ctypes, a segmentation fault), or memory use above the limit "
                          f"of {options.memory_mb} MiB.")
    elif not run.finished:
        notes.append(f"the grader's harness failed in the kernel ({run.harness_error})")
    if not run.exact_clock:
        notes.append("the time limits were measured on the wall clock (this system does not report "
                     "the time a process waits for a CPU)")


def _flag_changes(report: SubmissionReport, path: pathlib.Path, data: bytes, folder: pathlib.Path,
                  before: dict, notes: list, shared_folder: bool) -> None:
    changes = sandbox.folder_changes(before, sandbox.folder_state(folder))
    try:
        now = path.read_bytes()
    except OSError:
        now = None
    if now != data:
        try:
            sandbox.restore_file(path, data)
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
