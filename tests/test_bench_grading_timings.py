"""The grader's report says where a submission's time went (used by `make bench`).

The fast tests build reports by hand; the one marked ``slow`` grades a real
notebook in a kernel and checks that the stages add up to the submission's time.
No assertion here depends on how fast anything ran.
"""

import json
import pathlib
import shutil

import pytest

from transformer_workbook import grading
from transformer_workbook.grading import SubmissionReport

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _report(path, seconds, **timings):
    return SubmissionReport(path, grading.GRADED, seconds=seconds, timings=dict(timings))


def test_timings_read_back_from_the_json_report():
    rep = _report("a.ipynb", 3.0, kernel_start=1.0, notebook=1.5, harness=0.25, judging=0.125, other=0.125)
    back = SubmissionReport.from_json(json.loads(json.dumps(rep.to_json())))
    assert back.timings == rep.timings
    assert list(rep.to_json()["timings"]) == ["kernel_start", "notebook", "harness", "judging", "other"]


def test_a_report_without_timings_still_reads_back():
    """Reports written before the breakdown existed (merged with newer ones) have no timings."""
    data = _report("a.ipynb", 1.0).to_json()
    del data["timings"]
    assert SubmissionReport.from_json(data).timings == {}


def test_timing_summary_is_the_median_of_each_stage():
    reports = [
        _report("a", 4.0, kernel_start=1.0, notebook=2.0, other=1.0),
        _report("b", 6.0, kernel_start=3.0, notebook=2.0, other=1.0),
        _report("c", 8.0, kernel_start=2.0, notebook=5.0, judging=0.5, other=0.5),
    ]
    summary = grading.timing_summary(reports)
    assert summary == {"kernel_start": 2.0, "notebook": 2.0, "judging": 0.5, "other": 1.0, "total": 6.0}
    assert list(summary)[:2] == ["kernel_start", "notebook"]  # the stages' order
    line = grading.format_timings(reports)
    assert line.startswith("Median time per submission: 6.00 s (kernel start 2.00 s, notebook 2.00 s")
    assert grading.format_timings([]) == ""
    assert grading.timing_summary([]) == {}


def test_a_file_that_is_no_notebook_spends_its_time_in_other(tmp_path):
    bad = tmp_path / "01_attention.ipynb"
    bad.write_bytes(b"not a notebook")
    rep = grading.grade_submission(bad)
    assert rep.status == grading.INVALID
    assert set(rep.timings) == {"other"} and rep.timings["other"] == pytest.approx(rep.seconds)


@pytest.mark.slow
def test_a_graded_notebook_reports_every_stage_and_they_add_up(tmp_path):
    src = ROOT / "solutions" / "01_attention.ipynb"
    sub = tmp_path / "learner" / src.name
    sub.parent.mkdir()
    shutil.copyfile(src, sub)
    rep = grading.grade_many([sub], jobs=1)[0]
    assert rep.status == grading.GRADED and rep.score == rep.max_score > 0
    assert list(rep.timings) == [s for s in grading.TIMING_STAGES if s in rep.timings]
    assert set(rep.timings) == set(grading.TIMING_STAGES)
    assert all(v >= 0 for v in rep.timings.values())
    assert rep.timings["notebook"] > 0 and rep.timings["kernel_start"] > 0 and rep.timings["harness"] > 0
    assert sum(rep.timings.values()) == pytest.approx(rep.seconds, abs=1e-6)
