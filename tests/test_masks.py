"""Chapter 6's masks against PyTorch's conventions, and what a fully masked row does."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer_workbook import multihead
from transformer_workbook.attention import scaled_dot_product_attention, softmax
from transformer_workbook.masks import (
    as_head_mask,
    causal_mask,
    causal_mask_with_cache,
    combine_masks,
    from_torch_mask,
    padding_mask,
    padding_mask_from_tokens,
    to_float_mask,
    to_torch_attn_mask,
    to_torch_key_padding_mask,
)
from transformer_workbook.multihead import MultiHeadAttention

B, L, D, H = 3, 6, 8, 2


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---------------------------------------------------------------------------
# Building masks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 5])
def test_causal_mask_is_lower_triangle(n):
    m = causal_mask(n)
    assert m.dtype == torch.bool and m.shape == (n, n)
    for i in range(n):
        for j in range(n):
            assert bool(m[i, j]) == (j <= i)  # query i sees keys 0..i


def test_causal_mask_device_and_empty():
    assert causal_mask(3, device="cpu").device.type == "cpu"
    assert causal_mask(0).shape == (0, 0)


@pytest.mark.parametrize("n_new,n_cached", [(1, 0), (1, 4), (3, 2), (4, 0), (2, 7)])
def test_causal_mask_with_cache_is_the_last_rows_of_the_full_mask(n_new, n_cached):
    m = causal_mask_with_cache(n_new, n_cached)
    assert m.shape == (n_new, n_cached + n_new)
    torch.testing.assert_close(m, causal_mask(n_cached + n_new)[n_cached:], rtol=0, atol=0)
    if n_new == 1:  # one new token sees everything cached and itself
        assert m.all()


def test_causal_mask_without_offset_is_wrong_with_a_cache():
    """The trap the offset avoids: an unshifted triangle hides most of the cache."""
    unshifted = torch.ones(2, 5, dtype=torch.bool).tril()  # (n_new=2, 5 keys), diagonal not shifted
    assert not torch.equal(unshifted, causal_mask_with_cache(2, 3))
    assert unshifted[0].sum() == 1  # the first new query would see key 0 only


def test_padding_mask():
    m = padding_mask(torch.tensor([3, 1, 0]), 4)
    expected = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    torch.testing.assert_close(m, expected, rtol=0, atol=0)
    assert padding_mask([2, 4]).shape == (2, 4)  # max_len defaults to the longest
    with pytest.raises(ValueError):
        padding_mask([5], 4)
    with pytest.raises(ValueError):
        padding_mask(torch.ones(2, 2, dtype=torch.long), 4)


def test_padding_mask_from_tokens():
    tokens = torch.tensor([[5, 6, 0, 0], [7, 0, 0, 0]])
    torch.testing.assert_close(
        padding_mask_from_tokens(tokens, 0), padding_mask(torch.tensor([2, 1]), 4), rtol=0, atol=0
    )


def test_combine_masks_is_logical_and_with_broadcast_shapes():
    keep = padding_mask(torch.tensor([4, 2, 3]), 4)  # (B, Lk)
    causal = causal_mask(4)  # (Lq, Lk)
    m = combine_masks(keep, causal)
    assert m.shape == (3, 1, 4, 4)
    for b in range(3):
        for i in range(4):
            for j in range(4):
                assert bool(m[b, 0, i, j]) == (bool(keep[b, j]) and j <= i)
    assert combine_masks(keep).shape == (3, 1, 1, 4)
    assert combine_masks(attn=causal).shape == (1, 1, 4, 4)
    assert combine_masks() is None
    with pytest.raises(TypeError, match="bool"):
        combine_masks(keep.float())
    with pytest.raises(ValueError):
        combine_masks(keep[:, None])


def test_as_head_mask_shapes():
    assert as_head_mask(torch.ones(4, 5, dtype=torch.bool)).shape == (1, 1, 4, 5)
    assert as_head_mask(torch.ones(3, 4, 5, dtype=torch.bool)).shape == (3, 1, 4, 5)
    assert as_head_mask(torch.ones(3, 1, 1, 5, dtype=torch.bool)).shape == (3, 1, 1, 5)
    with pytest.raises(TypeError):
        as_head_mask(torch.ones(4, 5))
    with pytest.raises(ValueError):
        as_head_mask(torch.ones(5, dtype=torch.bool))


# ---------------------------------------------------------------------------
# Conversions, against PyTorch's own masks and modules
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3, 7])
def test_float_causal_mask_equals_generate_square_subsequent_mask(n):
    theirs = nn.Transformer.generate_square_subsequent_mask(n)
    torch.testing.assert_close(to_float_mask(causal_mask(n)), theirs, rtol=0, atol=0)
    torch.testing.assert_close(from_torch_mask(theirs), causal_mask(n), rtol=0, atol=0)


def test_from_torch_mask_bool_is_inverted_and_round_trips():
    mask = torch.rand(B, L, L) > 0.5
    torch.testing.assert_close(from_torch_mask(~mask), mask, rtol=0, atol=0)
    torch.testing.assert_close(from_torch_mask(to_float_mask(mask)), mask, rtol=0, atol=0)
    assert to_float_mask(mask, torch.float64).dtype == torch.float64


def test_from_torch_mask_rejects_biases_and_ints():
    with pytest.raises(ValueError, match="biases"):
        from_torch_mask(torch.tensor([[0.0, -1.0]]))
    with pytest.raises(TypeError):
        from_torch_mask(torch.tensor([[0, 1]]))


def test_to_torch_attn_mask_is_the_one_in_multihead():
    """One implementation: multihead re-exports masks.to_torch_attn_mask (Chapter 2's import works)."""
    assert multihead.to_torch_attn_mask is to_torch_attn_mask


def _pair():
    theirs = nn.MultiheadAttention(D, H, batch_first=True).eval()
    return theirs, MultiHeadAttention.from_torch(theirs).eval()


def test_converted_masks_give_torch_the_same_attention():
    """Padding + causal in the course's convention, converted three ways for nn.MultiheadAttention."""
    theirs, ours = _pair()
    x = torch.randn(B, L, D)
    keep = padding_mask(torch.tensor([L, 4, 2]), L)  # (B, L)
    causal = causal_mask(L)
    out_o, w_o = ours(x, x, x, mask=combine_masks(keep, causal))
    # 1. both as additive float masks (0 = may attend, -inf = blocked)
    out_1, w_1 = theirs(x, x, x, key_padding_mask=to_float_mask(keep),
                        attn_mask=to_float_mask(causal), average_attn_weights=False)
    # 2. key_padding_mask + a bool attn_mask (True = blocked)
    out_2, _ = theirs(x, x, x, key_padding_mask=to_torch_key_padding_mask(keep), attn_mask=~causal)
    # 3. everything in one (B * H, Lq, Lk) attn_mask
    out_3, _ = theirs(x, x, x, attn_mask=to_torch_attn_mask(combine_masks(keep, causal), B, H, L, L))
    for out in (out_1, out_2, out_3):
        torch.testing.assert_close(out_o, out)
    torch.testing.assert_close(w_o, w_1)


def test_unconverted_causal_mask_attends_to_the_future():
    """The polarity trap: the course's causal mask given to nn.MultiheadAttention unconverted."""
    theirs, ours = _pair()
    x = torch.randn(1, L, D)
    causal = causal_mask(L)  # True = may attend
    _, w_ours = ours(x, x, x, mask=causal)
    assert (w_ours[0][:, ~causal] == 0).all()  # ours: nothing on the future
    out_wrong, w_wrong = theirs(x, x, x, attn_mask=causal, average_attn_weights=False)
    future = ~causal  # (L, L): keys after the query
    w_first = w_wrong[0, :, :-1]  # (H, L-1, L): every query but the last
    assert (w_first[:, ~causal[:-1]] > 0).all()  # read as "True = blocked": only the future is seen
    assert (w_first[:, causal[:-1]] == 0).all()
    torch.testing.assert_close(w_first.sum(-1), torch.ones(H, L - 1))
    assert future[:-1].any(-1).all()
    assert out_wrong[:, -1].isnan().all()  # the last query is blocked from every key: NaN


# ---------------------------------------------------------------------------
# Fully masked rows: the course's decision, on every path
# ---------------------------------------------------------------------------


def _fully_masked_case():
    q, k, v = torch.randn(1, H, 3, 4), torch.randn(1, H, 5, 4), torch.randn(1, H, 5, 4)
    mask = torch.ones(1, 1, 3, 5, dtype=torch.bool)
    mask[..., 1, :] = False  # query 1 may attend to nothing
    return q, k, v, mask


def test_fully_masked_row_gives_zero_weights_and_output_not_nan():
    q, k, v, mask = _fully_masked_case()
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert not out.isnan().any() and not w.isnan().any()
    assert (w[..., 1, :] == 0).all() and (out[..., 1, :] == 0).all()
    torch.testing.assert_close(w[..., 0, :].sum(-1), torch.ones(1, H))  # other rows still sum to 1


def test_fused_kernel_agrees_on_fully_masked_rows():
    """F.scaled_dot_product_attention (the layers' fast path) also gives zeros, and zero gradient."""
    q, k, v, mask = _fully_masked_case()
    q.requires_grad_(True)
    ours, _ = scaled_dot_product_attention(q, k, v, mask)
    fused = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(fused, ours)
    fused.sum().backward()
    assert (q.grad[..., 1, :] == 0).all() and not q.grad.isnan().any()


def test_multihead_both_paths_agree_on_fully_masked_rows():
    m = MultiHeadAttention(D, H).eval()
    x = torch.randn(1, 4, D)
    mask = causal_mask(4).clone()
    mask[0] = False  # the first query may attend to nothing
    out_w, _ = m(x, x, x, mask=mask)
    out_f, _ = m(x, x, x, mask=mask, need_weights=False)
    torch.testing.assert_close(out_f, out_w)
    torch.testing.assert_close(out_w[:, 0], m.out_proj.bias.expand(1, D))  # zero attention, then W_O's bias


def test_other_conventions_on_fully_masked_rows():
    """What the alternatives do: -inf in a naive softmax -> NaN, -1e9 -> uniform, torch MHA -> NaN."""
    scores = torch.randn(2, 4)
    blocked = torch.tensor([[True] * 4, [True, False, False, True]])  # row 0 blocks everything
    naive = torch.exp(scores.masked_fill(blocked, float("-inf")))
    naive = naive / naive.sum(-1, keepdim=True)
    assert naive[0].isnan().all()
    assert not softmax(scores.masked_fill(blocked, float("-inf")))[0].isnan().any()  # the course's: zeros
    big_negative = torch.softmax(scores.masked_fill(blocked, -1e9), -1)
    torch.testing.assert_close(big_negative[0], torch.full((4,), 0.25))  # uniform over masked keys
    theirs, _ = _pair()
    x = torch.randn(1, 3, D)
    out, _ = theirs(x, x, x, key_padding_mask=torch.ones(1, 3, dtype=torch.bool))
    assert out.isnan().all()


# ---------------------------------------------------------------------------
# Sliding windows and the leakage test
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n,window", [(1, 1), (5, 1), (6, 2), (7, 3), (4, 9)])
def test_sliding_window_mask_is_the_band(n, window):
    from transformer_workbook.masks import sliding_window_mask

    for causal in (True, False):
        m = sliding_window_mask(n, window, causal=causal)
        assert m.dtype == torch.bool and m.shape == (n, n)
        for i in range(n):
            for j in range(n):
                assert bool(m[i, j]) == (abs(i - j) < window and (j <= i or not causal))
    # as wide as the sequence: the causal mask, or everything
    assert torch.equal(sliding_window_mask(n, n), causal_mask(n))
    assert sliding_window_mask(n, n, causal=False).all()
    with pytest.raises(ValueError):
        sliding_window_mask(3, 0)


def _mha_layer(mask_fn, fused=True):
    m = MultiHeadAttention(D, H).eval()

    def layer(x):
        mask = mask_fn(x.size(1))
        return m(x, x, x, mask=mask, need_weights=not fused)[0]

    return layer


def test_leaks_future_on_the_course_layers():
    from transformer_workbook.decoder import Decoder
    from transformer_workbook.masks import leaks_future, sliding_window_mask

    x = torch.randn(2, 7, D)
    assert not leaks_future(_mha_layer(causal_mask), x)
    assert not leaks_future(_mha_layer(causal_mask, fused=False), x)
    assert not leaks_future(_mha_layer(lambda n: sliding_window_mask(n, 3)), x)
    decoder = Decoder(D, H, 2, 16, norm_first=True, cross_attention=False).eval()
    assert not leaks_future(lambda x: decoder(x, self_mask=causal_mask(x.size(1))), x)
    # leaks: no mask, a symmetric window, the diagonal shifted by one
    assert leaks_future(_mha_layer(lambda n: None), x)
    assert leaks_future(_mha_layer(lambda n: sliding_window_mask(n, 2, causal=False)), x)
    assert leaks_future(_mha_layer(lambda n: torch.ones(n, n, dtype=torch.bool).tril(1)), x)


def test_leaks_future_catches_one_pair_and_order_blind_leaks():
    from transformer_workbook.masks import leaks_future

    x = torch.randn(1, 8, D)

    def one_pair(n):
        mask = causal_mask(n).clone()
        mask[3, 5] = True  # query 3 may see key 5, nothing else looks ahead
        return mask

    assert leaks_future(_mha_layer(one_pair), x)
    # the inverted (nn.MultiheadAttention-style) mask: each query sees exactly the future
    inverted = _mha_layer(lambda n: ~causal_mask(n))
    assert leaks_future(inverted, x)
    # ... which a test that only shuffles the future misses: attention ignores key order
    shuffled = x.clone()
    shuffled[:, 1:] = x[:, 1:].flip(1)
    torch.testing.assert_close(inverted(shuffled)[:, 0], inverted(x)[:, 0])
    # centring over the sequence leaks the mean of the future
    attend = _mha_layer(causal_mask)
    assert leaks_future(lambda x: attend(x - x.mean(dim=1, keepdim=True)), x)


def test_leaks_future_finds_a_weak_leak_and_pytorch_with_an_unconverted_mask():
    from transformer_workbook.masks import leaks_future

    x = torch.randn(2, 6, D)
    m = MultiHeadAttention(D, H).eval()

    def weak(x):  # the future's scores lowered by 9 instead of -inf: weights of about 1e-4
        n = x.size(1)
        bias = torch.zeros(n, n).masked_fill(~causal_mask(n), -9.0)
        q, k, v = (multihead.split_heads(p(x), H) for p in (m.q_proj, m.k_proj, m.v_proj))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return m.out_proj(multihead.combine_heads(out))

    assert leaks_future(weak, x)
    theirs = nn.MultiheadAttention(D, H, batch_first=True).eval()
    unconverted = lambda x: theirs(x, x, x, attn_mask=causal_mask(x.size(1)), need_weights=False)[0]  # noqa: E731
    converted = lambda x: theirs(x, x, x, attn_mask=~causal_mask(x.size(1)), need_weights=False)[0]  # noqa: E731
    assert not leaks_future(converted, x)
    # unconverted, the last query is blocked from every key (NaN) and the others see the future
    assert leaks_future(lambda x: unconverted(x).nan_to_num(), x)
