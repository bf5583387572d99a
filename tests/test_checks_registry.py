"""Every registered exercise, present and future, meets the check contract.

- the reference passes, on the notebook's seed and on others (judged as the
  grader judges it; handed in as is, it is refused: see below);
- every known mistake is diagnosed as itself (so no two are confused, and none
  agrees with the reference), with its own message;
- an untouched stub reports "not attempted";
- the package's own reference handed in (as is, through an alias, or as a
  subclass) is refused by ``check`` with the grader's verdict;
- each exercise has hints, positive points, declared outputs where it returns
  a tuple, and a chapter with a solutions notebook.

Chapter test files (test_checks_attention.py, ...) add hand-written
learner-style wrong answers on top of this.
"""

import pathlib

import pytest

from transformer_workbook.exercises import CHAPTER_MODULES, all_exercises, check, evaluate, get, run_cases
from transformer_workbook.exercises.core import default_call

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXERCISES = [ex.id for ex in all_exercises()]


def verdict(ex, fn, seed=None):
    """The verdict on ``fn`` with no rule about what it calls (mistakes reuse the reference's parts)."""
    cases = ex.cases(seed)
    options = {**ex.run_options(), "forbidden": ()}
    return evaluate(ex, cases, run_cases(fn, cases, call=ex.call, **options))


@pytest.mark.parametrize("exercise_id", EXERCISES)
@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_reference_passes(exercise_id, seed):
    ex = get(exercise_id)
    res = verdict(ex, ex.reference, seed)
    assert res.passed and res.status == "passed", res.message
    assert res.cases_passed == res.cases_total == len(ex.cases(seed))


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_the_package_reference_handed_in_is_refused(exercise_id):
    ex = get(exercise_id)
    res = check(exercise_id, ex.reference, quiet=True)
    assert res.status == "failed" and res.mistake == "uses-package", res.message
    assert ex.reference_name in res.message
    if isinstance(ex.reference, type):  # a subclass of the package's module is the package's code too
        subclass = type(ex.target, (ex.reference,), {})
        assert check(exercise_id, subclass, quiet=True).mistake == "uses-package"
    else:  # so is a one-line wrapper around it
        def wrapper(*args, **kwargs):
            return ex.reference(*args, **kwargs)

        assert check(exercise_id, wrapper, quiet=True).mistake == "uses-package"


def _mistakes():
    for eid in EXERCISES:
        for index, m in enumerate(get(eid).mistakes):
            yield pytest.param(eid, index, id=f"{eid}:{index}:{m.id}")


@pytest.mark.parametrize("exercise_id,index", list(_mistakes()))
def test_each_mistake_is_diagnosed_as_itself(exercise_id, index):
    ex = get(exercise_id)
    mistake = ex.mistakes[index]
    res = verdict(ex, mistake.implementation)
    assert res.status == "failed"
    assert res.mistake == mistake.id, f"diagnosed as {res.mistake}: {res.message}"
    assert res.message == mistake.message
    assert res.cases_passed < res.cases_total


@pytest.mark.parametrize("exercise_id,index", list(_mistakes()))
def test_each_mistake_is_diagnosed_on_the_graders_other_seeds(exercise_id, index):
    """`grade --seed N` draws other cases: the diagnoses must not depend on the seed."""
    ex = get(exercise_id)
    mistake = ex.mistakes[index]
    for seed in (1, 7):
        assert verdict(ex, mistake.implementation, seed).mistake == mistake.id, seed


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_untouched_stub_is_not_attempted(exercise_id):
    def stub(*args, **kwargs):
        raise NotImplementedError("Replace this line with your code.")

    ex = get(exercise_id)
    if isinstance(ex.reference, type):  # a class exercise: the learner's class stub
        stub = type(ex.target, (ex.reference.__mro__[1],), {"__init__": stub})
    res = check(exercise_id, stub, quiet=True)
    assert res.status == "not attempted" and not res.passed


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_exercise_metadata(exercise_id):
    ex = get(exercise_id)
    module = ex.id.split(".")[0]
    assert module in CHAPTER_MODULES, f"{ex.id}: its prefix is not a chapter's exercise module"
    assert ex.make_cases.__module__ == f"transformer_workbook.exercises.{module}", (
        f"{ex.id} must be registered by transformer_workbook/exercises/{module}.py"
    )
    assert ex.points > 0 and ex.hints and ex.title and ex.target.isidentifier()
    assert (ROOT / "solutions" / f"{ex.chapter}.ipynb").exists(), f"no solutions notebook for {ex.chapter}"
    assert len({m.message for m in ex.mistakes}) == len(ex.mistakes), "each mistake says something else"
    for m in ex.mistakes:
        assert m.message.strip() and m.id.strip()
    out = (ex.call or default_call)(ex.reference, ex.cases()[0])
    if isinstance(out, tuple):
        assert len(ex.outputs) == len(out), f"{ex.id} returns a tuple: name its items in `outputs`"
