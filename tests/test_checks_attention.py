"""Chapter 1's checks: the reference passes; every diagnosed mistake is named.

Two kinds of wrong answers are tried: the exercise's own Mistake
implementations (each must be diagnosed as itself, so no two are confused),
and wrong answers written here the way a learner would write them (they must
get the same diagnosis, so the diagnosis does not depend on how the mistake is
spelled).
"""

import math

import pytest
import torch

from transformer_workbook.exercises import check, get
from transformer_workbook.exercises.attention import BUGGY_ATTENTION_WEIGHTS, FOCUS, build_w_q_cases

# ---- learner-style wrong answers, written independently --------------------


def sm_naive(x, dim=-1):
    return torch.exp(x) / torch.exp(x).sum(dim=dim, keepdim=True)


def sm_last_axis(x, dim=-1):
    z = x - x.max(dim=-1, keepdim=True).values
    return z.exp() / z.exp().sum(-1, keepdim=True)


def sm_global_max(x, dim=-1):
    z = (x - torch.max(x)).exp()
    return z / torch.sum(z, dim, keepdim=True)


def sm_total(x, dim=-1):
    z = (x - x.max(dim, keepdim=True).values).exp()
    return z / z.sum()


def sm_no_keepdim(x, dim=-1):
    z = torch.exp(x - torch.max(x, dim).values)
    return z / torch.sum(z, dim)


@pytest.mark.parametrize(
    "fn,expected",
    [(sm_naive, "overflow"), (sm_last_axis, "ignores-dim"), (sm_global_max, "global-max"),
     (sm_total, "sum-over-all"), (sm_no_keepdim, "no-keepdim")],
)
def test_softmax_learner_mistakes(fn, expected):
    assert check("attention.softmax", fn, quiet=True).mistake == expected


def sdpa_factory(scale="sqrt_dk", softmax_dim=-1, mask_mode="ok", transpose_w=False, bmm=False,
                 naive=False, fill=-1e9, swap=False):
    def attn(q, k, v, mask=None):
        if bmm:
            scores = torch.bmm(q, k.transpose(1, 2))
        else:
            scores = torch.matmul(q, k.transpose(-2, -1))
        d_k, d_v = q.shape[-1], v.shape[-1]
        scores = {"none": scores, "sqrt_dk": scores / math.sqrt(d_k), "dk": scores / d_k,
                  "sqrt_dv": scores / d_v**0.5, "sqrt8": scores / math.sqrt(8)}[scale]
        if mask is not None and mask_mode == "ok":
            scores = scores.masked_fill(mask == 0, fill)
        if mask is not None and mask_mode == "inverted":
            scores = scores.masked_fill(mask, float("-inf"))
        if naive:
            weights = scores.exp() / scores.exp().sum(dim=softmax_dim, keepdim=True)
        else:
            weights = torch.softmax(scores, dim=softmax_dim)
        if mask is not None and mask_mode == "after":
            weights = weights.masked_fill(~mask, 0.0)
        out = torch.matmul(weights, v)
        weights = weights.transpose(-1, -2) if transpose_w else weights
        return (weights, out) if swap else (out, weights)

    return attn


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        ({}, None),
        ({"scale": "none"}, "no-scaling"),
        ({"scale": "dk"}, "divide-by-d_k"),
        ({"scale": "sqrt_dv"}, "scale-by-sqrt-d_v"),
        ({"softmax_dim": 1}, "softmax-dim-1"),
        ({"scale": "sqrt8"}, "not-passed"),
        ({"fill": -20.0}, "not-exact-zero"),
        ({"fill": float("-inf")}, None),
        ({"swap": True}, "wrong-order"),
        ({"softmax_dim": -2}, "softmax-wrong-axis"),
        ({"mask_mode": "inverted"}, "mask-inverted"),
        ({"mask_mode": "after"}, "mask-after-softmax"),
        ({"mask_mode": "ignored"}, "mask-ignored"),
        ({"transpose_w": True}, "weights-transposed"),
        ({"bmm": True}, "only-3d"),
        ({"naive": True}, "softmax-overflow"),
    ],
)
def test_sdpa_learner_mistakes(kwargs, expected):
    res = check("attention.scaled_dot_product_attention", sdpa_factory(**kwargs), quiet=True)
    if expected is None:
        assert res.passed, res.message  # -1e9 and torch.softmax are fine
    elif expected == "not-passed":  # a hard-coded d_k = 8 is right for one case only
        assert res.status == "failed" and res.cases_passed < res.cases_total
    else:
        assert res.mistake == expected, res.message


def test_sdpa_returning_only_the_output_is_explained():
    def attn(q, k, v, mask=None):
        return sdpa_factory()(q, k, v, mask)[0]

    res = check("attention.scaled_dot_product_attention", attn, quiet=True)
    assert res.mistake == "wrong-type"
    assert "tuple of 2" in res.message


def test_spot_the_bug_original_code_is_recognised():
    namespace = {"math": math, "torch": torch}
    exec(BUGGY_ATTENTION_WEIGHTS, namespace)
    res = check("attention.spot_the_bug", namespace["attention_weights"], quiet=True)
    assert res.mistake == "unchanged"


@pytest.mark.parametrize(
    "source,expected",
    [
        ("torch.softmax(q @ k.transpose(1, 2) / math.sqrt(k.size(1)), dim=2)", "scale-by-length"),
        ("torch.softmax(q @ k.transpose(-2, -1) / k.shape[-1] ** 0.5, dim=1)", "softmax-over-queries"),
        ("torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[2]), dim=-1)", None),
    ],
)
def test_spot_the_bug_partial_fixes(source, expected):
    namespace = {"math": math, "torch": torch}
    exec(f"def attention_weights(q, k):\n    return {source}\n", namespace)
    res = check("attention.spot_the_bug", namespace["attention_weights"], quiet=True)
    assert res.mistake == expected, res.message


def test_feedback_never_shows_reference_values():
    """Messages name shapes and mistakes, never the expected numbers."""
    ex = get("attention.softmax")
    case = ex.make_cases(ex.seed)[0]
    expected = ex.reference(*case.args, **case.kwargs)
    res = check("attention.softmax", lambda x, dim=-1: x * 0 + 0.5, quiet=True)
    for value in expected.flatten()[:10].tolist():
        for digits in (2, 3, 4):
            assert f"{value:.{digits}f}" not in res.message


# ---- build_w_q: several right answers, each wrong one named --------------------


def w_outer_loop(x, target):  # right: a sum of outer products, strength from the hint's bound
    L, d = x.shape
    w_q = torch.zeros(d, d)
    for i in range(L):
        w_q += torch.outer(x[i], x[int(target[i])])
    return w_q * 2 * math.sqrt(d) * math.log(9 * (L - 1))


def w_pinv(x, target):  # right: solve x @ W = s * x[target] (pinv, any full-rank rows)
    return 1000.0 * torch.linalg.pinv(x) @ x[target]


def w_one_hot_matrix(x, target):  # right: x.T @ T @ x with T the wanted pattern
    pattern = torch.nn.functional.one_hot(target, x.shape[0]).float()  # (L, L)
    return 100.0 * x.T @ pattern @ x


def w_chapter_strength(x, target):  # the direction, with section 1.2's strength 6
    return 6.0 * x.T @ x[target]


def w_identity(x, target):
    return 30.0 * torch.eye(x.shape[1])


def w_projector(x, target):  # x.T @ x projects onto the tokens: each finds itself
    return 30.0 * x.T @ x


def w_transposed(x, target):
    return 50.0 * x[target].T @ x


def w_token_coordinates(x, target):  # section 1.2's recipe: W[my feature, feature I look for]
    L, d = x.shape
    w_q = torch.zeros(d, d)
    for i in range(L):
        w_q[i, target[i]] = 25.0
    return w_q


def w_pattern(x, target):
    return 10.0 * torch.nn.functional.one_hot(target, x.shape[0]).float()  # (L, L)


def w_hard_coded_20(x, target):  # strong enough for small d only: no diagnosis fits
    return 20.0 * x.T @ x[target]


def w_numpy(x, target):
    return (50.0 * x.T @ x[target]).numpy()


@pytest.mark.parametrize(
    "fn,expected",
    [
        (w_outer_loop, None), (w_pinv, None), (w_one_hot_matrix, None),
        (w_chapter_strength, "too-flat"), (w_identity, "looks-at-itself"),
        (w_projector, "looks-at-itself"), (w_transposed, "who-looks-at-me"),
        (w_token_coordinates, "assumes-one-hot"), (w_pattern, "returns-the-pattern"),
    ],
)
def test_build_w_q_learner_answers(fn, expected):
    res = check("attention.build_w_q", fn, quiet=True)
    if expected is None:
        assert res.passed, res.message
    else:
        assert res.status == "failed" and res.mistake == expected, res.message


def test_build_w_q_a_scale_right_for_some_sizes_only_is_named_too_flat():
    """A fixed factor (from the example, without sqrt(d) or ln L) works for small cases only."""
    res = check("attention.build_w_q", w_hard_coded_20, quiet=True)
    assert res.mistake == "too-flat" and 0 < res.cases_passed < res.cases_total, res.message
    assert "(8, 64)" in res.message  # the case where sqrt(d) matters most
    assert "some sizes only" in res.message

    def from_the_example(x, target):  # sqrt(d) but not ln L: right for L <= 6 or so
        return 3.5 * math.sqrt(x.shape[1]) * x.T @ x[target]

    res = check("attention.build_w_q", from_the_example, quiet=True)
    assert res.mistake == "too-flat" and "(12, 16)" in res.message, res.message


def test_build_w_q_none_nan_and_numpy_get_messages_that_name_them():
    res = check("attention.build_w_q", w_numpy, quiet=True)
    assert res.status == "error" and "must return a tensor of shape (d, d)" in res.message

    def forgot_return(x, target):
        x.T @ x[target]

    res = check("attention.build_w_q", forgot_return, quiet=True)
    assert res.status == "error" and "returned None" in res.message, res.message

    def overflowed(x, target):
        return float("nan") * x.T @ x[target]

    res = check("attention.build_w_q", overflowed, quiet=True)
    assert res.status == "error" and "NaN or infinite" in res.message, res.message


def test_build_w_q_cases_need_a_real_strength():
    """Every case needs a strength of at least 10, and the rows of every x are orthonormal."""
    for seed in (0, 1, 7):
        for case in build_w_q_cases(seed):
            x, target = case.args
            L, d = x.shape
            assert L <= d and math.sqrt(d) * math.log(9 * (L - 1)) > 10
            torch.testing.assert_close(x @ x.T, torch.eye(L), atol=1e-5, rtol=0)
            assert target.shape == (L,) and FOCUS == 0.9
