"""Chapter 7's cheaper attentions: exact where they claim to be, converging where they estimate,
and cheaper in memory than full attention (measured, not timed)."""

from __future__ import annotations

import math

import pytest
import torch

from transformer_workbook.attention import scaled_dot_product_attention
from transformer_workbook.complexity import loglog_slope, peak_memory
from transformer_workbook.efficient import (
    elu_feature_map,
    linear_attention,
    performer_attention,
    performer_features,
    random_projection,
    sliding_window_attention,
)
from transformer_workbook.masks import causal_mask, sliding_window_mask


def qkv(*shape, d_v=None, scale=1.0, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    *lead, L, d = shape
    q = torch.randn(*lead, L, d, generator=g, dtype=dtype) * scale
    k = torch.randn(*lead, L, d, generator=g, dtype=dtype) * scale
    v = torch.randn(*lead, L, d_v or d, generator=g, dtype=dtype)
    return q, k, v


# ---------------------------------------------------------------------------
# Sliding-window attention: the masked full attention, without the L x L matrix
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(9, 4), (2, 11, 8), (2, 3, 10, 6)])
@pytest.mark.parametrize("window", [1, 2, 4, 30])
@pytest.mark.parametrize("causal", [True, False])
def test_sliding_window_attention_equals_masked_full_attention(shape, window, causal):
    q, k, v = qkv(*shape, d_v=5)
    L = shape[-2]
    expected, _ = scaled_dot_product_attention(q, k, v, sliding_window_mask(L, window, causal))
    torch.testing.assert_close(sliding_window_attention(q, k, v, window, causal), expected)


def test_sliding_window_attention_rejects_bad_arguments():
    q, k, v = qkv(2, 6, 4)
    with pytest.raises(ValueError):
        sliding_window_attention(q, k, v, 0)
    with pytest.raises(ValueError):
        sliding_window_attention(q, k[:, :5], v[:, :5], 2)


def test_sliding_window_memory_grows_linearly_full_attention_quadratically():
    lengths = [256, 512, 1024]

    def window_run(L):
        q, k, v = qkv(1, 2, L, 16)
        return lambda: sliding_window_attention(q, k, v, 32)

    def full_run(L):
        q, k, v = qkv(1, 2, L, 16)
        mask = sliding_window_mask(L, 32)
        return lambda: scaled_dot_product_attention(q, k, v, mask)

    window = [peak_memory(window_run(L)) for L in lengths]
    full = [peak_memory(full_run(L)) for L in lengths]
    assert 0.9 < loglog_slope(lengths, window) < 1.15
    assert 1.85 < loglog_slope(lengths, full) < 2.1
    assert window[-1] * 3 < full[-1]  # and the gap widens with L


# ---------------------------------------------------------------------------
# Linear attention: the kernel attention it stands for, computed right to left
# ---------------------------------------------------------------------------


def _kernel_attention_by_hand(q, k, v, phi, causal):
    weights = phi(q) @ phi(k).transpose(-2, -1)  # (..., Lq, Lk), positive
    if causal:
        weights = weights * causal_mask(q.size(-2))
    return (weights / weights.sum(-1, keepdim=True)) @ v


@pytest.mark.parametrize("causal", [False, True])
def test_linear_attention_equals_normalized_kernel_weights(causal):
    q, k, v = qkv(2, 3, 9, 6, d_v=4, dtype=torch.float64)
    expected = _kernel_attention_by_hand(q, k, v, elu_feature_map, causal)
    torch.testing.assert_close(linear_attention(q, k, v, causal=causal), expected)
    square = lambda x: x * x + 0.1  # noqa: E731 - any positive feature map
    torch.testing.assert_close(
        linear_attention(q, k, v, causal, feature_map=square),
        _kernel_attention_by_hand(q, k, v, square, causal),
    )


def test_causal_linear_attention_does_not_leak():
    from transformer_workbook.masks import leaks_future

    _, k, v = qkv(1, 7, 4)
    assert not leaks_future(lambda x: linear_attention(x, k, v[:, :, :4] * 0 + x, causal=True), k)
    assert leaks_future(lambda x: linear_attention(x, x, x, causal=False), k)


def test_linear_attention_cross_attention_lengths():
    q = torch.randn(2, 3, 8)
    k, v = torch.randn(2, 5, 8), torch.randn(2, 5, 2)
    expected = _kernel_attention_by_hand(q, k, v, elu_feature_map, False)
    torch.testing.assert_close(linear_attention(q, k, v), expected)
    with pytest.raises(ValueError):
        linear_attention(q, k, v, causal=True)


# ---------------------------------------------------------------------------
# Performer: an unbiased estimate of softmax attention
# ---------------------------------------------------------------------------


def test_random_projection_rows_are_gaussian_and_blocks_orthogonal():
    g = torch.Generator().manual_seed(0)
    w = random_projection(24, 8, generator=g)
    assert w.shape == (24, 8) and w.dtype == torch.float32
    for block in (w[:8], w[8:16], w[16:]):
        directions = block / block.norm(dim=-1, keepdim=True)
        torch.testing.assert_close(directions @ directions.T, torch.eye(8), atol=1e-5, rtol=0)
    many = random_projection(4000, 4, generator=g, orthogonal=False)
    assert abs(float(many.mean())) < 0.05 and abs(float(many.var()) - 1) < 0.05
    assert random_projection(5, 8, generator=g).shape == (5, 8)  # a partial block


def test_performer_features_estimate_the_softmax_kernel():
    """E[phi(q) . phi(k)] = exp(q . k / sqrt(d)); with many features the average is close."""
    q, k, _ = qkv(6, 8, scale=0.5, dtype=torch.float64)
    exact = torch.exp(q @ k.T / math.sqrt(8))  # (6, 6)
    w = random_projection(200_000, 8, generator=torch.Generator().manual_seed(1),
                          orthogonal=False, dtype=torch.float64)
    # Without the stabilizing shifts (query-wise and key-wise factors), the estimate itself:
    x, y = q / 8**0.25, k / 8**0.25
    phi_q = torch.exp(x @ w.T - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(len(w))
    phi_k = torch.exp(y @ w.T - (y * y).sum(-1, keepdim=True) / 2) / math.sqrt(len(w))
    torch.testing.assert_close(phi_q @ phi_k.T, exact, rtol=0.02, atol=0)
    # The package's features differ from these by one factor per query and one for all keys.
    ratio = (performer_features(q, w, is_query=True) @ performer_features(k, w, is_query=False).T) / (
        phi_q @ phi_k.T
    )
    torch.testing.assert_close(ratio / ratio[:, :1], torch.ones(6, 6, dtype=torch.float64))
    assert (performer_features(q, w[:10], is_query=False) > 0).all()


@pytest.mark.parametrize("causal", [False, True])
def test_performer_error_shrinks_with_more_features(causal):
    q, k, v = qkv(4, 48, 16, scale=0.5)
    mask = causal_mask(48) if causal else None
    exact, _ = scaled_dot_product_attention(q, k, v, mask)

    def mean_error(m):
        errors = []
        for seed in range(4):
            w = random_projection(m, 16, generator=torch.Generator().manual_seed(seed))
            estimate = performer_attention(q, k, v, w, causal=causal)
            errors.append(float((estimate - exact).norm() / exact.norm()))
        return sum(errors) / len(errors)

    features = [16, 64, 256, 1024]
    errors = [mean_error(m) for m in features]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert loglog_slope(features, errors) < -0.25  # about 1/sqrt(m), or faster (orthogonal rows)
    assert errors[-1] < 0.15


def test_performer_is_exactly_linear_attention_with_its_features():
    q, k, v = qkv(2, 10, 8, dtype=torch.float64)
    w = random_projection(32, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    phi_q, phi_k = performer_features(q, w, True), performer_features(k, w, False)
    weights = phi_q @ phi_k.transpose(-2, -1)
    torch.testing.assert_close(performer_attention(q, k, v, w), (weights / weights.sum(-1, keepdim=True)) @ v)
