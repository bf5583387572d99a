"""Every registered exercise, present and future, meets the check contract.

- the reference passes, on the notebook's seed and on others;
- every known mistake is diagnosed as itself (so no two are confused, and none
  agrees with the reference), with its own message;
- an untouched stub reports "not attempted";
- each exercise has hints, positive points, and a chapter with a solutions notebook.

Chapter test files (test_checks_attention.py, ...) add hand-written
learner-style wrong answers on top of this.
"""

import pathlib

import pytest

from transformer_workbook.exercises import all_exercises, check, evaluate, get, run_cases

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXERCISES = [ex.id for ex in all_exercises()]


def verdict(ex, fn, seed):
    cases = ex.make_cases(seed)
    return evaluate(ex, cases, run_cases(fn, cases, call=ex.call, time_limit_s=ex.time_limit_s))


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_reference_passes(exercise_id):
    ex = get(exercise_id)
    res = check(exercise_id, ex.reference, quiet=True)
    assert res.passed and res.status == "passed", res.message
    assert res.cases_passed == res.cases_total == len(ex.make_cases(ex.seed))


@pytest.mark.parametrize("exercise_id", EXERCISES)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reference_passes_on_other_seeds(exercise_id, seed):
    ex = get(exercise_id)
    assert verdict(ex, ex.reference, seed).passed


def _mistakes():
    for eid in EXERCISES:
        for index, m in enumerate(get(eid).mistakes):
            yield pytest.param(eid, index, id=f"{eid}:{index}:{m.id}")


@pytest.mark.parametrize("exercise_id,index", list(_mistakes()))
def test_each_mistake_is_diagnosed_as_itself(exercise_id, index):
    ex = get(exercise_id)
    mistake = ex.mistakes[index]
    res = check(exercise_id, mistake.implementation, quiet=True)
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
    assert ex.id.split(".")[0] == ex.reference.__module__.split(".")[-1] or ex.chapter
    assert ex.points > 0 and ex.hints and ex.title and ex.target.isidentifier()
    assert (ROOT / "solutions" / f"{ex.chapter}.ipynb").exists(), f"no solutions notebook for {ex.chapter}"
    for m in ex.mistakes:
        assert m.message.strip() and m.id.strip()
