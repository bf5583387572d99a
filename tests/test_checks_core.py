"""The check machinery: bad learner code gets a clear message, never a crash."""

import time

import pytest
import torch

from transformer_workbook.exercises import (
    check,
    evaluate,
    get,
    outcomes_from_payload,
    outcomes_to_payload,
    run_cases,
)
from transformer_workbook.exercises.core import Outcome


def good_softmax(x, dim=-1):
    return torch.softmax(x, dim=dim)


def run(fn, exercise_id="attention.softmax"):
    return check(exercise_id, fn, quiet=True)


def test_stub_is_not_attempted():
    def softmax(x, dim=-1):
        raise NotImplementedError("Replace this line with your code.")

    res = run(softmax)
    assert res.status == "not attempted" and not res.passed
    assert "NotImplementedError" in res.message


def test_exception_names_the_error_and_the_line():
    def softmax(x, dim=-1):
        y = x.exp()
        return y / y.sum(dim=dim, keepdims=True, nonsense=1)

    res = run(softmax)
    assert res.status == "error"
    assert "TypeError" in res.message
    assert "nonsense=1" in res.message, "the failing line of the learner's code is quoted"


def test_none_is_explained():
    res = run(lambda x, dim=-1: None)
    assert res.status == "failed" and res.mistake == "returned-none"
    assert "return" in res.message


def test_wrong_shape_is_explained():
    res = run(lambda x, dim=-1: good_softmax(x, dim).sum(dim))
    assert res.mistake == "wrong-shape"
    assert "shape" in res.message


def test_wrong_dtype_is_explained():
    res = run(lambda x, dim=-1: good_softmax(x, dim).float())
    assert res.mistake == "wrong-dtype"
    assert "float64" in res.message


def test_nan_is_explained():
    def softmax(x, dim=-1):
        out = good_softmax(x, dim).clone()
        out.view(-1)[0] = float("nan")
        return out

    res = run(softmax)
    assert res.mistake == "not-finite" and "NaN" in res.message


def test_wrong_type_is_explained():
    res = run(lambda x, dim=-1: good_softmax(x, dim).numpy())
    assert res.mistake == "wrong-type"
    assert "numpy" in res.message


def test_in_place_modification_is_caught_even_when_the_output_is_right():
    def softmax(x, dim=-1):
        x -= x.amax(dim=dim, keepdim=True)
        return good_softmax(x, dim)

    res = run(softmax)
    assert res.mistake == "modifies-input" and "in place" in res.message


def test_endless_loop_is_stopped_with_a_message():
    ex = get("attention.softmax")
    limit = ex.time_limit_s
    ex.time_limit_s = 0.5
    try:

        def softmax(x, dim=-1):
            while True:
                try:
                    pass
                except Exception:  # a learner's catch-all cannot swallow the time limit
                    pass

        start = time.monotonic()
        res = run(softmax)
        assert time.monotonic() - start < 5
    finally:
        ex.time_limit_s = limit
    assert res.status == "error" and res.mistake == "timeout"
    assert "time limit" in res.message


def test_endless_loop_outside_the_main_thread_is_stopped_too():
    import threading

    box = {}

    def softmax(x, dim=-1):
        while True:
            pass

    def worker():
        ex = get("attention.softmax")
        cases = ex.make_cases(0)
        box["outcomes"] = run_cases(softmax, cases, time_limit_s=0.3)

    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    assert not t.is_alive()
    assert box["outcomes"][0].kind == "timeout"
    assert all(o.kind == "not_run" for o in box["outcomes"][1:])


def test_passing_something_not_callable():
    res = check("attention.softmax", None, quiet=True)
    assert res.mistake == "not-callable" and res.status == "failed"


def test_unknown_exercise_lists_the_known_ones():
    with pytest.raises(KeyError, match="attention.softmax"):
        check("attention.sofmax", good_softmax)


def test_check_prints_feedback(capsys):
    res = check("attention.softmax", good_softmax)
    out = capsys.readouterr().out
    assert "passed" in out and res.passed


def test_payload_round_trip_through_weights_only_load(tmp_path):
    ex = get("attention.scaled_dot_product_attention")
    cases = ex.make_cases(0)

    def weird(q, k, v, mask=None):
        out, w = ex.reference(q, k, v, mask)
        return out, w, {"extra": 1}, None

    for fn in (ex.reference, weird, lambda *a, **k: 1 / 0):
        outcomes = run_cases(fn, cases)
        path = tmp_path / "o.pt"
        torch.save(outcomes_to_payload(outcomes), path)
        back = outcomes_from_payload(torch.load(path, weights_only=True))
        assert evaluate(ex, cases, back).status == evaluate(ex, cases, outcomes).status


@pytest.mark.parametrize("payload", [None, "passed", [{"kind": "value"}] * 2, [{"kind": "hacked"}]])
def test_malformed_outcomes_are_an_error_not_a_crash(payload):
    ex = get("attention.softmax")
    cases = ex.make_cases(0)
    try:
        outcomes = outcomes_from_payload(payload)
    except ValueError:
        return
    res = evaluate(ex, cases, outcomes)
    assert res.status in ("error", "failed") and not res.passed


def test_outcomes_are_detached_copies():
    """The learner cannot change a result after returning it (e.g. via a view)."""
    kept = {}

    def softmax(x, dim=-1):
        out = good_softmax(x, dim)
        kept.setdefault("out", out)
        return out

    ex = get("attention.softmax")
    cases = ex.make_cases(0)
    outcomes = run_cases(softmax, cases)
    kept["out"].fill_(0.0)
    assert isinstance(outcomes[0], Outcome)
    assert evaluate(ex, cases, outcomes).passed
