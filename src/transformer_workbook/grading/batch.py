"""Grading many submissions: folders expanded, shards cut, submissions graded
in parallel, and each submission file put back if any notebook changed it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import multiprocessing
import os
import pathlib
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterable, Sequence

from .cases import chapter_exercises
from .options import GradeOptions
from .report import REPORT_FORMAT, SubmissionReport
from .sandbox import MAX_NOTEBOOK_BYTES, restore_file
from .statuses import GRADER_ERROR
from .submission import grade_submission


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[pathlib.Path]:
    """Files as given; folders become the notebooks under them (checkpoints skipped)."""
    out: list[pathlib.Path] = []
    for p in map(pathlib.Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts)
        else:
            out.append(p)
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` as ``(K, N)`` with ``1 <= K <= N``; ValueError with a message otherwise."""
    k, sep, n = str(text).partition("/")
    try:
        if not sep:
            raise ValueError
        k_, n_ = int(k), int(n)
    except ValueError:
        raise ValueError(f"--shard takes K/N, two whole numbers such as 2/8; got {text!r}") from None
    if n_ < 1 or not 1 <= k_ <= n_:
        raise ValueError(f"--shard K/N needs 1 <= K <= N (K counts from 1); got {text!r}")
    return k_, n_


def shard_list(paths: Sequence[str | os.PathLike]) -> list[pathlib.Path]:
    """The list shards are cut from: the paths as written, without repeats, sorted by their text.

    Sorting makes the list, and so every shard, the same whatever the order
    in which the paths (or folders) were given.
    """
    return [pathlib.Path(p) for p in sorted({str(p) for p in paths})]


def select_shard(paths: Sequence[str | os.PathLike], k: int, n: int) -> list[pathlib.Path]:
    """Shard ``k`` of ``n`` (1-based) of :func:`shard_list`: its items number k, k + n, k + 2n, ...

    Round robin: shard sizes differ by at most one, and a folder's notebooks
    are spread over the shards. Every submission is in exactly one shard.
    """
    return shard_list(paths)[k - 1::n]


def run_header(all_paths: Sequence[str | os.PathLike], graded: int, options: GradeOptions,
               shard: tuple[int, int] | None) -> dict:
    """The JSON report's ``run``: what ``grade merge`` checks before it combines shard reports."""
    from .. import __version__

    listed = [str(p) for p in shard_list(all_paths)]
    return {
        "format": REPORT_FORMAT,
        "grader": f"transformer-workbook {__version__}",
        "options": options.to_json(),
        "exercises": {ex.id: ex.points for exs in chapter_exercises().values() for ex in exs},
        "shard": list(shard) if shard else None,
        "submissions_total": len(listed),
        "submissions_digest": hashlib.sha256("\n".join(listed).encode()).hexdigest(),
        "submissions_graded": graded,
    }


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
