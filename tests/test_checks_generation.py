"""Chapter 9's checks against wrong answers written the way a learner writes them.

The registry test (test_checks_registry.py) already checks that the reference
passes and that every Mistake is diagnosed as itself; here the wrong (and
right) answers are written independently: hard-coded sizes, ``except:``
everywhere, loops instead of tensor operations, unusual but right spellings.
"""

import math

import pytest
import torch

from transformer_workbook import chapters
from transformer_workbook.exercises import check

pytestmark = pytest.mark.skipif(not chapters.get(9).available,
                                reason="the chapter's exercises load once it is available")

# ---- top-k ------------------------------------------------------------------


def topk_loop(logits, k):  # right: a loop over the rows, sorted() instead of topk
    if k <= 0:
        raise ValueError("k")
    flat = logits.reshape(-1, logits.shape[-1])
    out = torch.full_like(flat, -math.inf)
    for r in range(flat.shape[0]):
        order = sorted(range(flat.shape[1]), key=lambda i: -flat[r, i].item())
        for i in order[:k]:
            out[r, i] = flat[r, i]
    return out.reshape(logits.shape)


def topk_sort_threshold(logits, k):  # right: sort and compare with the k-th value
    if k < 1:
        raise ValueError
    k = min(k, logits.shape[-1])
    kth = torch.sort(logits, dim=-1, descending=True).values[..., k - 1 : k]
    return torch.where(logits >= kth, logits, torch.tensor(float("-inf")))


def topk_plus_one(logits, k):  # indexes the k-th value at position k
    if k < 1:
        raise ValueError
    s = torch.sort(logits, dim=-1, descending=True).values
    if k >= logits.shape[-1]:
        return logits.clone()
    return torch.where(logits >= s[..., k : k + 1], logits, torch.tensor(float("-inf")))


def topk_zero(logits, k):
    if k < 1:
        raise ValueError
    k = min(k, logits.shape[-1])
    vals, idx = torch.topk(logits, k)
    out = torch.zeros_like(logits)
    return out.scatter(-1, idx, vals)  # removed tokens get logit 0


def topk_no_guard(logits, k):  # lets torch.topk fail for k > V
    if k < 1:
        raise ValueError
    vals, idx = torch.topk(logits, k)
    return torch.full_like(logits, -float("inf")).scatter(-1, idx, vals)


def topk_except_everywhere(logits, k):  # swallows every error: k=0 no longer raises
    try:
        vals, idx = torch.topk(logits, k)
        return torch.full_like(logits, -float("inf")).scatter(-1, idx, vals)
    except:  # noqa: E722
        return logits


def topk_hard_coded_rows(logits, k):  # written for (B, V) only
    if k < 1:
        raise ValueError
    out = logits.clone()
    for b in range(logits.shape[0]):
        if k < logits.shape[1]:
            kth = logits[b].topk(k).values[-1]
            out[b][logits[b] < kth] = float("-inf")
    return out


@pytest.mark.parametrize("fn", [topk_loop, topk_sort_threshold])
def test_top_k_right_answers_pass(fn):
    res = check("generation.top_k_filter", fn, quiet=True)
    assert res.passed, res.message


@pytest.mark.parametrize(
    "fn,expected",
    [(topk_plus_one, "keeps-k-plus-one"), (topk_zero, "zero-not-minus-inf"),
     (topk_no_guard, "k-larger-than-vocabulary")],
)
def test_top_k_learner_mistakes(fn, expected):
    res = check("generation.top_k_filter", fn, quiet=True)
    assert res.mistake == expected, res.message


def test_top_k_swallowed_errors_and_hard_coded_shapes_fail():
    res = check("generation.top_k_filter", topk_except_everywhere, quiet=True)
    assert not res.passed and "k=0" in res.message, res.message
    res = check("generation.top_k_filter", topk_hard_coded_rows, quiet=True)
    assert not res.passed, res.message


# ---- top-p ------------------------------------------------------------------


def topp_loop(logits, p):  # right: one row at a time, in Python
    if p <= 0 or p > 1:
        raise ValueError("p")
    flat = logits.reshape(-1, logits.shape[-1])
    out = torch.full_like(flat, float("-inf"))
    for r in range(flat.shape[0]):
        probs = torch.softmax(flat[r], dim=0)
        total = 0.0
        for i in torch.argsort(probs, descending=True).tolist():
            out[r, i] = flat[r, i]
            total += probs[i].item()
            if total >= p:
                break
    return out.reshape(logits.shape)


def topp_drops_crossing(logits, p):
    if not 0 < p <= 1:
        raise ValueError
    probs, idx = torch.softmax(logits, -1).sort(-1, descending=True)
    remove = probs.cumsum(-1) > p  # HF-style without the shift: drops the crossing token
    remove_tokens = remove.scatter(-1, idx, remove)
    return logits.masked_fill(remove_tokens, -float("inf"))


def topp_no_unsort(logits, p):
    if not 0 < p <= 1:
        raise ValueError
    probs, _ = torch.softmax(logits, -1).sort(-1, descending=True)
    keep = (probs.cumsum(-1) - probs) < p
    return logits.masked_fill(~keep, -float("inf"))


def topp_except_everywhere(logits, p):  # invalid p goes through
    try:
        probs, idx = torch.softmax(logits, -1).sort(-1, descending=True)
        keep = (probs.cumsum(-1) - probs) < p
        keep = keep.scatter(-1, idx, keep)
        return logits.masked_fill(~keep, -float("inf"))
    except:  # noqa: E722
        return logits


def test_top_p_right_answer_passes():
    res = check("generation.top_p_filter", topp_loop, quiet=True)
    assert res.passed, res.message


@pytest.mark.parametrize(
    "fn,expected",
    [(topp_drops_crossing, "drops-crossing-token"), (topp_no_unsort, "mask-not-unsorted")],
)
def test_top_p_learner_mistakes(fn, expected):
    res = check("generation.top_p_filter", fn, quiet=True)
    assert res.mistake == expected, res.message


def test_top_p_accepting_invalid_p_fails():
    res = check("generation.top_p_filter", topp_except_everywhere, quiet=True)
    assert not res.passed and "invalid" in res.message, res.message


# ---- sampling with a temperature ---------------------------------------------


def sample_gumbel(logits, temperature=1.0, generator=None):  # right: the Gumbel-max trick
    if temperature <= 0:
        raise ValueError("T")
    u = torch.rand(logits.shape, generator=generator).clamp_min(1e-20)
    return (logits / temperature - torch.log(-torch.log(u))).argmax(-1)


def sample_2d_only(logits, temperature=1.0, generator=None):  # right: reshape spelled by hand
    if not temperature > 0:
        raise ValueError
    shape = logits.shape
    probs = torch.softmax(logits.reshape(-1, shape[-1]) / temperature, dim=1)
    return torch.multinomial(probs, num_samples=1, generator=generator).view(*shape[:-1])


def sample_after_softmax(logits, temperature=1.0, generator=None):
    if temperature <= 0:
        raise ValueError
    probs = torch.softmax(logits, -1) / temperature
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])


def sample_keeps_last_dim(logits, temperature=1.0, generator=None):
    if temperature <= 0:
        raise ValueError
    probs = torch.softmax(logits / temperature, -1)
    return torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)


def sample_no_generator(logits, temperature=1.0, generator=None):
    if temperature <= 0:
        raise ValueError
    probs = torch.softmax(logits / temperature, -1)
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1).reshape(probs.shape[:-1])


def sample_t0_greedy(logits, temperature=1.0, generator=None):  # accepts T = 0
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, -1)
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])


@pytest.mark.parametrize("fn", [sample_gumbel, sample_2d_only])
def test_sampling_right_answers_pass(fn):
    res = check("generation.sample_with_temperature", fn, quiet=True)
    assert res.passed, res.message


@pytest.mark.parametrize(
    "fn,expected",
    [(sample_after_softmax, "temperature-after-softmax"),
     (sample_no_generator, "ignores-generator")],
)
def test_sampling_learner_mistakes(fn, expected):
    res = check("generation.sample_with_temperature", fn, quiet=True)
    assert res.mistake == expected, res.message


def test_sampling_shape_and_invalid_temperature_are_explained():
    res = check("generation.sample_with_temperature", sample_keeps_last_dim, quiet=True)
    assert not res.passed and "squeeze" in res.message, res.message
    res = check("generation.sample_with_temperature", sample_t0_greedy, quiet=True)
    assert not res.passed and "temperature 0" in res.message, res.message
