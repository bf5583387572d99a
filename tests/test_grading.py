"""The grader: real solutions get full marks, untouched exercises 0, and every
broken or adversarial submission gets a clear report, no points it did not
earn, and an unmodified file.

Kernels are slow to start, so one `grade` run (the command line, two jobs)
grades every notebook below at once; each test reads its part of the report.
Every test here starts kernels: they are marked `slow` (`pytest -m "not slow"`
skips them; `make test` runs them). The grader's parts without a kernel are
tested in test_grading_units.py.
"""

import csv
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import textwrap
import uuid

import nbformat
import pytest
import torch

from transformer_workbook import grading
from transformer_workbook.__main__ import main as cli_main
from transformer_workbook.exercises import check, get
from transformer_workbook.grading import statuses

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHAPTER = "01_attention"
IDS = ["attention.softmax", "attention.scaled_dot_product_attention", "attention.spot_the_bug"]
# Alice answers every exercise of the chapter, the three above and the W_Q one.
ALICE_IDS = [*IDS, "attention.build_w_q"]
# Small limits keep the run short: a cell is interrupted after 4 s, a notebook
# killed after 30 s, a kernel limited to 2 GiB.
TIMEOUT, CELL_TIMEOUT, MEMORY_MB = 30, 4, 2048
ORPHAN_TAG = f"tw-grader-orphan-{uuid.uuid4().hex}"
REAL = {f"real_{kind}_{i}.ipynb": path
        for kind in ("solutions", "exercises")
        for i, path in enumerate(sorted((ROOT / kind).glob("*.ipynb")))}

SETUP = """\
import math

import torch

from transformer_workbook.exercises import check, hint, solution
"""
SOFTMAX = """\
def softmax(x, dim=-1):
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    return e / e.sum(dim=dim, keepdim=True)
"""
SDPA = """\
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights
"""
WEIGHTS = """\
def attention_weights(q, k):
    scores = q @ k.transpose(1, 2) / math.sqrt(k.size(-1))
    return torch.softmax(scores, dim=-1)
"""
BUILD_W_Q = """\
def build_w_q(x, target):
    d = x.shape[1]
    wanted = x[target]  # (L, d): query i should look like key target[i]
    return 10 * math.sqrt(d) * x.T @ wanted
"""
GOOD = [SETUP, SOFTMAX, SDPA, WEIGHTS]

# Wrong answers, each a known mistake (so the expected message is check's own).
WRONG_SOFTMAX = """\
def softmax(x, dim=-1):
    return x.exp() / x.exp().sum(dim=dim, keepdim=True)
"""
WRONG_SDPA = """\
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights
"""
WRONG_WEIGHTS = """\
def attention_weights(q, k):
    d_k = k.size(1)
    scores = q @ k.transpose(1, 2) / math.sqrt(d_k)
    return torch.softmax(scores, dim=1)
"""

CHEATS = """\
import glob
import os

import torch.testing

import transformer_workbook.attention as A
import transformer_workbook.exercises as E
import transformer_workbook.exercises.core as C

# Everything that compares says "equal"...
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
torch.Tensor.allclose = lambda *a, **k: True
# ...the references are the learner's own functions...
REFS = {"softmax": A.softmax, "scaled_dot_product_attention": A.scaled_dot_product_attention,
        "attention_weights": E.get("attention.spot_the_bug").reference}
A.softmax, A.scaled_dot_product_attention = softmax, scaled_dot_product_attention
for ex in C.REGISTRY.values():
    ex.reference = globals()[ex.target]
    ex.mistakes = []
    ex.call = lambda fn, case: REFS[fn.__name__](*case.args, **case.kwargs)
# ...running a function runs the real reference instead...
_run = C.run_cases
C.run_cases = E.run_cases = lambda fn, cases, call=None, time_limit_s=10: _run(
    REFS.get(getattr(fn, "__name__", ""), fn), cases, call, time_limit_s)
# ...judging always passes, and so does check.
C.evaluate = E.evaluate = lambda ex, cases, outcomes: C.CheckResult(ex.id, "passed", "All good")


def check(*args, **kwargs):
    print("✅ passed. All test cases match the reference. Well done!")


check("attention.softmax", softmax)
print("passed")
print("✅ attention.softmax: passed. All 9 test cases match the reference. Well done!")

# Fake result files wherever a grader might look.
fake = {"id": "attention.softmax", "status": "ran", "module": "__main__",
        "outcomes": C.outcomes_to_payload(_run(REFS["softmax"], E.get("attention.softmax").make_cases(0)))}
for folder in {".", "..", "../grader", os.environ.get("TMPDIR", "."), os.path.expanduser("~")}:
    for name in ("out-0.pt", "results.pt", "outcomes.pt"):
        try:
            torch.save(fake, os.path.join(folder, name))
        except OSError:
            pass
"""

# Learner code that once fooled `check` or made it disagree with the grader:
# a changed default dtype, a forbidden call spelled as a method, a loop that
# swallows every exception, an exception whose str() is not a string.
HOSTILE = {
    "softmax": "def softmax(x, dim=-1):\n    return x.softmax(dim)\n",
    "scaled_dot_product_attention": (
        "def scaled_dot_product_attention(q, k, v, mask=None):\n"
        "    while True:\n        try:\n            q @ k.transpose(-2, -1)\n"
        "        except:\n            pass\n"),
    "attention_weights": (
        "class Weird(Exception):\n    def __str__(self):\n        return ('a', 'tuple')\n\n\n"
        "def attention_weights(q, k):\n    raise Weird()\n"),
}
PACKAGE = "from transformer_workbook.attention import scaled_dot_product_attention, softmax\n"

MESSY_CELLS = [
    SETUP,
    "while True:\n    pass\n",  # interrupted by the per-cell limit, then the notebook goes on
    SOFTMAX,
    "1 / 0\n",
    SDPA,
    "hog = bytearray(3 * 2**30)  # more than the memory limit\n",
    WEIGHTS,
    # writes that stay in the scratch folder
    "import os\nimport tempfile\n\n"
    "open('notes.txt', 'w').write('x')\n"
    "open(os.path.expanduser('~/notes.txt'), 'w').write('x')\n"
    "tempfile.NamedTemporaryFile(delete=False).write(b'x')\n",
    "for i in range(20000):\n    print('flood', i)\n",
    # a child that leaves the kernel's process group
    "import subprocess, sys\n"
    f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', '{ORPHAN_TAG}'],\n"
    "                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n",
    # names the grader's harness must not rely on (but the functions above do not use)
    "open = len = exec = print = getattr = callable = importlib = builtins = None\n"
    "run_cases = Case = os = sys = enumerate = str = tuple = dict = frozenset = None\n"
    "__import__ = _tw_builtins = _tw_harness = USER_NS = CASES_PATH = OUT_PREFIX = None\n",
]


def notebook(cells, chapter=CHAPTER):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(c)) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if chapter:
        nb.metadata["transformer_workbook"] = {"chapter": chapter}
    return nb


def sha(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def submissions(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    """Write every test submission into ``folder``; returns {name: path}."""
    subs = {}

    def add(name, cells=None, chapter=CHAPTER, raw=None, sub=""):
        path = folder / sub / name
        path.parent.mkdir(exist_ok=True)
        if raw is not None:
            path.write_bytes(raw)
        else:
            nbformat.write(notebook(cells, chapter), path)
        subs[name] = path
        return path

    # The real notebooks of every chapter, under names that do not give the chapter away.
    for name, real in REAL.items():
        add(name, raw=real.read_bytes())
    # No metadata: the chapter comes from the file name.
    add(f"alice_{CHAPTER}.ipynb", [*GOOD, BUILD_W_Q], chapter=None)
    add("messy.ipynb", MESSY_CELLS)
    add("cheater.ipynb", [SETUP, WRONG_SOFTMAX, WRONG_SDPA, WRONG_WEIGHTS, CHEATS])
    add("broken.ipynb", [
        SETUP,
        "def softmax(x, dim=-1):\n    hog = bytearray(3 * 2**30)\n    return torch.softmax(x, dim)\n",
        SDPA.replace("def scaled_dot_product_attention(", "def my_attention("),  # renamed
        "def attention_weights(q, k):\n    return q @@ k\n",  # a syntax error
    ])
    add("exits.ipynb", [*GOOD, "import os\nos._exit(3)\n", "print('never')\n"])
    add("segfault.ipynb", [*GOOD, "import ctypes\nctypes.string_at(0)\n"])
    add("dies_in_function.ipynb", [
        SETUP, SOFTMAX, "def scaled_dot_product_attention(q, k, v, mask=None):\n"
        "    import os\n    os._exit(1)\n", WEIGHTS])
    add("endless.ipynb", [
        *GOOD,
        "import time\nwhile True:\n    try:\n        time.sleep(100)\n"
        "    except KeyboardInterrupt:\n        pass\n"])
    add("loops_in_function.ipynb", [
        SETUP, "def softmax(x, dim=-1):\n    while True:\n        pass\n", SDPA, WEIGHTS])
    outside = folder / "outside" / f"{CHAPTER}.ipynb"
    add(outside.name, [*GOOD, f"""\
        import pathlib
        original = pathlib.Path({str(outside)!r})
        (original.parent / "evil.txt").write_text("written by the notebook")
        with open(original, "a") as f:
            f.write("tampered")
        """], sub="outside")
    add("hostile.ipynb", [SETUP, "torch.set_default_dtype(torch.float64)\n", *HOSTILE.values()])
    add("package.ipynb", [SETUP, PACKAGE, WEIGHTS])
    add("garbage.ipynb", raw=b"\x89PNG\r\n\x1a\n not a notebook at all")
    add("not_a_notebook.ipynb", raw=json.dumps({"hello": "world"}).encode())
    add("homework.ipynb", GOOD, chapter=None)  # no metadata, no chapter in the name
    return subs


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    subs = submissions(folder)
    hashes = {name: sha(p) for name, p in subs.items()}
    out = tmp_path_factory.mktemp("out")
    # The slowest first, so that the two jobs finish together.
    order = ["endless.ipynb", "loops_in_function.ipynb"]
    paths = [subs[n] for n in order] + [p for n, p in subs.items() if n not in order]
    cmd = [sys.executable, "-m", "transformer_workbook", "grade", *map(str, paths),
           "--json", str(out / "report.json"), "--csv", str(out / "grades.csv"), "--jobs", "2",
           "--summary", str(out / "summary.png"),
           "--timeout", str(TIMEOUT), "--cell-timeout", str(CELL_TIMEOUT), "--memory", str(MEMORY_MB)]
    # The timeout only keeps a hung grader from hanging the suite (the grader bounds each
    # submission itself); it is generous because the outcome must not depend on load.
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=folder)
    report = json.loads((out / "report.json").read_text())
    by_name = {pathlib.Path(s["path"]).name: s for s in report["submissions"]}
    yield {"proc": proc, "report": report, "by": by_name, "subs": subs, "hashes": hashes, "out": out,
           "csv": list(csv.DictReader((out / "grades.csv").open()))}
    # Never leave the test's escaped child behind, whatever happened.
    for pid in _pids_with(ORPHAN_TAG):
        os.kill(pid, 9)


def _pids_with(tag):
    pids = []
    for d in pathlib.Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if tag.encode() in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def exercises(sub):
    return {e["id"]: e for e in sub["exercises"]}


def expected_message(exercise_id, source, name):
    """What `check` prints in the learner's notebook for this code."""
    ns = {"math": __import__("math"), "torch": torch}
    exec(source, ns)
    return check(exercise_id, ns[name], quiet=True).message


# --------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------


def test_the_command_grades_every_submission_and_exits_0(graded):
    proc = graded["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(graded["report"]["submissions"]) == len(graded["subs"])
    for sub in graded["report"]["submissions"]:
        assert set(sub) >= {"path", "score", "max_score", "status", "exercises"}
        for e in sub["exercises"]:
            assert set(e) >= {"id", "status", "points", "max_points", "message"}
            assert e["message"]
        assert sub["status"] != grading.GRADER_ERROR, sub
        # A table per submission on the terminal.
        assert f"{sub['path']}  [" in proc.stdout


def test_no_submission_file_is_modified(graded):
    for name, path in graded["subs"].items():
        assert sha(path) == graded["hashes"][name], f"{name} was modified"


def test_csv_has_a_row_per_submission_and_a_column_per_exercise(graded):
    rows = {pathlib.Path(r["path"]).name: r for r in graded["csv"]}
    assert set(rows) == {pathlib.Path(s["path"]).name for s in graded["report"]["submissions"]}
    good = rows[f"alice_{CHAPTER}.ipynb"]
    assert [good[i] for i in ALICE_IDS] == ["2", "3", "2", "3"]
    assert good["score"] == good["max_score"] == "10"
    assert rows["homework.ipynb"]["attention.softmax"] == ""


# --------------------------------------------------------------------------
# Good, untouched and wrong submissions
# --------------------------------------------------------------------------


def test_real_solutions_get_full_marks(graded):
    solutions = {n: p for n, p in REAL.items() if n.startswith("real_solutions_")}
    assert any(p.stem == CHAPTER for p in solutions.values())
    for name, path in solutions.items():
        sub = graded["by"][name]
        assert sub["chapter"] == path.stem  # from the notebook's metadata
        assert sub["status"] == "graded", (path.name, sub["message"])
        assert sub["score"] == sub["max_score"] > 0, (path.name, sub["exercises"])
        assert all(e["status"] == "passed" for e in sub["exercises"])


def test_untouched_exercises_score_0_not_attempted(graded):
    exercises_ = {n: p for n, p in REAL.items() if n.startswith("real_exercises_")}
    assert any(p.stem == CHAPTER for p in exercises_.values())
    for name, path in exercises_.items():
        sub = graded["by"][name]
        assert sub["chapter"] == path.stem
        assert sub["status"] == "graded" and sub["score"] == 0 and sub["max_score"] > 0
        assert {e["status"] for e in sub["exercises"]} == {"not attempted"}, (path.name, sub)


def test_points_come_from_the_registry_and_chapter_from_the_file_name(graded):
    sub = graded["by"][f"alice_{CHAPTER}.ipynb"]
    assert sub["chapter"] == CHAPTER and sub["status"] == "graded"
    ex = exercises(sub)
    assert list(ex) == ALICE_IDS
    for i in ALICE_IDS:
        assert ex[i]["status"] == "passed"
        assert ex[i]["points"] == ex[i]["max_points"] == get(i).points
    assert sub["score"] == sum(get(i).points for i in ALICE_IDS)
    assert ex["attention.softmax"]["message"] == expected_message("attention.softmax", SOFTMAX, "softmax")


def test_cheating_gains_nothing(graded):
    """Patched check/allclose/equal/assert_close/references/run_cases, printed
    "passed", fake result files: 0 points, and the grader says why."""
    sub = graded["by"]["cheater.ipynb"]
    assert sub["status"] == "graded" and sub["score"] == 0
    ex = exercises(sub)
    # It replaced torch.allclose & co. with its own functions: both the grader and the
    # learner's own check refuse to judge in a modified torch.
    verdicts = {i: (ex[i]["status"], ex[i]["mistake"]) for i in IDS}
    assert verdicts == {i: ("error", "torch-modified") for i in IDS}
    assert "torch.allclose" in ex["attention.softmax"]["message"]


def _check_in_this_process(exercise_id, source, name, dtype=torch.float32):
    """`check` on ``source`` as a notebook cell defines it (IPython keeps cells' lines for tracebacks)."""
    import linecache

    filename = f"<cell-{abs(hash(source))}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    ns = {"math": __import__("math"), "torch": torch, "__name__": "__main__"}
    exec(compile(source, filename, "exec"), ns)
    torch.set_default_dtype(dtype)
    try:
        return check(exercise_id, ns[name], quiet=True)
    finally:
        torch.set_default_dtype(torch.float32)


def test_the_grader_gives_the_verdict_check_announced(graded):
    """Same cases, same limits, same state rules: the learner's check tells them their grade."""
    sub = graded["by"]["hostile.ipynb"]
    ex = exercises(sub)
    expected = {"attention.softmax": "forbidden-call", "attention.scaled_dot_product_attention": "timeout",
                "attention.spot_the_bug": "exception"}
    for (exercise_id, mistake), name in zip(expected.items(), HOSTILE, strict=True):
        mine = _check_in_this_process(exercise_id, HOSTILE[name], name, torch.float64)
        assert mine.mistake == mistake, mine.message
        assert (ex[exercise_id]["status"], ex[exercise_id]["mistake"]) == (mine.status, mine.mistake)
        if mistake != "timeout":  # (the timeout message is the same; its abandoned-note may differ)
            assert ex[exercise_id]["message"] == mine.message
    assert sub["score"] == 0


def test_the_package_reference_imported_as_is_gets_0_from_both(graded):
    ex = exercises(graded["by"]["package.ipynb"])
    for exercise_id in ("attention.softmax", "attention.scaled_dot_product_attention"):
        mine = _check_in_this_process(exercise_id, PACKAGE, get(exercise_id).target)
        assert mine.mistake == ex[exercise_id]["mistake"] == "uses-package"
        assert ex[exercise_id]["message"] == mine.message and ex[exercise_id]["points"] == 0
    assert ex["attention.spot_the_bug"]["status"] == "passed"


# --------------------------------------------------------------------------
# Broken submissions
# --------------------------------------------------------------------------


def test_missing_renamed_and_failing_functions(graded):
    sub = graded["by"]["broken.ipynb"]
    assert sub["status"] == "graded" and sub["score"] == 0
    ex = exercises(sub)
    assert ex["attention.softmax"]["status"] == "error"  # it hit the memory limit
    assert "MemoryError" in ex["attention.softmax"]["message"]
    sdpa = ex["attention.scaled_dot_product_attention"]
    assert sdpa["status"] == "missing" and "`scaled_dot_product_attention`" in sdpa["message"]
    weights = ex["attention.spot_the_bug"]
    assert weights["status"] == "missing" and "SyntaxError" in weights["message"]


def test_kernel_that_exits_or_crashes(graded):
    for name, how in (("exits.ipynb", "exit code 3"), ("segfault.ipynb", "SIGSEGV")):
        sub = graded["by"][name]
        assert sub["status"] == "kernel died" and sub["score"] == 0, sub
        assert how in sub["message"], sub["message"]
        assert "cell 5" in sub["message"]  # where it died
        assert all(e["status"] == "not graded" for e in sub["exercises"])


def test_kernel_dying_inside_a_function_keeps_the_earlier_grades(graded):
    sub = graded["by"]["dies_in_function.ipynb"]
    assert sub["status"] == "kernel died"
    ex = exercises(sub)
    assert ex["attention.softmax"]["status"] == "passed"
    assert ex["attention.scaled_dot_product_attention"]["status"] == "error"
    assert "died while running `scaled_dot_product_attention`" in (
        ex["attention.scaled_dot_product_attention"]["message"])
    assert ex["attention.spot_the_bug"]["status"] == "not graded"
    assert sub["score"] == 2


def test_endless_loop_hits_the_submission_time_limit(graded):
    sub = graded["by"]["endless.ipynb"]
    assert sub["status"] == "timeout" and sub["score"] == 0
    assert f"{TIMEOUT} s" in sub["message"] and "cell 5" in sub["message"]


def test_endless_loop_inside_a_function_hits_the_check_time_limit(graded):
    sub = graded["by"]["loops_in_function.ipynb"]
    assert sub["status"] == "graded" and sub["score"] == 5
    softmax = exercises(sub)["attention.softmax"]
    assert softmax["status"] == "error" and softmax["mistake"] == "timeout"


def test_a_messy_notebook_is_still_graded(graded):
    """Interrupted loop, exceptions, a memory hog, output flood, writes to
    cwd/HOME/TMPDIR, an escaped child, shadowed builtins: full marks, with notes."""
    sub = graded["by"]["messy.ipynb"]
    assert sub["status"] == "graded", sub["message"]
    assert sub["score"] == 7
    msg = sub["message"]
    assert f"cell 2 ran past the per-cell limit of {CELL_TIMEOUT} s" in msg
    assert "cell 4 raised ZeroDivisionError" in msg
    assert "cell 6 raised MemoryError" in msg and f"{MEMORY_MB} MiB" in msg
    # Its writes stayed in the scratch folder, and its escaped child was killed.
    folder = graded["subs"]["messy.ipynb"].parent
    assert not (folder / "notes.txt").exists()
    assert not _pids_with(ORPHAN_TAG)


def test_writes_outside_the_scratch_folder_are_flagged_and_undone(graded):
    sub = graded["by"][f"{CHAPTER}.ipynb"]
    assert sub["status"] == "flagged" and sub["score"] == 7
    assert "created evil.txt" in sub["message"]
    assert f"changed the submission file {CHAPTER}.ipynb (restored)" in sub["message"]


def test_files_that_are_not_notebooks(graded):
    for name in ("garbage.ipynb", "not_a_notebook.ipynb"):
        sub = graded["by"][name]
        assert sub["status"] == "invalid notebook" and sub["score"] == 0
        assert "not" in sub["message"]
    assert "not JSON" in graded["by"]["garbage.ipynb"]["message"] or "UTF-8" in (
        graded["by"]["garbage.ipynb"]["message"])
    sub = graded["by"]["homework.ipynb"]
    assert sub["status"] == "unknown chapter" and sub["score"] == 0
    assert "--chapter" in sub["message"]


def test_every_status_is_from_the_one_vocabulary(graded):
    for sub in graded["report"]["submissions"]:
        assert sub["status"] in statuses.SUBMISSION_STATUSES
        for e in sub["exercises"]:
            assert e["status"] in statuses.EXERCISE_STATUSES


def test_cohort_summary_in_the_terminal_the_json_and_a_figure(graded):
    summary = graded["report"]["summary"]
    reports = [grading.SubmissionReport.from_json(s) for s in graded["report"]["submissions"]]
    assert summary == grading.cohort_summary(reports)
    assert summary["submissions"] == len(graded["subs"])
    softmax = next(r for r in summary["exercises"] if r["id"] == "attention.softmax")
    chapter_1 = [s for s in graded["report"]["submissions"] if s["chapter"] == CHAPTER]
    assert softmax["submissions"] == len(chapter_1)
    passed = [s for s in chapter_1 if exercises(s)["attention.softmax"]["status"] == "passed"]
    assert softmax["passed"] == len(passed) > 0
    mistakes = {m["mistake"]: m["count"] for m in softmax["mistakes"]}
    assert mistakes["torch-modified"] >= 1  # the cheater's
    assert mistakes["not-attempted"] >= 1  # the exercises notebook handed back as is
    assert grading.format_summary(summary) in graded["proc"].stdout
    png = (graded["out"] / "summary.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


# --------------------------------------------------------------------------
# More kernels
# --------------------------------------------------------------------------


def test_exit_status_is_not_0_when_the_grader_cannot_run(tmp_path, capsys):
    path = tmp_path / "sub.ipynb"
    nbformat.write(notebook(GOOD), path)
    # 1 MiB of address space: the kernel cannot even start.
    assert cli_main(["grade", str(path), "--jobs", "1", "--memory", "1"]) == 1
    assert "grader error" in capsys.readouterr().out


LOOKUP_TABLE = """
from transformer_workbook.exercises import get

_ex = get("attention.softmax")
_table = {c.args[0].numpy().tobytes(): _ex.reference(*c.args, **c.kwargs) for c in _ex.make_cases(_ex.seed)}


def softmax(x, dim=-1):
    return _table[x.numpy().tobytes()].clone()
"""


def test_answers_hard_coded_for_the_practice_cases_fail_with_another_seed(tmp_path):
    path = tmp_path / "01_attention.ipynb"
    nbformat.write(notebook([LOOKUP_TABLE]), path)
    same = grading.grade_submission(path, grading.GradeOptions(timeout_s=120))
    other = grading.grade_submission(path, grading.GradeOptions(timeout_s=120, seed=7))
    softmax_same = next(e for e in same.exercises if e.id == "attention.softmax")
    softmax_other = next(e for e in other.exercises if e.id == "attention.softmax")
    assert softmax_same.status == "passed"  # the practice cases: the table knows them
    assert softmax_other.status == "error" and softmax_other.points == 0
    assert "KeyError" in softmax_other.message


def _grade_cli(args, cwd):
    cmd = [sys.executable, "-m", "transformer_workbook", "grade", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=cwd)


def test_two_shards_merged_give_the_report_of_one_run(tmp_path):
    folder = tmp_path / "class"
    folder.mkdir()
    nbformat.write(notebook(GOOD, chapter=None), folder / f"alice_{CHAPTER}.ipynb")
    nbformat.write(notebook([SETUP, WRONG_SOFTMAX, WRONG_SDPA, WRONG_WEIGHTS]), folder / "bob.ipynb")
    (folder / "carol.ipynb").write_bytes((ROOT / "exercises" / "02_multi_head_attention.ipynb").read_bytes())
    (folder / "dave.ipynb").write_bytes(b"not a notebook")
    limits = ["--timeout", TIMEOUT, "--cell-timeout", CELL_TIMEOUT, "--memory", MEMORY_MB, "--jobs", "2"]
    once = _grade_cli([folder, "--json", tmp_path / "once.json", "--csv", tmp_path / "once.csv", *limits],
                      tmp_path)
    assert once.returncode == 0, once.stderr[-2000:]
    files = sorted(folder.iterdir(), reverse=True)  # another order than the folder's: same shards
    for k in (1, 2):
        proc = _grade_cli([*files, "--shard", f"{k}/2", "--json", tmp_path / f"shard{k}.json", *limits],
                          tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"shard {k}/2: 2 of 4 submission(s)" in proc.stderr
    merged = _grade_cli(["merge", tmp_path / "shard2.json", tmp_path / "shard1.json",
                         "--json", tmp_path / "all.json", "--csv", tmp_path / "all.csv",
                         "--summary", tmp_path / "all.png"], tmp_path)
    assert merged.returncode == 0, merged.stderr
    one = json.loads((tmp_path / "once.json").read_text())
    all_ = json.loads((tmp_path / "all.json").read_text())

    def timeless(doc):
        return [{k: v for k, v in s.items() if k not in ("seconds", "timings")} for s in doc["submissions"]]

    assert len(one["submissions"]) == 4
    assert timeless(all_) == timeless(one)
    assert all_["summary"] == one["summary"]
    assert (tmp_path / "all.csv").read_text() == (tmp_path / "once.csv").read_text()
    assert (tmp_path / "all.png").read_bytes()[:4] == b"\x89PNG"
    # A shard given twice, or a shard missing, is refused.
    twice = _grade_cli(["merge", tmp_path / "shard1.json", tmp_path / "shard1.json"], tmp_path)
    assert twice.returncode == 2 and "are both shard 1/2" in twice.stderr
    alone = _grade_cli(["merge", tmp_path / "shard1.json"], tmp_path)
    assert alone.returncode == 2 and "shard(s) 2/2 missing" in alone.stderr
