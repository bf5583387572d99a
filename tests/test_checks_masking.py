"""Chapter 6's checks against wrong answers written the way learners write them.

The registry tests (test_checks_registry.py) already check that the reference
passes and that each known mistake's own implementation is diagnosed as
itself. Here: independently written answers, right ones in unusual spellings
(which must pass) and wrong ones (which must get the diagnosis that names
their mistake, or an honest generic one).
"""

import pytest
import torch
from torch import nn

from transformer_workbook.exercises import check, get, run_cases
from transformer_workbook.exercises.judging import outcomes_agree
from transformer_workbook.exercises.masking import LAYERS, build_layer, call_with_layer

CAUSAL, PADDING, LEAK = "masking.causal_mask", "masking.padding_mask", "masking.leakage_test"


def verdict(exercise_id, fn):
    return check(exercise_id, fn, quiet=True)


# ---------------------------------------------------------------------------
# masking.causal_mask
# ---------------------------------------------------------------------------


def test_causal_mask_right_answers_in_several_spellings():
    def with_loops(n, device=None):
        rows = [[j <= i for j in range(n)] for i in range(n)]
        return torch.tensor(rows, dtype=torch.bool, device=device).reshape(n, n)

    def compare_positions(n, device=None):
        pos = torch.arange(n, device=device)
        return pos[:, None] >= pos[None, :]

    def float_then_bool(n, device=None):
        return torch.tril(torch.ones(n, n, device=device)).bool()

    def not_upper(n, device=None):
        return torch.triu(torch.ones(n, n, device=device), diagonal=1) == 0

    for fn in (with_loops, compare_positions, float_then_bool, not_upper):
        res = verdict(CAUSAL, fn)
        assert res.passed, (fn.__name__, res.message)


@pytest.mark.parametrize("answer,mistake", [
    (lambda n, device=None: torch.arange(n)[:, None] > torch.arange(n), "no-diagonal"),
    (lambda n, device=None: torch.arange(n)[:, None] <= torch.arange(n), "upper-triangle"),
    (lambda n, device=None: torch.ones(n, n).triu(1).bool(), "inverted"),
    (lambda n, device=None: torch.ones(n, n).tril(), "float-mask"),
    (lambda n, device=None: (torch.arange(n)[:, None] >= torch.arange(n)).float(), "float-mask"),
    (lambda n, device=None: nn.Transformer.generate_square_subsequent_mask(n), "forbidden-call"),
    (lambda n, device=None: torch.zeros(n, n).masked_fill(torch.ones(n, n).triu(1).bool(), float("-inf")),
     "additive-float-mask"),
])
def test_causal_mask_wrong_answers_are_named(answer, mistake):
    res = verdict(CAUSAL, answer)
    assert res.status == "failed" and res.mistake == mistake, res.message


def test_causal_mask_hard_coded_size_and_missing_device_argument():
    res = verdict(CAUSAL, lambda n, device=None: torch.ones(5, 5, dtype=torch.bool).tril())
    assert res.mistake == "wrong-shape" and "(1, 1)" in res.message

    def causal_mask(n):  # no device parameter
        return torch.ones(n, n, dtype=torch.bool).tril()

    res = verdict(CAUSAL, causal_mask)
    assert res.status == "error" and res.mistake == "exception"
    assert "device" in res.message and "n (1 to 15)" in res.message


# ---------------------------------------------------------------------------
# masking.padding_mask
# ---------------------------------------------------------------------------


def test_padding_mask_right_answers_in_several_spellings():
    def with_a_loop(lengths, max_len=None):
        if max_len is None:
            max_len = max(int(n) for n in lengths)
        mask = torch.zeros(len(lengths), max_len, dtype=torch.bool)
        for b, n in enumerate(lengths):
            mask[b, : int(n)] = True
        return mask

    def expanded(lengths, max_len=None):
        max_len = max_len or int(lengths.max())
        positions = torch.arange(max_len).expand(len(lengths), max_len)
        return positions < lengths.unsqueeze(1)

    def cumulative(lengths, max_len=None):  # an unusual spelling: ones, then a cumulative count
        L = int(lengths.max()) if max_len is None else max_len
        counts = torch.ones(len(lengths), L, dtype=torch.long).cumsum(dim=1)  # 1, 2, 3, ...
        return counts <= lengths[:, None]

    for fn in (with_a_loop, expanded, cumulative):
        res = verdict(PADDING, fn)
        assert res.passed, (fn.__name__, res.message)


@pytest.mark.parametrize("answer,mistake", [
    (lambda lengths, max_len=None: torch.arange(max_len or int(lengths.max())) >= lengths[:, None],
     "inverted"),
    (lambda lengths, max_len=None: torch.arange(max_len or int(lengths.max())) <= lengths.unsqueeze(-1),
     "off-by-one"),
    (lambda lengths, max_len=None: torch.arange(1, (max_len or int(lengths.max())) + 1) < lengths[:, None],
     "one-short"),
    (lambda lengths, max_len=None: torch.arange(lengths.max()) < lengths[:, None], "ignores-max-len"),
    (lambda lengths, max_len=None: torch.arange(max_len or int(lengths.max()))[:, None] < lengths,
     "transposed"),
])
def test_padding_mask_wrong_answers_are_named(answer, mistake):
    res = verdict(PADDING, answer)
    assert res.status == "failed" and res.mistake == mistake, res.message


def test_padding_mask_that_requires_max_len():
    def padding_mask(lengths, max_len=None):
        return torch.arange(max_len) < lengths[:, None]  # arange(None) raises when it is left out

    res = verdict(PADDING, padding_mask)
    assert res.status == "error" and res.mistake == "exception"
    assert "max_len left out" in res.message


# ---------------------------------------------------------------------------
# masking.leakage_test
# ---------------------------------------------------------------------------


def test_the_layers_leak_as_declared():
    """The check's layers behave as their names say (judged by the package's own test)."""
    from transformer_workbook.masks import leaks_future

    for seed in (0, 1, 5):
        for case in get(LEAK).cases(seed):
            assert leaks_future(build_layer(case), case.args[0]) is LAYERS[case.layer], case.name


def test_leakage_right_answers_in_several_spellings():
    def one_position_at_a_time(layer, x):
        """Change position j alone; no output before j may move."""
        base = layer(x)
        for j in range(1, x.shape[1]):
            x2 = x.clone()
            x2[:, j] = torch.randn_like(x2[:, j]) * 3
            if not torch.allclose(layer(x2)[:, :j], base[:, :j]):
                return True
        return False

    def prefix_runs(layer, x):
        """Run the layer on each prefix: its outputs must equal the full run's."""
        full = layer(x)
        for t in range(1, x.size(1)):
            if not torch.allclose(layer(x[:, :t]), full[:, :t], atol=1e-6):
                return True
        return False

    def returns_a_tensor(layer, x):
        out = layer(x)
        leak = torch.tensor(False)
        for t in range(x.size(1) - 1):
            y = torch.cat([x[:, : t + 1], torch.rand_like(x[:, t + 1 :]) * 10 - 5], dim=1)
            leak = leak | (layer(y)[:, : t + 1] - out[:, : t + 1]).abs().gt(1e-6).any()
        return leak  # a 0-d bool tensor: read as a bool

    for fn in (one_position_at_a_time, prefix_runs, returns_a_tensor):
        res = verdict(LEAK, fn)
        assert res.passed, (fn.__name__, res.message)


def _learner_last_token_only(layer, x):
    y = x.clone()
    y[:, -1] = torch.randn(y.shape[0], y.shape[2])
    return not torch.allclose(layer(y)[:, :-1], layer(x)[:, :-1])


def _learner_first_output_only(layer, x):
    y = torch.cat([x[:, :1], torch.randn_like(x[:, 1:])], dim=1)
    return not torch.allclose(layer(y)[:, 0], layer(x)[:, 0])


def _learner_reverses_future(layer, x):
    base = layer(x)
    for t in range(x.size(1) - 1):
        y = torch.cat([x[:, : t + 1], torch.flip(x[:, t + 1 :], dims=[1])], dim=1)
        if not torch.allclose(layer(y)[:, : t + 1], base[:, : t + 1]):
            return True
    return False


def _learner_compares_everything(layer, x):
    base = layer(x)
    y = x.clone()
    y[:, 1:] = torch.randn_like(y[:, 1:])
    return not torch.allclose(layer(y), base)


def _learner_rounds_to_two_decimals(layer, x):
    base = layer(x)
    for t in range(x.size(1) - 1):
        y = x.clone()
        y[:, t + 1 :] = torch.randn_like(y[:, t + 1 :])
        if not torch.equal(layer(y)[:, : t + 1].round(decimals=2), base[:, : t + 1].round(decimals=2)):
            return True
    return False


def _learner_next_token_only(layer, x):
    base = layer(x)
    for t in range(x.size(1) - 1):
        y = x.clone()
        y[:, t + 1] = y[:, t + 1] + 1.0
        if not torch.allclose(layer(y)[:, t], base[:, t]):
            return True
    return False


@pytest.mark.parametrize("answer,mistake", [
    (_learner_last_token_only, "only-last-position"),
    (_learner_first_output_only, "only-first-output"),
    (_learner_reverses_future, "shuffles-future"),
    (_learner_compares_everything, "compares-all-positions"),
    (_learner_next_token_only, "only-next-position"),
])
def test_leakage_wrong_answers_are_named(answer, mistake):
    res = verdict(LEAK, answer)
    assert res.status == "failed" and res.mistake == mistake, res.message


def test_leakage_rounding_is_a_too_loose_comparison():
    res = verdict(LEAK, _learner_rounds_to_two_decimals)
    # Rounding misses the weak leak (about 1e-4) on most layers of the kind, and can also flip
    # where a value sits next to a rounding boundary: diagnosed, or failed on that layer.
    assert res.status == "failed"
    assert res.mistake == "loose-tolerance" or "lowers the future's scores" in res.message, res.message


def test_leakage_test_that_changes_x_in_place():
    def leaks_future(layer, x):
        base = layer(x).clone()
        for t in range(x.size(1) - 1):
            x[:, t + 1 :] = torch.randn_like(x[:, t + 1 :])  # changes the caller's x
            if not torch.allclose(layer(x)[:, : t + 1], base[:, : t + 1]):
                return True
        return False

    res = verdict(LEAK, leaks_future)
    assert res.status == "failed" and res.mistake == "modifies-input", res.message


def test_leakage_answer_that_is_not_a_bool():
    res = verdict(LEAK, lambda layer, x: "no leak")
    assert res.status == "failed" and res.mistake == "wrong-type"
    res = verdict(LEAK, lambda layer, x: None)
    assert res.mistake == "returned-none" or res.status == "failed"


def test_the_layer_is_a_black_box_function():
    case = get(LEAK).cases(0)[0]
    layer = build_layer(case)
    assert callable(layer) and not isinstance(layer, nn.Module)
    out = layer(case.args[0])
    assert out.shape == case.args[0].shape and not out.requires_grad
    assert call_with_layer(lambda layer, x: torch.tensor(True), case) is True


def test_leakage_mistakes_each_misjudge_a_different_set_of_layers():
    ex = get(LEAK)
    cases = ex.cases()
    reference = run_cases(ex.reference, cases, call=ex.call)
    wrong = {}
    for m in ex.mistakes:
        outcomes = run_cases(m.implementation, cases, call=ex.call)
        wrong[m.id] = frozenset(c.name for c, a, b in zip(cases, outcomes, reference, strict=True)
                                if not outcomes_agree(a, b, ex.tolerance))
        assert wrong[m.id], f"{m.id} agrees with the reference on every layer"
    assert len(set(wrong.values())) == len(wrong), wrong


# Found by a learner-style session that had not read these tests.


def test_leakage_test_may_use_gradients_or_numpy():
    def by_gradients(layer, x):  # d output[i] / d x[j] for j > i must be 0
        with torch.enable_grad():
            x = x.detach().clone().requires_grad_(True)
            y = layer(x)
            for i in range(x.shape[1] - 1):
                (g,) = torch.autograd.grad(y[:, i].sum(), x, retain_graph=True)
                if g[:, i + 1:].abs().max() > 0:
                    return True
        return False

    assert verdict("masking.leakage_test", by_gradients).passed

    def with_numpy(layer, x):  # outputs do not track the (fixed) weights: .numpy() works
        a = layer(x).numpy()
        x2 = x.clone()
        x2[:, -1] += 1
        return bool(abs(a[:, :-1] - layer(x2).numpy()[:, :-1]).max() > 1e-6)

    res = verdict("masking.leakage_test", with_numpy)
    assert res.mistake == "only-last-position", res.message


def test_a_wrong_type_message_never_shows_the_expected_value():
    res = check("complexity.crossover_length", lambda d_model, d_ff=None: 1025.0, quiet=True)
    assert res.mistake == "wrong-type" and "should be an int; got a float" in res.message
    assert "(1025)" not in res.message
