"""The check machinery: bad learner code gets a clear message, never a crash, never a hang.

Every wrong answer here is written the way a learner writes it; the test says
what the check must answer.
"""

import math
import signal
import threading
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
from transformer_workbook.exercises.core import Outcome, shorten
from transformer_workbook.exercises.feedback import as_html, as_text


def good_softmax(x, dim=-1):
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    return e / e.sum(dim=dim, keepdim=True)


def run(fn, exercise_id="attention.softmax"):
    return check(exercise_id, fn, quiet=True)


@pytest.fixture
def short_limit():
    """The softmax exercise with a 0.5 s limit (CPU time), restored afterwards."""
    ex = get("attention.softmax")
    limit = ex.time_limit_s
    ex.time_limit_s = 0.5
    yield ex
    ex.time_limit_s = limit


def test_a_right_answer_passes():
    assert run(good_softmax).passed


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


def test_wrong_type_is_explained_with_the_right_article():
    res = run(lambda x, dim=-1: good_softmax(x, dim).numpy())
    assert res.mistake == "wrong-type"
    assert "numpy" in res.message
    res = run(lambda x, dim=-1: 3)
    assert "an int" in res.message and "a int" not in res.message


def test_in_place_modification_is_caught_even_when_the_output_is_right():
    def softmax(x, dim=-1):
        x -= x.amax(dim=dim, keepdim=True)
        return good_softmax(x, dim)

    res = run(softmax)
    assert res.mistake == "modifies-input" and "in place" in res.message


# ---- the time limit holds, whatever the learner's code catches --------------


def _loop_catching(kind):
    def softmax(x, dim=-1):
        while True:
            try:
                good_softmax(x, dim)
            except Exception:  # noqa: BLE001
                pass
            except BaseException:  # noqa: BLE001 - what learners write to "make it run"
                pass

    def nested(x, dim=-1):
        while True:
            try:
                try:
                    good_softmax(x, dim)
                except:  # noqa: E722
                    continue
            except:  # noqa: E722
                pass
            finally:
                pass

    def bare(x, dim=-1):
        while True:
            try:
                x.exp().sum()
            except:  # noqa: E722
                pass

    return {"base": softmax, "nested": nested, "bare": bare}[kind]


@pytest.mark.parametrize("kind", ["base", "nested", "bare"])
def test_an_endless_loop_is_stopped_even_inside_a_bare_except(short_limit, kind):
    start = time.monotonic()
    res = run(_loop_catching(kind))
    assert res.status == "error" and res.mistake == "timeout", res.message
    assert "time limit" in res.message and "CPU time" in res.message
    assert time.monotonic() - start < 60
    assert threading.active_count() == 1 or not any(
        t.name == "transformer-workbook-check" for t in threading.enumerate()
    ), "the learner's loop was stopped, not left behind"


def test_code_that_catches_everything_everywhere_is_left_behind_and_reported(short_limit):
    def softmax(x, dim=-1, depth=0):
        try:
            return softmax(x, dim, depth + 1)
        except:  # noqa: E722
            return softmax(x, dim, depth + 1)

    start = time.monotonic()
    res = run(softmax)
    assert time.monotonic() - start < 60, "check returns all the same"
    assert res.mistake == "timeout"
    assert "restart the kernel" in res.message


def test_an_endless_loop_in_a_thread_of_the_learner_is_stopped_too():
    box = {}

    def softmax(x, dim=-1):
        while True:
            pass

    def worker():
        ex = get("attention.softmax")
        box["outcomes"] = run_cases(softmax, ex.cases(), time_limit_s=0.3)

    t = threading.Thread(target=worker)
    t.start()
    t.join(60)
    assert not t.is_alive()
    assert box["outcomes"][0].kind == "timeout"
    assert all(o.kind == "not_run" for o in box["outcomes"][1:])


def test_a_sleeping_loop_hits_the_wall_clock_backstop():
    def softmax(x, dim=-1):
        while True:
            time.sleep(0.05)

    start = time.monotonic()
    outcomes = run_cases(softmax, get("attention.softmax").cases(), time_limit_s=0.2)
    assert outcomes[0].kind == "timeout"
    assert time.monotonic() - start < 30


def test_the_time_limit_counts_cpu_time_not_the_wall_clock():
    """A busy machine must not change a verdict: time spent waiting for a core does not count."""
    def softmax(x, dim=-1):
        time.sleep(0.3)  # waiting, like a descheduled process: no CPU time
        return good_softmax(x, dim)

    outcomes = run_cases(softmax, get("attention.softmax").cases()[:2], time_limit_s=0.25)
    assert [o.kind for o in outcomes] == ["value", "value"]


def test_a_jupyter_interrupt_is_not_swallowed():
    def softmax(x, dim=-1):
        while True:
            try:
                pass
            except:  # noqa: E722
                pass

    timer = threading.Timer(0.5, signal.raise_signal, args=(signal.SIGINT,))
    timer.start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        check("attention.softmax", softmax, quiet=True)
    assert time.monotonic() - start < 30


def test_a_keyboard_interrupt_raised_by_the_learners_code_is_just_an_error():
    def softmax(x, dim=-1):
        raise KeyboardInterrupt

    assert run(softmax).mistake == "exception"


# ---- check never raises ----------------------------------------------------


class WeirdError(Exception):
    def __str__(self):
        return ("a", "tuple")  # str() of this raises TypeError


class WorseError(Exception):
    def __str__(self):
        raise RuntimeError("no")

    def __repr__(self):
        raise RuntimeError("no")


@pytest.mark.parametrize("exc", [WeirdError, WorseError, SystemExit, GeneratorExit, MemoryError])
def test_check_never_raises_whatever_the_code_raises(exc):
    def softmax(x, dim=-1):
        raise exc()

    res = run(softmax)
    assert res.status == "error" and res.mistake == "exception"
    assert exc.__name__ in res.message


def test_passing_something_not_callable():
    res = check("attention.softmax", None, quiet=True)
    assert res.mistake == "not-callable" and res.status == "failed"


def test_a_misspelled_exercise_id_gets_did_you_mean():
    res = check("attention.sofmax", good_softmax, quiet=True)
    assert res.status == "error" and res.mistake == "unknown-exercise"
    assert "Did you mean 'attention.softmax'?" in res.message
    res = check(42, good_softmax, quiet=True)
    assert res.mistake == "unknown-exercise"


# ---- the learner's global state cannot fool the check ------------------------


@pytest.fixture
def float64_default():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def test_a_float64_default_dtype_does_not_make_wrong_answers_pass(float64_default):
    """With the learner's default dtype float64, the reference still runs in float32."""
    def sdpa(q, k, v, mask=None):  # no scaling: wrong
        scores = q @ k.transpose(-2, -1)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        w = torch.softmax(scores, dim=-1)
        return w @ v, w

    res = check("attention.scaled_dot_product_attention", sdpa, quiet=True)
    assert res.mistake == "no-scaling", res.message


def test_a_float64_default_dtype_does_not_make_right_answers_fail(float64_default):
    res = run(good_softmax)
    assert res.passed, res.message
    assert check("multihead.combine_heads", lambda x: x.transpose(1, 2).flatten(2), quiet=True).passed


def test_a_notebook_default_dtype_that_breaks_the_learners_module_is_named(float64_default):
    """The learner's nn.Linear layers are float64 in their session: the message says why."""
    from torch import nn

    from transformer_workbook.attention import scaled_dot_product_attention
    from transformer_workbook.multihead import combine_heads, split_heads

    class MultiHeadAttention(nn.Module):
        def __init__(self, d_model, n_heads, bias=True):
            super().__init__()
            self.n_heads = n_heads
            self.q_proj = nn.Linear(d_model, d_model, bias=bias)
            self.k_proj = nn.Linear(d_model, d_model, bias=bias)
            self.v_proj = nn.Linear(d_model, d_model, bias=bias)
            self.out_proj = nn.Linear(d_model, d_model, bias=bias)

        def forward(self, query, key, value, mask=None):
            q = split_heads(self.q_proj(query), self.n_heads)
            k = split_heads(self.k_proj(key), self.n_heads)
            v = split_heads(self.v_proj(value), self.n_heads)
            if mask is not None and mask.dim() == 3:
                mask = mask[:, None]
            out, w = scaled_dot_product_attention(q, k, v, mask)
            return self.out_proj(combine_heads(out)), w

    res = check("multihead.MultiHeadAttention", MultiHeadAttention, quiet=True)
    assert not res.passed
    assert "default dtype torch.float64" in res.message
    torch.set_default_dtype(torch.float32)
    assert check("multihead.MultiHeadAttention", MultiHeadAttention, quiet=True).passed


def test_changing_the_default_dtype_inside_the_function_does_not_leak():
    def softmax(x, dim=-1):
        torch.set_default_dtype(torch.float64)
        return good_softmax(x, dim)

    assert run(softmax).passed
    assert torch.get_default_dtype() == torch.float32


def test_replacing_a_torch_function_in_the_notebook_is_refused():
    def fake_exp(x):
        return torch.zeros_like(x)

    fake_exp.__module__ = "__main__"  # as if defined in a notebook cell
    original = torch.exp
    torch.exp = fake_exp
    try:
        res = run(good_softmax)
    finally:
        torch.exp = original
    assert res.status == "error" and res.mistake == "torch-modified"
    assert "torch.exp" in res.message


# ---- what an exercise forbids, however it is spelled ------------------------


def _spellings():
    import torch.nn.functional as F
    from torch import nn

    s = torch.softmax

    return {
        "torch.softmax": lambda x, dim=-1: torch.softmax(x, dim),
        "alias": lambda x, dim=-1: s(x, dim),
        "method": lambda x, dim=-1: x.softmax(dim),
        "functional": lambda x, dim=-1: F.softmax(x, dim=dim),
        "module": lambda x, dim=-1: nn.Softmax(dim=dim)(x),
        "log_softmax": lambda x, dim=-1: torch.log_softmax(x, dim).exp(),
        "getattr": lambda x, dim=-1: getattr(torch, "soft" + "max")(x, dim),
    }


@pytest.mark.parametrize("spelling", list(_spellings()))
def test_a_forbidden_call_is_refused_however_it_is_spelled(spelling):
    res = run(_spellings()[spelling])
    assert res.status == "failed" and res.mistake == "forbidden-call", res.message
    assert "not to use" in res.message


def test_the_package_reference_imported_as_is_is_refused():
    from transformer_workbook.attention import softmax

    res = run(softmax)
    assert res.mistake == "uses-package"
    assert "transformer_workbook.attention.softmax" in res.message


def test_what_another_exercise_allows_is_allowed():
    """Exercise 1.2 may use torch.softmax (the statement says so)."""
    def sdpa(q, k, v, mask=None):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        w = scores.softmax(-1)
        return w @ v, w

    assert check("attention.scaled_dot_product_attention", sdpa, quiet=True).passed


# ---- feedback: one output, wrapped, never cut mid-object --------------------


def test_feedback_has_one_rich_form_and_one_plain_form():
    res = run(lambda x, dim=-1: x.exp() / x.exp().sum(dim=dim, keepdim=True))
    html = as_html(res)
    assert html.startswith('<div class="tw-feedback tw-failed"') and "overflow-wrap:anywhere" in html
    assert "<code>" in html and "hint('attention.softmax')" in html
    text = as_text(res, 60)
    assert all(len(line) <= 60 for line in text.splitlines())
    assert "hint('attention.softmax')" in text
    assert repr(res).startswith("CheckResult(")


def test_check_shows_the_feedback_once_outside_a_notebook(capsys):
    res = check("attention.softmax", good_softmax)
    out = capsys.readouterr().out
    assert "passed" in out and res.passed
    res._ipython_display_()  # already shown: the cell's value adds nothing
    assert capsys.readouterr().out == ""


def test_check_shows_one_display_in_a_kernel(monkeypatch):
    from transformer_workbook.exercises import feedback

    shown = []
    monkeypatch.setattr(feedback, "in_notebook", lambda: True)
    import IPython.display

    monkeypatch.setattr(IPython.display, "publish_display_data", lambda data, **kw: shown.append(data))
    res = check("attention.softmax", good_softmax)
    res._ipython_display_()  # what IPython does with the cell's value
    assert len(shown) == 1
    assert set(shown[0]) == {"text/plain", "text/html"}


@pytest.mark.parametrize("text,limit", [
    ("ValueError: expected tensor([[1., 2., 3.], [4., 5., 6.]]) to be", 30),
    ("a 'quoted string that goes on and on' and more words", 20),
    ("word " * 100, 50),
])
def test_shortened_messages_end_on_a_whole_word_outside_brackets(text, limit):
    short = shorten(text, limit)
    assert len(short) <= limit and short.endswith(" …")
    kept = short[:-2]
    assert kept.count("(") == kept.count(")") and kept.count("[") == kept.count("]")
    assert kept.count("'") % 2 == 0


# ---- shipping outcomes to the grader ---------------------------------------


def test_payload_round_trip_through_weights_only_load(tmp_path):
    ex = get("attention.scaled_dot_product_attention")
    cases = ex.cases()

    def weird(q, k, v, mask=None):
        out, w = ex.reference(q, k, v, mask)
        return out, w, {"extra": 1}, None

    for fn in (ex.reference, weird, lambda *a, **k: 1 / 0):
        outcomes = run_cases(fn, cases, **ex.run_options())
        path = tmp_path / "o.pt"
        torch.save(outcomes_to_payload(outcomes), path)
        back = outcomes_from_payload(torch.load(path, weights_only=True))
        assert evaluate(ex, cases, back).mistake == evaluate(ex, cases, outcomes).mistake


@pytest.mark.parametrize("payload", [None, "passed", [{"kind": "value"}] * 2, [{"kind": "hacked"}]])
def test_malformed_outcomes_are_an_error_not_a_crash(payload):
    ex = get("attention.softmax")
    cases = ex.cases()
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
    cases = ex.cases()
    outcomes = run_cases(softmax, cases)
    kept["out"].fill_(0.0)
    assert isinstance(outcomes[0], Outcome)
    assert evaluate(ex, cases, outcomes).passed
