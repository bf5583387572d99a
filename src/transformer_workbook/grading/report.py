"""Reports: one per submission, the cohort summary, and their outputs
(terminal tables, JSON, CSV gradebook, summary figure); merging shard reports.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import pathlib
from collections.abc import Sequence

from .statuses import EXERCISE_STATUSES, PASSED, SUBMISSION_STATUSES

#: The JSON report's format; ``grade merge`` refuses reports of another format.
REPORT_FORMAT = 2
#: Mistakes shown per exercise in the terminal's cohort summary (the JSON has all).
TOP_MISTAKES = 3
#: Where a submission's time goes (:attr:`SubmissionReport.timings`), in order: starting
#: its kernel (until it answers), running the notebook's cells, running the harness
#: cell (the exercises' functions on the test cases), stopping the kernel, judging the
#: results in the grader's process, and everything else (reading the file, making
#: the cases, the scratch folder, looking for changed files).
TIMING_STAGES = ("kernel_start", "notebook", "harness", "kernel_stop", "judging", "other")


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
    #: Where :attr:`seconds` went, by stage (:data:`TIMING_STAGES`), wall-clock seconds.
    timings: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "score": self.score,
            "max_score": self.max_score,
            "status": self.status,
            "chapter": self.chapter,
            "message": self.message,
            "seconds": round(self.seconds, 2),
            "timings": {k: round(float(v), 3) for k, v in self.timings.items()},
            "sha256": self.sha256,
            "exercises": [dataclasses.asdict(e) for e in self.exercises],
        }

    @classmethod
    def from_json(cls, data: dict) -> SubmissionReport:
        """The report back from :meth:`to_json`'s output; ValueError when it is not one."""
        try:
            exercises = [ExerciseReport(str(e["id"]), str(e["status"]), int(e["points"]),
                                        int(e["max_points"]), str(e["message"]),
                                        None if e.get("mistake") is None else str(e["mistake"]))
                         for e in data["exercises"]]
            rep = cls(str(data["path"]), str(data["status"]), int(data["score"]), int(data["max_score"]),
                      str(data.get("chapter", "")), str(data.get("message", "")), exercises,
                      float(data.get("seconds", 0.0)), str(data.get("sha256", "")),
                      {str(k): float(v) for k, v in dict(data.get("timings") or {}).items()})
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a submission report ({type(exc).__name__}: {exc})") from None
        if rep.status not in SUBMISSION_STATUSES or any(e.status not in EXERCISE_STATUSES for e in exercises):
            raise ValueError(f"unknown status in the report of {rep.path}")
        return rep


# --------------------------------------------------------------------------
# Terminal, JSON, CSV
# --------------------------------------------------------------------------


def _short(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


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


def exercise_order(reports: Sequence[SubmissionReport]) -> list[str]:
    """The exercise ids in the reports: registry order, then any unknown id in order of appearance."""
    from .cases import chapter_exercises

    present = {e.id for r in reports for e in r.exercises}
    ids = [ex.id for exs in chapter_exercises().values() for ex in exs if ex.id in present]
    for r in reports:
        for e in r.exercises:
            if e.id not in ids:
                ids.append(e.id)
    return ids


def timing_summary(reports: Sequence[SubmissionReport]) -> dict[str, float]:
    """The median seconds per submission of each stage of :data:`TIMING_STAGES` (and of the total).

    Over the submissions whose report has the stage; a stage no report has is left out.
    """
    import statistics

    out: dict[str, float] = {}
    for stage in TIMING_STAGES:
        values = [r.timings[stage] for r in reports if stage in r.timings]
        if values:
            out[stage] = statistics.median(values)
    if reports:
        out["total"] = statistics.median(r.seconds for r in reports)
    return out


def format_timings(reports: Sequence[SubmissionReport]) -> str:
    """One line: the median time per submission, by stage (``""`` without reports)."""
    medians = timing_summary(reports)
    if not medians:
        return ""
    stages = ", ".join(f"{stage.replace('_', ' ')} {medians[stage]:.2f} s"
                       for stage in TIMING_STAGES if stage in medians)
    return f"Median time per submission: {medians['total']:.2f} s ({stages})"


def to_json(reports: Sequence[SubmissionReport], run: dict | None = None) -> dict:
    """The JSON report: ``run`` (how it was made), ``submissions`` and the cohort ``summary``."""
    out: dict = {}
    if run is not None:
        out["run"] = run
    out["submissions"] = [r.to_json() for r in reports]
    out["summary"] = cohort_summary(reports)
    return out


def write_csv(reports: Sequence[SubmissionReport], out: io.TextIOBase) -> None:
    """The gradebook: one row per submission, one column of points per exercise."""
    ids = exercise_order(reports)
    writer = csv.writer(out)
    writer.writerow(["path", "chapter", "status", "score", "max_score", *ids])
    for r in reports:
        points = {e.id: e.points for e in r.exercises}
        writer.writerow([r.path, r.chapter, r.status, r.score, r.max_score,
                         *[points.get(i, "") for i in ids]])


# --------------------------------------------------------------------------
# The cohort summary
# --------------------------------------------------------------------------


def cohort_summary(reports: Sequence[SubmissionReport]) -> dict:
    """Per exercise: how many submissions had it, passed it, and their most common mistakes.

    ``{"submissions": n, "statuses": {submission status: count}, "exercises":
    [{"id", "submissions", "passed", "pass_rate", "statuses": {status: count},
    "mistakes": [{"mistake": id, "count": n}, ...]}, ...]}``. An exercise
    counts for every submission whose report lists it (every submission of its
    chapter, whatever happened to it); its mistakes are the ``mistake`` ids of
    the submissions that did not pass it, most common first (ties by id).
    """
    statuses = collections.Counter(r.status for r in reports)
    rows = []
    for ex_id in exercise_order(reports):
        found = [e for r in reports for e in r.exercises if e.id == ex_id]
        passed = sum(e.status == PASSED for e in found)
        mistakes = collections.Counter(e.mistake for e in found if e.status != PASSED and e.mistake)
        rows.append({
            "id": ex_id,
            "submissions": len(found),
            "passed": passed,
            "pass_rate": round(passed / len(found), 4) if found else 0.0,
            "statuses": dict(sorted(collections.Counter(e.status for e in found).items())),
            "mistakes": [{"mistake": m, "count": n}
                         for m, n in sorted(mistakes.items(), key=lambda kv: (-kv[1], kv[0]))],
        })
    return {"submissions": len(reports), "statuses": dict(sorted(statuses.items())), "exercises": rows}


def format_summary(summary: dict, top: int = TOP_MISTAKES) -> str:
    """The cohort summary as a terminal table."""
    rows = summary["exercises"]
    lines = [f"Cohort summary: {summary['submissions']} submission(s)"]
    if not rows:
        return lines[0] + ", no exercise graded."
    idw = max(len("exercise"), *(len(r["id"]) for r in rows))
    lines.append(f"  {'exercise':<{idw}}  {'passed':>13}  most common mistakes")
    for r in rows:
        passed = f"{r['passed']}/{r['submissions']} {100 * r['pass_rate']:3.0f}%"
        shown = ", ".join(f"{m['mistake']} ({m['count']})" for m in r["mistakes"][:top]) or "-"
        more = len(r["mistakes"]) - top
        if more > 0:
            shown += f", {more} more"
        lines.append(f"  {r['id']:<{idw}}  {passed:>13}  {shown}")
    return "\n".join(lines)


def write_summary_figure(summary: dict, path: str | pathlib.Path, top: int = TOP_MISTAKES) -> None:
    """A figure of the cohort summary: pass rate per exercise, its most common mistakes beside it.

    Drawn with matplotlib's Agg backend (no display needed); the format comes
    from the file name (``.png``, ``.pdf``, ``.svg``...).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = summary["exercises"]
    height = 1.2 + 0.45 * max(1, len(rows))
    fig = Figure(figsize=(10, height))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    names = [r["id"] for r in rows]
    rates = [100 * r["pass_rate"] for r in rows]
    ys = list(range(len(rows)))
    ax.barh(ys, [100] * len(rows), color="#eeeeee")
    ax.barh(ys, rates, color="#4c9a5f")
    for y, r in zip(ys, rows, strict=True):
        label = f"{r['passed']}/{r['submissions']}"
        mistakes = ", ".join(f"{m['mistake']} ({m['count']})" for m in r["mistakes"][:top])
        ax.text(1, y, label, va="center", ha="left", fontsize=8)
        if mistakes:
            ax.text(101, y, mistakes, va="center", ha="left", fontsize=8, clip_on=False)
    ax.set_yticks(ys, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("submissions that passed (%); most common mistakes on the right")
    ax.set_title(f"Cohort summary: {summary['submissions']} submission(s)")
    fig.subplots_adjust(left=0.3, right=0.62)
    fig.savefig(path, dpi=120)


# --------------------------------------------------------------------------
# Merging shard reports
# --------------------------------------------------------------------------


class MergeError(ValueError):
    """Reports that cannot be merged; the message says why."""


#: What every report to merge must agree on (keys of its ``run``).
MERGE_SAME = ("grader", "options", "exercises", "submissions_total", "submissions_digest")


def merge_reports(docs: Sequence[tuple[str, dict]]) -> tuple[dict, list[SubmissionReport]]:
    """Combine the JSON reports of the shards of one grading run.

    ``docs`` is ``[(file name, parsed JSON), ...]``. Checked: each is a report
    of this format with its ``run``; they agree on the grader's version, the
    options (seed, limits, chapter), the exercises and their points, and the
    submission list they were cut from (its length and digest); they are the
    shards ``1/N`` to ``N/N`` of one ``N``, each once (or all unsharded); no
    submission appears twice; each shard holds as many submissions as its
    ``run`` says. Returns the merged ``run`` and the submissions, in the order
    of the sharded list (their paths, sorted).
    """
    if not docs:
        raise MergeError("no reports to merge")
    runs = []
    for name, doc in docs:
        run = doc.get("run") if isinstance(doc, dict) else None
        if not isinstance(run, dict) or run.get("format") != REPORT_FORMAT:
            raise MergeError(f"{name} is not a report of `grade --json` (format {REPORT_FORMAT}) "
                             "of this version of the grader")
        runs.append(run)
    first_name, first = docs[0][0], runs[0]
    for (name, _), run in zip(docs[1:], runs[1:], strict=True):
        for key in MERGE_SAME:
            if run.get(key) != first.get(key):
                what = {"grader": "the grader's version", "options": "the options (seed, limits, chapter)",
                        "exercises": "the exercises and their points",
                        "submissions_total": "the number of submissions they were cut from",
                        "submissions_digest": "the list of submissions they were cut from"}[key]
                detail = ""
                if key == "options":
                    diff = sorted(k for k in set(run[key]) | set(first[key])
                                  if run[key].get(k) != first[key].get(k))
                    detail = ": " + ", ".join(f"{k} {first[key].get(k)!r} vs {run[key].get(k)!r}"
                                              for k in diff)
                raise MergeError(f"{first_name} and {name} differ in {what}{detail}; "
                                 "grade every shard with the same command and course version")
    shards = [run.get("shard") for run in runs]
    if any(s is not None for s in shards):
        if any(s is None for s in shards):
            raise MergeError("some reports are shards (--shard) and some are not")
        ns = {s[1] for s in shards}
        if len(ns) != 1:
            raise MergeError(f"the reports are shards of different counts: {sorted(ns)}")
        n = ns.pop()
        seen: dict[int, str] = {}
        for (name, _), (k, _n) in zip(docs, shards, strict=True):
            if k in seen:
                raise MergeError(f"{seen[k]} and {name} are both shard {k}/{n}")
            seen[k] = name
        missing = [k for k in range(1, n + 1) if k not in seen]
        if missing:
            raise MergeError(f"shard(s) {', '.join(f'{k}/{n}' for k in missing)} missing")
    reports, where = [], {}
    for (name, doc), run in zip(docs, runs, strict=True):
        subs = doc.get("submissions")
        if not isinstance(subs, list) or len(subs) != run.get("submissions_graded"):
            raise MergeError(f"{name} does not hold the {run.get('submissions_graded')} submission(s) "
                             "its run says it graded")
        for data in subs:
            try:
                rep = SubmissionReport.from_json(data)
            except ValueError as exc:
                raise MergeError(f"{name}: {exc}") from None
            if rep.path in where:
                raise MergeError(f"{rep.path} is in both {where[rep.path]} and {name}")
            where[rep.path] = name
            reports.append(rep)
    if shards[0] is not None and len(reports) != first.get("submissions_total"):
        raise MergeError(f"the shards hold {len(reports)} submissions, not the "
                         f"{first.get('submissions_total')} they were cut from")
    reports.sort(key=lambda r: r.path)
    run = {k: first[k] for k in MERGE_SAME}
    run.update(format=REPORT_FORMAT, shard=None, submissions_graded=len(reports),
               merged_from=[name for name, _ in docs])
    return run, reports
