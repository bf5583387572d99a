"""Chapter 1's package code against PyTorch's own implementations."""

import math

import pytest
import torch
import torch.nn.functional as F

from transformer_workbook.attention import (
    attention_entropy,
    fit,
    hard_attention,
    scaled_dot_product_attention,
    softmax,
)


@pytest.mark.parametrize(
    "shape,dim", [((5,), -1), ((3, 7), -1), ((3, 7), 0), ((2, 3, 4, 5), 1), ((2, 3, 4), -2)]
)
def test_softmax_matches_torch(shape, dim):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(softmax(x, dim=dim), torch.softmax(x, dim=dim))


def test_softmax_is_stable_for_large_inputs():
    x = torch.tensor([[1e4, -1e4, 0.0], [1e4, 1e4 - 1.0, 5e3]])
    out = softmax(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.softmax(x, dim=-1))
    naive = x.exp() / x.exp().sum(-1, keepdim=True)
    assert torch.isnan(naive).any(), "the naive formula overflows here, which is the point"


def test_softmax_handles_minus_inf():
    x = torch.tensor([[0.0, float("-inf"), 1.0], [float("-inf")] * 3])
    out = softmax(x)
    assert out[0, 1] == 0.0
    torch.testing.assert_close(out[0], torch.softmax(x[0], dim=-1))
    assert torch.equal(out[1], torch.zeros(3)), "a fully masked row gives zeros, not NaN"


def test_softmax_keeps_dtype_and_does_not_modify_input():
    x = torch.randn(3, 4, dtype=torch.float64)
    before = x.clone()
    assert softmax(x).dtype == torch.float64
    assert torch.equal(x, before)


def _qkv(*lead, lq=5, lk=7, d_k=16, d_v=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*lead, lq, d_k, generator=g), torch.randn(*lead, lk, d_k, generator=g),
            torch.randn(*lead, lk, d_v, generator=g))


@pytest.mark.parametrize("lead", [(), (3,), (2, 4), (2, 2, 3)])
def test_sdpa_matches_torch_any_leading_dims(lead):
    q, k, v = _qkv(*lead)
    out, w = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))
    assert w.shape == (*lead, 5, 7)
    torch.testing.assert_close(w.sum(-1), torch.ones(*lead, 5))
    torch.testing.assert_close(w, torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(16), dim=-1))


def test_sdpa_scales_by_sqrt_d_k_not_d_v():
    q, k, v = _qkv(2, d_k=4, d_v=64)
    _, w = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(w, torch.softmax(q @ k.transpose(-2, -1) / 2.0, dim=-1))


@pytest.mark.parametrize("mask_shape", [(5, 7), (2, 1, 7), (2, 5, 7), (1, 1, 7)])
def test_sdpa_mask_true_means_attend(mask_shape):
    q, k, v = _qkv(2)
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(*mask_shape, generator=g) > 0.4
    mask[..., 0] = True  # no fully masked row here (see the next test)
    out, w = scaled_dot_product_attention(q, k, v, mask=mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    blocked = ~mask.expand_as(w)
    assert (w[blocked] == 0).all(), "masked positions get weight exactly 0"
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 5))


def test_sdpa_causal_mask_equals_torch_is_causal():
    q, k, v = _qkv(2, 3, lq=6, lk=6)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    out, w = scaled_dot_product_attention(q, k, v, mask=causal)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert (w.triu(1) == 0).all()


def test_sdpa_fully_masked_row_gives_zeros_like_torch():
    q, k, v = _qkv(1)
    mask = torch.ones(5, 7, dtype=torch.bool)
    mask[2] = False
    out, w = scaled_dot_product_attention(q, k, v, mask=mask)
    assert torch.isfinite(out).all() and torch.isfinite(w).all()
    assert (w[0, 2] == 0).all() and (out[0, 2] == 0).all()
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_sdpa_rejects_float_mask_with_a_clear_message():
    q, k, v = _qkv(1)
    with pytest.raises(TypeError, match="bool"):
        scaled_dot_product_attention(q, k, v, mask=torch.zeros(5, 7))


def test_sdpa_gradients_match_torch():
    q, k, v = (t.requires_grad_() for t in _qkv(2))
    out, _ = scaled_dot_product_attention(q, k, v)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    q2, k2, v2 = (t.detach().clone().requires_grad_() for t in (q, k, v))
    ref = F.scaled_dot_product_attention(q2, k2, v2)
    ref_grads = torch.autograd.grad(ref.square().sum(), (q2, k2, v2))
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_entropy_bounds():
    uniform = torch.full((3, 8), 1 / 8)
    torch.testing.assert_close(attention_entropy(uniform), torch.full((3,), math.log(8)))
    one_hot = torch.eye(4)
    assert torch.equal(attention_entropy(one_hot), torch.zeros(4))


# ---- hard_attention: the T -> 0 limit ----------------------------------------


def test_hard_attention_is_the_limit_of_a_vanishing_temperature():
    q, k, v = _qkv(2, lq=4, lk=6, d_k=8, d_v=3, seed=5)
    out_hard, w_hard = hard_attention(q, k, v)
    assert ((w_hard == 0) | (w_hard == 1)).all() and (w_hard.sum(-1) == 1).all()
    best = (q @ k.transpose(-2, -1)).argmax(dim=-1)  # (B, Lq)
    torch.testing.assert_close(out_hard, torch.gather(v, 1, best[..., None].expand(-1, -1, 3)))
    for t in (1e-2, 1e-3):  # softmax(scores / T) approaches it as T shrinks
        out_t, w_t = scaled_dot_product_attention(q / t, k, v)
        torch.testing.assert_close(w_t, w_hard, atol=1e-3, rtol=0)
        torch.testing.assert_close(out_t, out_hard, atol=1e-2, rtol=0)


def test_hard_attention_ties_share_and_masks_apply():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # (Lq=2, d)
    k = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # keys 0 and 1 tie for query 0
    v = torch.tensor([[2.0], [4.0], [8.0]])
    out, w = hard_attention(q, k, v)
    torch.testing.assert_close(w, torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))
    torch.testing.assert_close(out, torch.tensor([[3.0], [8.0]]))  # the tie's mean: its limit
    torch.testing.assert_close(scaled_dot_product_attention(q / 1e-4, k, v)[1], w)
    mask = torch.tensor([[False, True, True], [False, False, False]])  # query 1 sees nothing
    out_m, w_m = hard_attention(q, k, v, mask)
    torch.testing.assert_close(w_m, torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    torch.testing.assert_close(out_m, torch.tensor([[4.0], [0.0]]))
    with pytest.raises(TypeError, match="bool"):
        hard_attention(q, k, v, mask.float())


# ---- fit: the toy tasks' training loop ----------------------------------------


def _regression(seed):
    g = torch.Generator().manual_seed(seed)
    w_true = torch.randn(4, 2, generator=g)
    w = torch.zeros(4, 2, requires_grad=True)

    def loss_fn():
        x = torch.randn(16, 4, generator=g)
        return ((x @ w - x @ w_true) ** 2).mean()

    return w, w_true, loss_fn


def test_fit_learns_and_is_deterministic():
    w, w_true, loss_fn = _regression(0)
    losses = fit([w], loss_fn, steps=300, lr=0.05)
    assert len(losses) == 300 and losses[-1] < 1e-3 * losses[0]
    torch.testing.assert_close(w.detach(), w_true, atol=1e-2, rtol=0)
    w2, _, loss_fn2 = _regression(0)
    assert fit([w2], loss_fn2, steps=300, lr=0.05) == losses  # same seed, same run
    torch.testing.assert_close(w2, w)


def test_fit_restores_the_thread_count_and_checks_its_arguments():
    before = torch.get_num_threads()
    w, _, loss_fn = _regression(1)
    fit([w], loss_fn, steps=2)
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError):
        fit([], loss_fn, steps=2)
    with pytest.raises(ValueError):
        fit([w], loss_fn, steps=-1)

    def broken():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fit([w], broken, steps=1)
    assert torch.get_num_threads() == before
