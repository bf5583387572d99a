"""The grader's parts that need no kernel: the harness (run here, in this
process, exactly as the kernel cell runs it), the kernel clock and watchdog,
judging untrusted results, reports, the cohort summary, shards and merging.
Fast: none of these tests starts a kernel (those are in test_grading.py).
"""

import ast
import dataclasses
import json
import os
import pathlib

import pytest
import torch

import transformer_workbook.exercises.core as core_module
from transformer_workbook import grading
from transformer_workbook.__main__ import main as cli_main
from transformer_workbook.exercises import check, get
from transformer_workbook.exercises.core import outcomes_to_payload, run_cases
from transformer_workbook.grading import batch, cases, harness, kernel, statuses
from transformer_workbook.grading.report import ExerciseReport, SubmissionReport

CHAPTER = "01_attention"
GRADING = pathlib.Path(grading.__file__).parent


def softmax(x, dim=-1):
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    return e / e.sum(dim=dim, keepdim=True)


def wrong_softmax(x, dim=-1):
    return x.exp() / x.exp().sum(dim=dim, keepdim=True)


# --------------------------------------------------------------------------
# The harness, without a kernel
# --------------------------------------------------------------------------


def _jobs(ids):
    exs = [get(i) for i in ids]
    return exs, {ex.id: ex.make_cases(ex.seed) for ex in exs}


def _run_cell(tmp_path, user_ns, ids):
    """Run the harness cell in ``user_ns`` (standing for the notebook's namespace); its results."""
    exs, made = _jobs(ids)
    cases_path = tmp_path / "cases.pt"
    torch.save(cases.make_jobs(exs, made), cases_path)
    prefix = str(tmp_path / "out-")
    source = harness.cell_source(grading.kernel.core_path(), str(cases_path), prefix)
    exec(compile(source, "<harness cell>", "exec"), user_ns)
    results = [grading.load_result(pathlib.Path(harness.result_path(prefix, i)), ex)
               for i, ex in enumerate(exs)]
    return exs, made, results


def test_the_harness_cell_ignores_names_the_notebook_shadowed(tmp_path):
    user_ns = {"softmax": softmax}
    for name in ("open", "len", "exec", "print", "getattr", "callable", "importlib", "builtins",
                 "run_cases", "Case", "os", "sys", "enumerate", "str", "tuple", "dict", "frozenset",
                 "torch", "run", "run_job", "load_core", "make_case", "save_atomically", "harness",
                 "_TW_ARGS", "_TW_USER_NS", "_tw_builtins"):
        user_ns[name] = None
    exs, made, results = _run_cell(tmp_path, user_ns, ["attention.softmax", "attention.spot_the_bug"])
    verdicts = [grading.judge(ex, made[ex.id], data, "") for ex, data in zip(exs, results, strict=True)]
    assert verdicts[0].status == statuses.PASSED and verdicts[0].points == 2
    assert results[1]["status"] == harness.ABSENT and verdicts[1].status == statuses.MISSING
    # The cell bound nothing in the notebook's namespace but the builtins module.
    assert set(user_ns) - {"softmax", "__builtins__"} == {
        "open", "len", "exec", "print", "getattr", "callable", "importlib", "builtins", "run_cases",
        "Case", "os", "sys", "enumerate", "str", "tuple", "dict", "frozenset", "torch", "run",
        "run_job", "load_core", "make_case", "save_atomically", "harness", "_TW_ARGS", "_TW_USER_NS",
        "_tw_builtins"}
    assert user_ns["_tw_builtins"] is __builtins__ or user_ns["_tw_builtins"].__name__ == "builtins"


def test_the_harness_uses_a_fresh_copy_of_the_check_machinery(tmp_path, monkeypatch):
    def passes(fn, cases_, call=None, time_limit_s=10):
        return run_cases(softmax, cases_, call, time_limit_s)

    with monkeypatch.context() as m:  # what a notebook could do to the imported module
        m.setattr(core_module, "run_cases", passes)
        m.setattr(core_module, "outcomes_to_payload", lambda outcomes: [])
        exs, made, results = _run_cell(tmp_path, {"softmax": wrong_softmax}, ["attention.softmax"])
    verdict = grading.judge(exs[0], made[exs[0].id], results[0], "")
    assert verdict.status == statuses.FAILED and verdict.mistake == "overflow"
    assert "transformer_workbook.exercises._grader_core" not in __import__("sys").modules


def test_the_harness_writes_each_result_before_the_next_exercise_runs(tmp_path):
    def dies(*args, **kwargs):  # stands for os._exit: a real interrupt stops the harness
        import signal
        import time

        signal.raise_signal(signal.SIGINT)  # reaches the main thread, which run_cases passes on
        time.sleep(5)

    ns = {"softmax": softmax, "scaled_dot_product_attention": dies}
    with pytest.raises(KeyboardInterrupt):
        _run_cell(tmp_path, ns, ["attention.softmax", "attention.scaled_dot_product_attention"])
    assert sorted(p.name for p in tmp_path.glob("out-*")) == ["out-0.pt"]  # no half-written file
    ex = get("attention.softmax")
    assert grading.load_result(tmp_path / "out-0.pt", ex)["status"] == harness.RAN


def test_the_harness_passes_the_grader_run_options_through(tmp_path):
    class Core:
        Case = core_module.Case
        outcomes_to_payload = staticmethod(outcomes_to_payload)

        @staticmethod
        def run_cases(fn, cases_, call=None, **options):
            seen.append(options)
            return run_cases(fn, cases_, call)

    seen = []
    exs, made = _jobs(["attention.softmax"])
    job = cases.make_jobs(exs, made)[0]
    job["run"] = {"time_limit_s": 3.0, "an_option_core_will_add": ("torch.softmax",)}
    result = harness.run_job(Core, job, {"softmax": softmax})
    assert seen == [job["run"]] and result["status"] == harness.RAN
    assert cases.make_jobs(exs, made)[0]["run"] == cases.run_options(exs[0]) == exs[0].run_options()
    assert "transformer_workbook.attention.softmax" in exs[0].run_options()["forbidden"]


def test_not_callable_and_cases_of_a_subclass(tmp_path):
    @dataclasses.dataclass
    class Weighted(core_module.Case):
        weights: tuple = ()

    case = Weighted("x", args=(torch.ones(2),), tags=frozenset({"b", "a"}), weights=(1, 2))
    data = cases.case_to_data(case)
    assert data["frozensets"] == ["tags"] and data["fields"]["tags"] == ["a", "b"]
    exs, made = _jobs(["attention.softmax"])
    job = cases.make_jobs(exs, made)[0]
    assert harness.run_job(core_module, job, {"softmax": 3})["status"] == harness.NOT_CALLABLE
    rebuilt = harness.make_case(core_module, cases.case_to_data(made[exs[0].id][0]))
    assert type(rebuilt) is core_module.Case and rebuilt.name == made[exs[0].id][0].name


# --------------------------------------------------------------------------
# Judging untrusted results
# --------------------------------------------------------------------------


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize("payload", [
    "not a dict",
    {"id": "attention.softmax", "status": "passed"},
    {"id": "attention.other", "status": "ran", "outcomes": []},
    {"id": "attention.softmax", "status": "ran", "outcomes": _Evil()},
])
def test_malformed_or_malicious_results_are_an_error(tmp_path, payload, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ex = get("attention.softmax")
    path = tmp_path / "out.pt"
    torch.save(payload, path)
    data = grading.load_result(path, ex)
    assert data is None
    assert not (tmp_path / "pwned").exists(), "nothing is unpickled"
    res = grading.judge(ex, ex.make_cases(ex.seed), data, "")
    assert res.status == "error" and res.points == 0


@pytest.mark.parametrize("outcomes", [None, [], [{"kind": "value"}] * 3, [{"kind": "bogus"}] * 9])
def test_outcomes_that_do_not_fit_the_cases_are_an_error(outcomes):
    ex = get("attention.softmax")
    data = {"id": ex.id, "status": "ran", "module": "__main__", "outcomes": outcomes}
    res = grading.judge(ex, ex.make_cases(ex.seed), data, "")
    assert res.status == "error" and res.points == 0


def test_the_package_own_reference_gets_no_points():
    """The harness's run records the call to the package's function; the judge refuses it, as check does."""
    ex = get("attention.softmax")
    made = ex.cases()
    data = {"id": ex.id, "status": "ran", "module": "transformer_workbook.attention",
            "outcomes": outcomes_to_payload(run_cases(ex.reference, made, **ex.run_options()))}
    res = grading.judge(ex, made, data, "")
    assert res.status == "failed" and res.mistake == "uses-package" and res.points == 0
    assert check(ex.id, ex.reference, quiet=True).mistake == res.mistake


def test_detect_chapter():
    chapters = [CHAPTER, "02_multi_head_attention"]
    meta = {"metadata": {"transformer_workbook": {"chapter": CHAPTER}}}
    assert grading.detect_chapter(meta, pathlib.Path("x.ipynb"), chapters) == CHAPTER
    assert grading.detect_chapter({}, pathlib.Path(f"{CHAPTER}.ipynb"), chapters) == CHAPTER
    assert grading.detect_chapter({}, pathlib.Path(f"bob-{CHAPTER}-v2.ipynb"), chapters) == CHAPTER
    assert grading.detect_chapter({}, pathlib.Path("homework.ipynb"), chapters) is None
    bad = {"metadata": {"transformer_workbook": {"chapter": "99_nope"}}}
    assert grading.detect_chapter(bad, pathlib.Path("homework.ipynb"), chapters) is None


def test_no_status_is_spelled_out_outside_the_statuses_module():
    """Statuses are named constants: no status string is compared with, or given to a report,
    in the grader's modules (JSON field names such as "passed" are not statuses)."""
    words = set(statuses.EXERCISE_STATUSES) | set(statuses.SUBMISSION_STATUSES)

    def literals(nodes):
        return [n for n in nodes if isinstance(n, ast.Constant) and n.value in words]

    found = []
    for path in sorted(GRADING.glob("*.py")):
        if path.name == "statuses.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            suspects = []
            if isinstance(node, ast.Compare):
                suspects = literals([node.left, *node.comparators])
                for c in node.comparators:
                    if isinstance(c, (ast.Tuple, ast.List, ast.Set)):
                        suspects += literals(c.elts)
            elif isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name.endswith("Report") or name == "exercise_report":
                    suspects = literals(node.args[:2])
                suspects += literals([k.value for k in node.keywords if k.arg == "status"])
            found += [f"{path.name}:{n.lineno} {n.value!r}" for n in suspects]
    assert not found


# --------------------------------------------------------------------------
# The kernel clock and the watchdog (a fake clock: nothing here waits)
# --------------------------------------------------------------------------


def test_kernel_time_is_wall_time_less_the_wait_for_a_cpu(tmp_path):
    stat = tmp_path / "schedstat"
    stat.write_text("1000 2000000000 7\n")
    clock = kernel.KernelClock(0, schedstat=stat)
    assert clock.exact and clock.waited() == 0
    stat.write_text("5000 5500000000 9\n")
    assert clock.waited() == pytest.approx(3.5)
    stat.unlink()  # the process is gone: its last reading stays
    assert clock.waited() == pytest.approx(3.5)
    assert 0 <= clock.now() <= clock.wall()
    blind = kernel.KernelClock(0, schedstat=tmp_path / "nothing")
    assert not blind.exact and blind.waited() == 0


def test_the_kernel_clock_counts_the_longest_wait_of_any_thread(tmp_path):
    """A check runs the learner's code in a worker thread while the main thread sleeps."""
    tasks = tmp_path / "task"

    def waits(**seconds):
        for tid in list(tasks.iterdir()) if tasks.exists() else []:
            if tid.name not in seconds:
                (tid / "schedstat").unlink()
                tid.rmdir()
        for tid, s in seconds.items():
            (tasks / tid).mkdir(parents=True, exist_ok=True)
            (tasks / tid / "schedstat").write_text(f"1 {int(s * 1e9)} 1\n")

    waits(main=1.0)
    clock = kernel.KernelClock(0, tasks=tasks)
    assert clock.exact and clock.waited() == 0
    waits(main=1.0, worker=3.0)  # a new worker thread waited 3 s for a CPU
    assert clock.waited() == pytest.approx(3.0)
    waits(main=1.0, worker2=2.0)  # it ended; the next one waited 2 s
    assert clock.waited() == pytest.approx(5.0)
    waits(main=1.5, worker2=3.0, omp=1.0)  # side by side: the longest wait, not the sum
    assert clock.waited() == pytest.approx(6.0)
    waits()  # the process is gone: its last reading stays
    assert clock.waited() == pytest.approx(6.0)


def test_a_real_process_has_a_kernel_clock():
    clock = kernel.KernelClock(os.getpid())
    assert clock.exact, "Linux reports /proc/PID/task/TID/schedstat"
    assert 0 <= clock.now() <= clock.wall()


class FakeClock:
    def __init__(self):
        self.kernel = self.wall_s = 0.0

    def now(self):
        return self.kernel

    def wall(self):
        return self.wall_s

    def advance(self, kernel_s, wall_s=None):
        self.kernel += kernel_s
        self.wall_s += kernel_s if wall_s is None else wall_s


def _watchdog(timeout_s=30.0):
    clock, events = FakeClock(), []
    dog = kernel.Watchdog(clock, timeout_s, lambda: events.append("interrupt"), lambda: events.append("kill"))
    return dog, clock, events


def test_a_cell_is_interrupted_after_its_kernel_time_not_its_wall_time():
    dog, clock, events = _watchdog()
    dog.start_cell(4.0)
    clock.advance(3.9, wall_s=20.0)  # a busy machine: 20 s of wall clock, 3.9 s of the kernel's
    assert dog.check() and events == []
    clock.advance(0.2)
    assert dog.check() and events == ["interrupt"]
    assert dog.check() and events == ["interrupt"]  # once per limit...
    clock.advance(4.0)
    assert dog.check() and events == ["interrupt", "interrupt"]  # ...again if the cell goes on
    assert dog.end_cell() is True
    dog.start_cell(4.0)
    clock.advance(1.0)
    assert dog.end_cell() is False
    assert dog.used == pytest.approx(9.1)


def test_the_submission_limit_counts_only_the_cells_kernel_time():
    dog, clock, events = _watchdog(timeout_s=10.0)
    for _ in range(3):
        dog.start_cell(60.0)
        clock.advance(3.0)
        assert dog.check()
        dog.end_cell()
        clock.advance(5.0)  # the grader's own work between cells does not count
    assert events == [] and dog.spent() == pytest.approx(9.0)
    dog.start_cell(60.0)
    clock.advance(1.0)
    assert dog.check() is False and events == ["kill"] and dog.timed_out


def test_the_wall_clock_backstop():
    dog, clock, events = _watchdog(timeout_s=10.0)
    dog.start_cell(60.0)
    clock.advance(0.5, wall_s=kernel.WALL_BACKSTOP * 10.0)
    assert dog.check() is False and events == ["kill"] and dog.timed_out


# --------------------------------------------------------------------------
# Reports and the cohort summary
# --------------------------------------------------------------------------


def _sub(path, status=statuses.GRADED, results=(), chapter=CHAPTER):
    exs = [ExerciseReport(i, s, 2 if s == statuses.PASSED else 0, 2, f"{s}.", m) for i, s, m in results]
    return SubmissionReport(path, status, sum(e.points for e in exs), 2 * len(exs), chapter, "", exs,
                            1.5, "0" * 64)


SM, SDPA = "attention.softmax", "attention.scaled_dot_product_attention"
COHORT = [
    _sub("a.ipynb", results=[(SM, statuses.PASSED, None), (SDPA, statuses.FAILED, "mask-inverted")]),
    _sub("b.ipynb", results=[(SM, statuses.FAILED, "overflow"), (SDPA, statuses.FAILED, "no-scaling")]),
    _sub("c.ipynb", results=[(SM, statuses.FAILED, "overflow"), (SDPA, statuses.FAILED, "mask-inverted")]),
    _sub("d.ipynb", statuses.KERNEL_DIED,
         [(SM, statuses.NOT_GRADED, None), (SDPA, statuses.NOT_GRADED, None)]),
    _sub("e.ipynb", statuses.UNKNOWN_CHAPTER, [], chapter=""),
]


def test_cohort_summary_counts_pass_rates_and_mistakes():
    summary = grading.cohort_summary(COHORT)
    assert summary["submissions"] == 5
    assert summary["statuses"] == {"graded": 3, "kernel died": 1, "unknown chapter": 1}
    sm, sdpa = summary["exercises"]
    assert (sm["id"], sm["submissions"], sm["passed"], sm["pass_rate"]) == (SM, 4, 1, 0.25)
    assert sm["mistakes"] == [{"mistake": "overflow", "count": 2}]
    assert sm["statuses"] == {"failed": 2, "not graded": 1, "passed": 1}
    assert sdpa["passed"] == 0 and sdpa["mistakes"] == [
        {"mistake": "mask-inverted", "count": 2}, {"mistake": "no-scaling", "count": 1}]
    text = grading.format_summary(summary)
    assert "attention.softmax" in text and "1/4  25%" in text and "overflow (2)" in text
    assert "mask-inverted (2), no-scaling (1)" in text
    assert grading.to_json(COHORT)["summary"] == summary


def test_summary_figure(tmp_path):
    grading.write_summary_figure(grading.cohort_summary(COHORT), tmp_path / "summary.png")
    png = (tmp_path / "summary.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    grading.write_summary_figure(grading.cohort_summary([]), tmp_path / "empty.png")
    assert (tmp_path / "empty.png").stat().st_size > 0


def test_a_report_reads_back_from_its_json():
    for sub in COHORT:
        back = SubmissionReport.from_json(json.loads(json.dumps(sub.to_json())))
        assert back == sub
    with pytest.raises(ValueError):
        SubmissionReport.from_json({"path": "x"})
    with pytest.raises(ValueError):
        SubmissionReport.from_json({**COHORT[0].to_json(), "status": "excellent"})


# --------------------------------------------------------------------------
# Shards and merging
# --------------------------------------------------------------------------


PATHS = [f"class/learner{i:02d}/01_attention.ipynb" for i in range(11)]


@pytest.mark.parametrize("n", [1, 2, 3, 11, 12])
def test_shards_cover_every_submission_once_whatever_the_order(n):
    shards = [batch.select_shard(PATHS, k, n) for k in range(1, n + 1)]
    flat = [str(p) for s in shards for p in s]
    assert sorted(flat) == sorted(PATHS) and len(flat) == len(set(flat))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    again = [batch.select_shard(list(reversed(PATHS)) + PATHS[:3], k, n) for k in range(1, n + 1)]
    assert again == shards  # another order, and repeats: the same shards


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "a/b", "2", "", "1/2/3", "-1/2"])
def test_bad_shard_arguments_are_refused(text):
    with pytest.raises(ValueError, match="K/N"):
        batch.parse_shard(text)


def _shard_doc(k, n, subs, **option_changes):
    options = dataclasses.replace(grading.GradeOptions(), **option_changes)
    run = batch.run_header([s.path for s in COHORT], len(subs), options,
                           (k, n) if n else None)
    return {"run": run, "submissions": [s.to_json() for s in subs]}


def test_merge_combines_shards_in_the_order_of_the_sharded_list():
    docs = [("s2.json", _shard_doc(2, 2, [COHORT[3], COHORT[1]])),
            ("s1.json", _shard_doc(1, 2, [COHORT[4], COHORT[0], COHORT[2]]))]
    run, merged = grading.merge_reports(docs)
    assert [r.path for r in merged] == ["a.ipynb", "b.ipynb", "c.ipynb", "d.ipynb", "e.ipynb"]
    assert merged == sorted(COHORT, key=lambda r: r.path)
    assert run["shard"] is None and run["submissions_graded"] == 5
    assert run["merged_from"] == ["s2.json", "s1.json"]


@pytest.mark.parametrize("docs, message", [
    ([("s1", _shard_doc(1, 2, COHORT[:3])), ("s2", _shard_doc(2, 2, COHORT[3:], seed=7))],
     "differ in the options (seed, limits, chapter): seed None vs 7"),
    ([("s1", _shard_doc(1, 2, COHORT[:3])), ("s2", _shard_doc(2, 2, COHORT[3:], timeout_s=60.0))],
     "timeout_s 300.0 vs 60.0"),
    ([("s1", _shard_doc(1, 2, COHORT[:3])), ("again", _shard_doc(1, 2, COHORT[3:]))],
     "s1 and again are both shard 1/2"),
    ([("s1", _shard_doc(1, 3, COHORT[:3])), ("s2", _shard_doc(2, 3, COHORT[3:]))], "shard(s) 3/3 missing"),
    ([("s1", _shard_doc(1, 2, COHORT[:3])), ("s2", _shard_doc(2, 2, COHORT[2:]))],
     "c.ipynb is in both s1 and s2"),
    ([("s1", _shard_doc(1, 2, COHORT[:3])), ("s2", _shard_doc(2, 3, COHORT[3:]))], "different counts"),
    ([("s1", _shard_doc(1, 2, COHORT[:3])), ("whole", _shard_doc(0, 0, COHORT))], "some reports are shards"),
    ([("s1", _shard_doc(1, 2, COHORT[:3])), ("old", {"submissions": []})], "old is not a report"),
])
def test_merge_refuses_what_does_not_belong_together(docs, message):
    with pytest.raises(grading.MergeError) as err:
        grading.merge_reports(docs)
    assert message in str(err.value)


def test_merge_refuses_shards_of_different_submission_lists():
    s1 = _shard_doc(1, 2, COHORT[:3])
    s2 = _shard_doc(2, 2, COHORT[3:])
    s2["run"]["submissions_digest"] = "0" * 64
    with pytest.raises(grading.MergeError, match="the list of submissions"):
        grading.merge_reports([("s1", s1), ("s2", s2)])
    s2 = _shard_doc(2, 2, COHORT[3:])
    s2["run"]["exercises"][SM] = 5
    with pytest.raises(grading.MergeError, match="the exercises and their points"):
        grading.merge_reports([("s1", s1), ("s2", s2)])


def test_merge_command(tmp_path, capsys):
    for name, doc in (("s1.json", _shard_doc(1, 2, COHORT[:3])), ("s2.json", _shard_doc(2, 2, COHORT[3:]))):
        (tmp_path / name).write_text(json.dumps(doc))
    out = tmp_path / "all"
    code = cli_main(["grade", "merge", str(tmp_path / "s1.json"), str(tmp_path / "s2.json"), "--json",
                     f"{out}.json", "--csv", f"{out}.csv", "--summary", f"{out}.png"])
    text = capsys.readouterr().out
    assert code == 0 and "merged 2 report(s): 5 submission(s)" in text and "Cohort summary" in text
    doc = json.loads((tmp_path / "all.json").read_text())
    assert [s["path"] for s in doc["submissions"]] == [r.path for r in COHORT]
    assert doc["summary"] == grading.cohort_summary(COHORT)
    rows = (tmp_path / "all.csv").read_text().splitlines()
    assert rows[0] == f"path,chapter,status,score,max_score,{SM},{SDPA}" and len(rows) == 6
    assert cli_main(["grade", "merge", str(tmp_path / "s1.json")]) == 2
    assert "shard(s) 2/2 missing" in capsys.readouterr().err


def test_grade_merge_is_a_command_and_dot_slash_merge_a_path(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "merge").mkdir()
    (tmp_path / "merge" / "01_attention.ipynb").write_text("{}")
    with pytest.raises(SystemExit):  # the merge command wants reports
        cli_main(["grade", "merge"])
    assert "REPORT.json" in capsys.readouterr().err
    # ./merge is a folder of submissions: graded (here stopped by a bad --shard before any kernel).
    assert cli_main(["grade", "./merge", "--shard", "2/1"]) == 2
    assert "--shard K/N needs 1 <= K <= N" in capsys.readouterr().err


def test_a_folder_stands_for_the_notebooks_under_it(tmp_path):
    for rel in ("alice/01_attention.ipynb", "bob/01_attention.ipynb",
                "bob/.ipynb_checkpoints/01_attention-checkpoint.ipynb", "bob/notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    found = grading.expand_paths([tmp_path, tmp_path / "carol.ipynb"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "alice/01_attention.ipynb", "bob/01_attention.ipynb", "carol.ipynb"]
