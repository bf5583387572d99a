"""Chapter 2's package module against torch.nn.MultiheadAttention and the paper."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer_workbook.attention import scaled_dot_product_attention
from transformer_workbook.masks import causal_mask, causal_mask_with_cache
from transformer_workbook.multihead import (
    KVCache,
    MultiHeadAttention,
    combine_heads,
    neighbour_task,
    split_heads,
    to_torch_attn_mask,
)

B, LQ, LK, D, H = 2, 5, 7, 12, 3


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _pair(bias: bool, n_heads: int = H, d_model: int = D):
    """A torch module (batch-first, eval) and our copy of it."""
    theirs = nn.MultiheadAttention(d_model, n_heads, bias=bias, batch_first=True).eval()
    ours = MultiHeadAttention.from_torch(theirs).eval()
    return theirs, ours


def _mask(*shape: int) -> torch.Tensor:
    """A random True = may-attend mask in which every query may attend to key 0."""
    mask = torch.rand(*shape) > 0.4
    mask[..., 0] = True
    return mask


# ---------------------------------------------------------------------------
# split_heads / combine_heads
# ---------------------------------------------------------------------------


def test_split_heads_shape_and_channel_blocks():
    x = torch.randn(B, LQ, D)
    heads = split_heads(x, H)
    d_head = D // H
    assert heads.shape == (B, H, LQ, d_head)
    for h in range(H):
        block = x[..., h * d_head : (h + 1) * d_head]  # (B, L, d_head)
        torch.testing.assert_close(heads[:, h], block, rtol=0, atol=0)


def test_split_heads_layout_equals_torch():
    """PyTorch's own split: (L, B, E) -> (L, B*H, d_head) -> (B*H, L, d_head)."""
    x = torch.randn(B, LQ, D)
    torch_layout = x.transpose(0, 1).reshape(LQ, B * H, D // H).transpose(0, 1)  # (B*H, L, d_head)
    expected = torch_layout.reshape(B, H, LQ, D // H)  # (B, H, L, d_head)
    torch.testing.assert_close(split_heads(x, H), expected, rtol=0, atol=0)


@pytest.mark.parametrize("n_heads", [1, 2, 3, 4, 6, 12])
def test_split_combine_round_trip(n_heads):
    x = torch.randn(B, LQ, D)
    torch.testing.assert_close(combine_heads(split_heads(x, n_heads)), x, rtol=0, atol=0)
    h = torch.randn(B, n_heads, LQ, D // n_heads)
    torch.testing.assert_close(split_heads(combine_heads(h), n_heads), h, rtol=0, atol=0)


def test_split_heads_non_contiguous_input():
    x = torch.randn(LQ, B, D).transpose(0, 1)  # (B, L, D), not contiguous
    torch.testing.assert_close(split_heads(x, H), split_heads(x.contiguous(), H))


def test_split_heads_rejects_indivisible_and_wrong_rank():
    with pytest.raises(ValueError, match="divisible"):
        split_heads(torch.randn(B, LQ, 10), 4)
    with pytest.raises(ValueError):
        split_heads(torch.randn(LQ, D), H)
    with pytest.raises(ValueError):
        combine_heads(torch.randn(B, LQ, D))
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 4)


# ---------------------------------------------------------------------------
# Against nn.MultiheadAttention after copying its weights
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_self_attention_equals_torch(bias):
    theirs, ours = _pair(bias)
    x = torch.randn(B, LQ, D)
    out_t, w_t = theirs(x, x, x, average_attn_weights=False)
    out_o, w_o = ours(x, x, x)
    torch.testing.assert_close(out_o, out_t)
    torch.testing.assert_close(w_o, w_t)
    assert w_o.shape == (B, H, LQ, LQ)


@pytest.mark.parametrize("bias", [True, False])
def test_cross_attention_equals_torch(bias):
    theirs, ours = _pair(bias)
    q, k, v = torch.randn(B, LQ, D), torch.randn(B, LK, D), torch.randn(B, LK, D)
    out_t, w_t = theirs(q, k, v, average_attn_weights=False)
    out_o, w_o = ours(q, k, v)
    assert out_o.shape == (B, LQ, D) and w_o.shape == (B, H, LQ, LK)
    torch.testing.assert_close(out_o, out_t)
    torch.testing.assert_close(w_o, w_t)
    # torch's default averages the weights over the heads
    torch.testing.assert_close(theirs(q, k, v)[1], w_o.mean(dim=1))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "mask_shape", [(LQ, LK), (B, LQ, LK), (B, 1, 1, LK), (B, H, LQ, LK), (1, H, LQ, LK)]
)
def test_masks_converted_equal_torch(bias, mask_shape):
    theirs, ours = _pair(bias)
    q, k, v = torch.randn(B, LQ, D), torch.randn(B, LK, D), torch.randn(B, LK, D)
    mask = _mask(*mask_shape)  # True = may attend
    attn_mask = to_torch_attn_mask(mask, B, H, LQ, LK)  # True = blocked
    out_t, w_t = theirs(q, k, v, attn_mask=attn_mask, average_attn_weights=False)
    out_o, w_o = ours(q, k, v, mask=mask)
    torch.testing.assert_close(out_o, out_t)
    torch.testing.assert_close(w_o, w_t)
    # masked keys get exactly zero weight
    full = mask[:, None] if mask.dim() == 3 else mask
    assert (w_o[~full.expand_as(w_o)] == 0).all()


def test_padding_mask_equals_key_padding_mask():
    theirs, ours = _pair(True)
    x = torch.randn(B, LK, D)
    lengths = torch.tensor([LK, 4])
    keep = torch.arange(LK) < lengths[:, None]  # (B, Lk), True = real token
    out_t, _ = theirs(x, x, x, key_padding_mask=~keep)  # torch: True = padding
    out_o, _ = ours(x, x, x, mask=keep[:, None, None, :])  # (B, 1, 1, Lk)
    torch.testing.assert_close(out_o, out_t)


def test_unconverted_mask_is_inverted_by_torch():
    """The polarity trap: a True = may-attend mask given to nn.MultiheadAttention as is."""
    theirs, ours = _pair(True)
    x = torch.randn(B, LQ, D)
    mask = _mask(LQ, LQ)  # True = may attend
    mask[:, -1] = False  # every row allows some keys and blocks others
    _, w_wrong = theirs(x, x, x, attn_mask=mask, average_attn_weights=False)
    _, w_ours = ours(x, x, x, mask=mask)
    assert (w_ours[..., ~mask] == 0).all()  # ours: nothing on the blocked keys
    assert (w_wrong[..., mask] == 0).all()  # theirs: nothing on the allowed keys
    # A causal mask passed unconverted: the last query may "attend" to nothing -> NaN.
    causal = torch.ones(LQ, LQ, dtype=torch.bool).tril()  # True = may attend
    out_wrong, _ = theirs(x, x, x, attn_mask=causal)
    assert out_wrong[:, -1].isnan().all() and not out_wrong[:, :-1].isnan().any()


def test_batch_first_false_gives_wrong_results():
    """The batch_first trap: the default module reads (B, L, E) as (L, B, E)."""
    theirs, ours = _pair(True)
    seq_first = nn.MultiheadAttention(D, H)  # batch_first=False, the default
    seq_first.load_state_dict(theirs.state_dict())
    seq_first.eval()
    x = torch.randn(B, LQ, D)
    out_wrong, w_wrong = seq_first(x, x, x, average_attn_weights=False)
    out_o, _ = ours(x, x, x)
    assert out_wrong.shape == out_o.shape  # same shape: nothing warns you
    assert w_wrong.shape == (LQ, H, B, B)  # it attended across the batch
    assert not torch.allclose(out_wrong, out_o, atol=1e-3)
    out_right, _ = seq_first(*(x.transpose(0, 1),) * 3)  # (L, B, E) in, (L, B, E) out
    torch.testing.assert_close(out_right.transpose(0, 1), out_o)


def test_from_torch_separate_projection_weights_and_dtype():
    theirs = nn.MultiheadAttention(D, H, batch_first=True, kdim=D, vdim=D).double().eval()
    ours = MultiHeadAttention.from_torch(theirs).eval()
    assert ours.q_proj.weight.dtype == torch.float64
    q, kv = torch.randn(B, LQ, D, dtype=torch.float64), torch.randn(B, LK, D, dtype=torch.float64)
    torch.testing.assert_close(ours(q, kv, kv)[0], theirs(q, kv, kv)[0])


def test_from_torch_rejects_unsupported_options():
    with pytest.raises(ValueError):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(D, H, add_bias_kv=True))
    with pytest.raises(ValueError):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(D, H, kdim=8, vdim=8))


def test_attribute_names_are_linear_layers():
    m = MultiHeadAttention(D, H, bias=False)
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        layer = getattr(m, name)
        assert isinstance(layer, nn.Linear) and layer.weight.shape == (D, D) and layer.bias is None


# ---------------------------------------------------------------------------
# The fused path, the scale, the parameter count
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("mask_shape", [None, (LQ, LK), (B, LQ, LK), (B, 1, 1, LK)])
def test_fused_path_equals_weights_path(mask_shape):
    m = MultiHeadAttention(D, H).eval()
    q, k, v = torch.randn(B, LQ, D), torch.randn(B, LK, D), torch.randn(B, LK, D)
    mask = None if mask_shape is None else _mask(*mask_shape)
    out_w, weights = m(q, k, v, mask=mask)
    out_f, none = m(q, k, v, mask=mask, need_weights=False)
    assert none is None and weights is not None
    torch.testing.assert_close(out_f, out_w)


def test_weights_path_reuses_chapter_1_attention():
    """The module is Chapter 1's attention on split heads: recompute it by hand."""
    m = MultiHeadAttention(D, H).eval()
    q, kv = torch.randn(B, LQ, D), torch.randn(B, LK, D)
    heads = [split_heads(p(t), H) for p, t in ((m.q_proj, q), (m.k_proj, kv), (m.v_proj, kv))]
    out, w = scaled_dot_product_attention(*heads)  # (B, H, Lq, d_head)
    torch.testing.assert_close(m(q, kv, kv)[0], m.out_proj(combine_heads(out)))
    torch.testing.assert_close(m(q, kv, kv)[1], w)


def test_scale_is_sqrt_d_head():
    m = MultiHeadAttention(D, H).eval()
    x = torch.randn(B, LQ, D)
    q = split_heads(m.q_proj(x), H)  # (B, H, L, d_head)
    k = split_heads(m.k_proj(x), H)
    expected = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(D // H), dim=-1)
    torch.testing.assert_close(m(x, x, x)[1], expected)


def test_sqrt_d_model_flattens_the_softmax():
    """The FACTS figure: d_model 384, 6 heads; scaling by sqrt(d_model) is far flatter."""
    d_model, n_heads, L = 384, 6, 64
    d_head = d_model // n_heads
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, n_heads, L, d_head, generator=g)
    k = torch.randn(1, n_heads, L, d_head, generator=g)
    scores = q @ k.transpose(-2, -1)  # (1, H, L, L)
    right = torch.softmax(scores / math.sqrt(d_head), -1).amax(-1).mean()
    wrong = torch.softmax(scores / math.sqrt(d_model), -1).amax(-1).mean()
    assert wrong < right / 2
    assert wrong < 2.5 / L  # almost uniform over the 64 keys


@pytest.mark.parametrize("bias", [True, False])
def test_parameter_count_does_not_depend_on_heads(bias):
    d_model = 48
    counts = {
        n: sum(p.numel() for p in MultiHeadAttention(d_model, n, bias=bias).parameters())
        for n in (1, 2, 3, 4, 6, 8, 12, 16, 24, 48)
    }
    assert set(counts.values()) == {4 * d_model**2 + (4 * d_model if bias else 0)}
    theirs = nn.MultiheadAttention(d_model, 6, bias=bias)
    assert sum(p.numel() for p in theirs.parameters()) == counts[6]


def test_dropout_only_in_training():
    m = MultiHeadAttention(D, H, dropout=0.5)
    x = torch.randn(B, LQ, D)
    m.eval()
    torch.testing.assert_close(m(x, x, x)[0], m(x, x, x, need_weights=False)[0])
    m.train()
    a, b = m(x, x, x)[0], m(x, x, x)[0]
    assert not torch.allclose(a, b)


def test_mask_must_be_bool():
    m = MultiHeadAttention(D, H)
    x = torch.randn(B, LQ, D)
    with pytest.raises(TypeError, match="bool"):
        m(x, x, x, mask=torch.ones(LQ, LQ))


def test_gradients_flow_to_all_projections():
    m = MultiHeadAttention(D, H)
    x = torch.randn(B, LQ, D)
    m(x, x, x)[0].sum().backward()
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        assert getattr(m, name).weight.grad.abs().sum() > 0


def test_fused_kernel_is_the_torch_one():
    m = MultiHeadAttention(D, H).eval()
    x = torch.randn(B, LQ, D)
    q, k, v = (split_heads(p(x), H) for p in (m.q_proj, m.k_proj, m.v_proj))
    expected = m.out_proj(combine_heads(F.scaled_dot_product_attention(q, k, v)))
    torch.testing.assert_close(m(x, x, x, need_weights=False)[0], expected)


# ---------------------------------------------------------------------------
# neighbour_task: one head against two, at the same parameter count
# ---------------------------------------------------------------------------


def test_neighbour_task_inputs_and_targets():
    x, targets = neighbour_task(3, 5, 4, torch.Generator().manual_seed(0))
    assert x.shape == (3, 5, 4 + 5) and targets.shape == (3, 5, 2) and targets.dtype == torch.int64
    tokens = x[..., :4].argmax(dim=-1)  # (B, L)
    assert (x[..., :4].sum(-1) == 1).all()
    torch.testing.assert_close(x[..., 4:], torch.eye(5).expand(3, 5, 5))  # positions written in
    for p in range(5):
        assert torch.equal(targets[:, p, 0], tokens[:, (p - 1) % 5])
        assert torch.equal(targets[:, p, 1], tokens[:, (p + 1) % 5])
    with pytest.raises(ValueError):
        neighbour_task(1, 1, 4, torch.Generator())


def _train_neighbours(n_heads, vocab=8, seq_len=8, steps=150):
    from transformer_workbook.attention import fit

    torch.manual_seed(0)
    model = MultiHeadAttention(vocab + seq_len, n_heads)
    g = torch.Generator().manual_seed(1)

    def loss_fn():
        x, targets = neighbour_task(64, seq_len, vocab, g)
        out, _ = model(x, x, x)  # (B, L, 2 * vocab): previous-token and next-token logits
        logits = out.reshape(-1, seq_len, 2, vocab)
        return F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))

    fit(model.parameters(), loss_fn, steps=steps, lr=0.05)
    x, targets = neighbour_task(256, seq_len, vocab, torch.Generator().manual_seed(2))
    with torch.no_grad():
        out, weights = model(x, x, x)
    accuracy = (out.reshape(256, seq_len, 2, vocab).argmax(-1) == targets).float().mean(dim=(0, 1))
    return model, accuracy, weights


def test_two_heads_learn_both_neighbours_one_head_cannot():
    one, acc_one, _ = _train_neighbours(1)
    two, acc_two, weights = _train_neighbours(2)
    count = sum(p.numel() for p in one.parameters())
    assert count == sum(p.numel() for p in two.parameters())
    assert (acc_two > 0.99).all()
    assert acc_one.min() < 0.5  # one of the two relations is lost
    # Each of the two heads follows one neighbour: its weights sit on offset -1 or +1.
    L = weights.shape[-1]
    mean = weights.mean(dim=0)  # (H, L, L)
    offsets = []
    for h in range(2):
        keys = mean[h].argmax(dim=-1)  # (L,)
        offset = {int((k - p + 1) % L) - 1 for p, k in enumerate(keys.tolist())}
        assert len(offset) == 1 and mean[h].amax(dim=-1).min() > 0.7
        offsets.append(offset.pop())
    assert sorted(offsets) == [-1, 1]


# ---------------------------------------------------------------------------
# The optional KV cache (added for Chapter 5's incremental decoding)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("need_weights", [True, False])
def test_self_attention_cache_one_position_at_a_time_equals_the_full_pass(need_weights):
    m = MultiHeadAttention(D, H).eval()
    x = torch.randn(B, LK, D)
    full, full_w = m(x, x, x, mask=causal_mask(LK))
    cache = KVCache()
    outs = []
    for t in range(LK):
        new = x[:, t : t + 1]  # (B, 1, D): only the newest position
        out, w = m(new, new, new, mask=causal_mask_with_cache(1, t), need_weights=need_weights, cache=cache)
        outs.append(out)
        assert len(cache) == t + 1 and cache.k.shape == (B, H, t + 1, D // H)
        if need_weights:
            torch.testing.assert_close(w[:, :, 0], full_w[:, :, t, : t + 1])
    torch.testing.assert_close(torch.cat(outs, dim=1), full)


def test_static_cache_projects_the_memory_once():
    m = MultiHeadAttention(D, H).eval()
    q, memory = torch.randn(B, 2, D), torch.randn(B, LK, D)
    cache = KVCache(static=True)
    first, _ = m(q, memory, memory, cache=cache)
    torch.testing.assert_close(first, m(q, memory, memory)[0])
    k = cache.k
    ignored = torch.randn(B, LK, D)  # later calls reuse the cached keys and values
    again, _ = m(q, ignored, ignored, cache=cache)
    torch.testing.assert_close(again, first)
    assert cache.k is k and len(cache) == LK


def test_no_cache_is_the_old_behaviour():
    m = MultiHeadAttention(D, H).eval()
    q, kv = torch.randn(B, LQ, D), torch.randn(B, LK, D)
    for need_weights in (True, False):
        torch.testing.assert_close(
            m(q, kv, kv, need_weights=need_weights, cache=None)[0], m(q, kv, kv, need_weights=need_weights)[0]
        )
