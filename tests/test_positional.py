"""Chapter 3's package code against the paper's formulas, computed independently.

The reference values here come from the definitions, evaluated with Python
floats (float64) one entry at a time, not from the package's vectorised code.
"""

import cmath
import math

import pytest
import torch
import torch.nn.functional as F

from transformer_workbook.attention import scaled_dot_product_attention
from transformer_workbook.positional import (
    LearnedPositionalEmbedding,
    PositionalEncoding,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    apply_rope_half,
    interleaved_to_halves,
    rotate_half,
    shift_matrix,
    sinusoidal_encoding,
)


def paper_pe(seq_len: int, d_model: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)), float64."""
    rows = []
    for pos in range(seq_len):
        row = []
        for col in range(d_model):
            i = col // 2  # the pair this column belongs to
            angle = pos / 10000 ** (2 * i / d_model)
            row.append(math.sin(angle) if col % 2 == 0 else math.cos(angle))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64).reshape(seq_len, d_model)


# ---- sinusoidal_encoding ----------------------------------------------------


@pytest.mark.parametrize(
    "seq_len,d_model", [(1, 1), (5, 1), (4, 2), (7, 3), (10, 8), (6, 7), (50, 64), (128, 512), (33, 9)]
)
def test_matches_the_paper_formula(seq_len, d_model):
    pe = sinusoidal_encoding(seq_len, d_model)
    assert pe.shape == (seq_len, d_model)
    assert pe.dtype == torch.float32
    # float64 computation rounded once to float32: within float32's resolution.
    torch.testing.assert_close(pe.double(), paper_pe(seq_len, d_model), rtol=0, atol=1e-7)


def test_empty_table():
    assert sinusoidal_encoding(0, 6).shape == (0, 6)


def test_bad_sizes_raise():
    with pytest.raises(ValueError):
        sinusoidal_encoding(4, 0)
    with pytest.raises(ValueError):
        sinusoidal_encoding(-1, 4)


def test_landmarks():
    pe = sinusoidal_encoding(20, 6)
    # Positions start at 0: sin(0) = 0 on even columns, cos(0) = 1 on odd ones.
    assert torch.equal(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]))
    # Pair 0 has frequency 1: column 0 is sin(pos), column 1 cos(pos).
    pos = torch.arange(20, dtype=torch.float64)
    torch.testing.assert_close(pe[:, 0].double(), pos.sin(), rtol=0, atol=1e-7)
    torch.testing.assert_close(pe[:, 1].double(), pos.cos(), rtol=0, atol=1e-7)
    # Odd d_model: the last column is a sine (row 0 ends in 0, not 1).
    odd = sinusoidal_encoding(5, 5)
    assert odd[0, -1] == 0.0
    torch.testing.assert_close(odd[:, -1].double(), (pos[:5] / 10000 ** (4 / 5)).sin(),
                               rtol=0, atol=1e-7)
    # Each sin/cos pair lies on the unit circle.
    big = sinusoidal_encoding(100, 16).double()
    torch.testing.assert_close(big[:, 0::2] ** 2 + big[:, 1::2] ** 2,
                               torch.ones(100, 8, dtype=torch.float64))


def test_matches_the_common_vectorised_form():
    """The exp/log form of the PyTorch tutorial (even d_model) gives the same table."""
    d_model, seq_len = 32, 40
    position = torch.arange(seq_len, dtype=torch.float64).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64)
                         * (-math.log(10000.0) / d_model))
    pe = torch.zeros(seq_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    torch.testing.assert_close(sinusoidal_encoding(seq_len, d_model).double(), pe,
                               rtol=0, atol=1e-7)


def test_wavelengths_form_a_geometric_progression():
    d_model = 16
    wavelengths = [2 * math.pi * 10000 ** (2 * i / d_model) for i in range(d_model // 2)]
    ratios = [b / a for a, b in zip(wavelengths, wavelengths[1:], strict=False)]
    assert all(math.isclose(r, 10000 ** (2 / d_model)) for r in ratios)
    # Column 2i repeats after its wavelength (checked on pair 1, wavelength 2 pi * 10000^(1/8)).
    w1 = 10000 ** (-2 / d_model)
    assert math.isclose(math.sin(w1 * (3 + wavelengths[1])), math.sin(w1 * 3), abs_tol=1e-9)


# ---- the rotation property ------------------------------------------------------


@pytest.mark.parametrize("d_model", [2, 8, 64])
@pytest.mark.parametrize("k", [1, 3, 17, -5])
def test_shift_is_a_fixed_linear_map(d_model, k):
    """PE(pos + k) = M_k PE(pos) for every pos, with M_k independent of pos."""
    table = paper_pe(60, d_model)  # float64, from the definition
    m = shift_matrix(k, d_model).double()
    lo = max(0, -k)
    hi = 60 - max(0, k)
    for pos in range(lo, hi):
        torch.testing.assert_close(m @ table[pos], table[pos + k], rtol=0, atol=1e-6)


def test_shift_matrix_is_a_rotation_and_composes():
    d = 16
    a, b = shift_matrix(3, d).double(), shift_matrix(4, d).double()
    eye = torch.eye(d, dtype=torch.float64)
    torch.testing.assert_close(a @ a.T, eye, rtol=0, atol=1e-6)
    torch.testing.assert_close(b @ a, shift_matrix(7, d).double(), rtol=0, atol=1e-6)
    torch.testing.assert_close(shift_matrix(0, d).double(), eye)
    torch.testing.assert_close(shift_matrix(-3, d).double(), a.T, rtol=0, atol=1e-7)
    # Block diagonal: nothing links two different pairs.
    mask = torch.block_diag(*[torch.ones(2, 2)] * (d // 2)).bool()
    assert torch.all(a[~mask] == 0)


@pytest.mark.parametrize("d_model", [0, 1, 7])
def test_shift_matrix_needs_even_d_model(d_model):
    with pytest.raises(ValueError, match="even"):
        shift_matrix(1, d_model)


def test_dot_product_depends_only_on_distance():
    """PE(p) . PE(q) = sum_i cos(w_i (p - q)), symmetric in p - q, largest at p = q."""
    d, n = 32, 40
    pe = sinusoidal_encoding(n, d).double()
    dots = pe @ pe.T  # (n, n)
    w = [10000 ** (-2 * i / d) for i in range(d // 2)]
    for p in range(n):
        for q in range(n):
            expected = sum(math.cos(wi * (p - q)) for wi in w)
            assert math.isclose(dots[p, q].item(), expected, abs_tol=1e-5)
    # Along every diagonal the value is constant (Toeplitz), and d/2 on the main one.
    for offset in range(-5, 6):
        diag = torch.diagonal(dots, offset)
        torch.testing.assert_close(diag, diag[0].expand_as(diag), rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.diagonal(dots), torch.full((n,), d / 2, dtype=torch.float64))
    assert (dots.max(dim=1).indices == torch.arange(n)).all()


# ---- attention ignores order without positions -------------------------------


def test_attention_is_permutation_equivariant_until_positions_are_added():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 8, generator=g, dtype=torch.float64)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    out, _ = scaled_dot_product_attention(x, x, x)
    out_p, _ = scaled_dot_product_attention(x[perm], x[perm], x[perm])
    torch.testing.assert_close(out_p, out[perm])
    xp = x + sinusoidal_encoding(6, 8).double()
    xp_shuffled = x[perm] + sinusoidal_encoding(6, 8).double()  # positions stay in place
    out, _ = scaled_dot_product_attention(xp, xp, xp)
    out_p, _ = scaled_dot_product_attention(xp_shuffled, xp_shuffled, xp_shuffled)
    assert not torch.allclose(out_p, out[perm], atol=1e-3)


# ---- PositionalEncoding ------------------------------------------------------


def test_positional_encoding_adds_the_table():
    torch.manual_seed(0)
    module = PositionalEncoding(d_model=12, max_len=30)
    x = torch.randn(3, 10, 12)
    torch.testing.assert_close(module(x), x + sinusoidal_encoding(10, 12))
    # Any leading dimensions; an unbatched (L, d) input too.
    x4 = torch.randn(2, 4, 7, 12)
    torch.testing.assert_close(module(x4), x4 + sinusoidal_encoding(7, 12))
    torch.testing.assert_close(module(x[0]), x[0] + sinusoidal_encoding(10, 12))
    # The table up to max_len is exactly the function's.
    torch.testing.assert_close(module.pe, sinusoidal_encoding(30, 12))


def test_positional_encoding_buffer_is_not_persistent_or_trainable():
    module = PositionalEncoding(d_model=8, max_len=16)
    assert "pe" in dict(module.named_buffers())
    assert "pe" not in module.state_dict()
    assert list(module.parameters()) == []
    # It still follows the module across dtypes (and devices).
    module64 = PositionalEncoding(d_model=8, max_len=16).to(torch.float64)
    assert module64.pe.dtype == torch.float64
    # Loading a state_dict saved without the buffer works (strict).
    PositionalEncoding(d_model=8, max_len=16).load_state_dict(module.state_dict())


def test_positional_encoding_past_max_len_raises_clearly():
    module = PositionalEncoding(d_model=8, max_len=16)
    module(torch.zeros(1, 16, 8))  # exactly max_len is fine
    with pytest.raises(ValueError, match="max_len=16"):
        module(torch.zeros(1, 17, 8))


def test_positional_encoding_wrong_width_raises():
    with pytest.raises(ValueError, match="d_model=8"):
        PositionalEncoding(d_model=8, max_len=16)(torch.zeros(2, 4, 6))


def test_positional_encoding_dropout_and_gradients():
    module = PositionalEncoding(d_model=8, max_len=16, dropout=0.5)
    x = torch.ones(4, 10, 8, requires_grad=True)
    module.eval()
    torch.testing.assert_close(module(x), x + sinusoidal_encoding(10, 8))
    module.train()
    torch.manual_seed(0)
    y = module(x)
    zeroed = y == 0
    assert 0.3 < zeroed.float().mean() < 0.7
    torch.testing.assert_close(y[~zeroed], ((x + sinusoidal_encoding(10, 8)) * 2)[~zeroed])
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


# ---- LearnedPositionalEmbedding --------------------------------------------------


def test_learned_embedding_adds_its_rows():
    torch.manual_seed(0)
    module = LearnedPositionalEmbedding(max_len=10, d_model=6)
    table = module.embedding.weight
    assert table.shape == (10, 6) and table.requires_grad
    assert sum(p.numel() for p in module.parameters()) == 60
    assert "embedding.weight" in module.state_dict()
    assert table.std().item() < 0.05  # initialised small, N(0, 0.02^2)
    x = torch.randn(2, 7, 6)
    torch.testing.assert_close(module(x), x + table[:7])


def test_learned_embedding_only_first_rows_get_gradient():
    module = LearnedPositionalEmbedding(max_len=10, d_model=4)
    module(torch.zeros(3, 6, 4)).sum().backward()
    grad = module.embedding.weight.grad
    assert (grad[:6] != 0).all() and (grad[6:] == 0).all()


def test_learned_embedding_has_nothing_past_max_len():
    module = LearnedPositionalEmbedding(max_len=10, d_model=4)
    module(torch.zeros(1, 10, 4))
    with pytest.raises(ValueError, match="max_len=10"):
        module(torch.zeros(1, 11, 4))
    with pytest.raises(ValueError, match="d_model=4"):
        module(torch.zeros(1, 3, 5))


# ---- RoPE -------------------------------------------------------------------


def rope_complex(x: torch.Tensor, positions, base: float = 10000.0) -> torch.Tensor:
    """RoPE as complex multiplication, entry by entry: z_i * exp(1j * m * theta_i)."""
    *lead, length, d = x.shape
    flat = x.double().reshape(-1, length, d)
    out = torch.empty_like(flat)
    for b in range(flat.shape[0]):
        for t in range(length):
            m = float(positions[t])
            for i in range(d // 2):
                z = complex(flat[b, t, 2 * i].item(), flat[b, t, 2 * i + 1].item())
                z = z * cmath.exp(1j * m * base ** (-2 * i / d))
                out[b, t, 2 * i], out[b, t, 2 * i + 1] = z.real, z.imag
    return out.reshape(*lead, length, d)


@pytest.mark.parametrize("shape", [(5, 4), (2, 6, 8), (2, 3, 4, 6)])
def test_rope_matches_complex_multiplication(shape):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    length = shape[-2]
    torch.testing.assert_close(apply_rope(x), rope_complex(x, range(length)))
    positions = torch.tensor([7, 2, 30, 4, 11, 0][:length])
    torch.testing.assert_close(apply_rope(x, positions), rope_complex(x, positions.tolist()))
    torch.testing.assert_close(apply_rope(x, positions, base=100.0),
                               rope_complex(x, positions.tolist(), base=100.0))


def test_rope_score_depends_only_on_the_offset():
    g = torch.Generator().manual_seed(2)
    d = 16
    q = torch.randn(d, generator=g, dtype=torch.float64)
    k = torch.randn(d, generator=g, dtype=torch.float64)

    def score(m, n):
        qm = apply_rope(q[None], torch.tensor([m]))[0]
        kn = apply_rope(k[None], torch.tensor([n]))[0]
        return (qm @ kn).item()

    for m, n in [(0, 3), (5, 2), (40, 40), (9, 1)]:
        for shift in (1, 7, 100, 1234):
            assert math.isclose(score(m, n), score(m + shift, n + shift), abs_tol=1e-9)
    # ... and it does depend on the offset.
    assert not math.isclose(score(0, 1), score(0, 5), abs_tol=1e-3)
    # At offset 0 it is the plain dot product.
    assert math.isclose(score(12, 12), (q @ k).item(), abs_tol=1e-9)


def test_rope_full_score_matrix_is_toeplitz():
    g = torch.Generator().manual_seed(3)
    q = torch.randn(1, 1, 8, generator=g, dtype=torch.float64).expand(1, 12, 8)  # same q everywhere
    k = torch.randn(1, 1, 8, generator=g, dtype=torch.float64).expand(1, 12, 8)
    scores = apply_rope(q) @ apply_rope(k).transpose(-2, -1)  # (1, 12, 12)
    for offset in range(-11, 12):
        diag = torch.diagonal(scores[0], offset)
        torch.testing.assert_close(diag, diag[0].expand_as(diag))


def test_rope_keeps_norms_shape_dtype_and_position_zero():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 9, 10, generator=g)
    y = apply_rope(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    pairs_x = x.reshape(2, 9, 5, 2).norm(dim=-1)
    pairs_y = y.reshape(2, 9, 5, 2).norm(dim=-1)
    torch.testing.assert_close(pairs_y, pairs_x)
    torch.testing.assert_close(y[:, 0], x[:, 0])  # position 0: no rotation
    assert apply_rope(x.double()).dtype == torch.float64


def test_rope_relates_to_the_sinusoidal_table():
    """Rotating the vector (0, 1, 0, 1, ...) by position m gives (-sin, cos, ...)."""
    d, n = 8, 6
    x = torch.tensor([0.0, 1.0] * (d // 2), dtype=torch.float64).expand(n, d)
    pe = sinusoidal_encoding(n, d).double()
    expected = pe.clone()
    expected[:, 0::2] = -pe[:, 0::2]
    torch.testing.assert_close(apply_rope(x), expected, rtol=0, atol=1e-7)


def test_rope_needs_even_size():
    with pytest.raises(ValueError, match="even"):
        apply_rope(torch.zeros(3, 5))


# ---- RoPE in the halves layout (Hugging Face) --------------------------------


def hf_rope(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Hugging Face Llama's RoPE, as its code writes it: inv_freq, cat(freqs, freqs), rotate_half."""
    d, length = x.shape[-1], x.shape[-2]
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    freqs = torch.outer(torch.arange(length, dtype=torch.float64), inv_freq)  # (L, d/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (L, d)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return x * emb.cos() + torch.cat((-x2, x1), dim=-1) * emb.sin()


@pytest.mark.parametrize("shape", [(6, 4), (2, 7, 8), (2, 3, 5, 16)])
def test_rope_half_matches_hugging_face_and_permutes_into_apply_rope(shape):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(apply_rope_half(x), hf_rope(x))
    torch.testing.assert_close(apply_rope_half(x, base=500.0), hf_rope(x, base=500.0))
    perm = interleaved_to_halves(shape[-1])
    # The two conventions agree up to the permutation of the features ...
    torch.testing.assert_close(apply_rope_half(x[..., perm]), apply_rope(x)[..., perm])
    # ... so the scores (dot products over all features) are the same.
    y = torch.randn(*shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        apply_rope_half(x[..., perm]) @ apply_rope_half(y[..., perm]).transpose(-2, -1),
        apply_rope(x) @ apply_rope(y).transpose(-2, -1),
    )
    # Without the permutation they differ (the pairs are other features).
    assert not torch.allclose(apply_rope_half(x), apply_rope(x))


def test_rotate_half_and_the_permutation():
    x = torch.arange(6.0)
    torch.testing.assert_close(rotate_half(x), torch.tensor([-3.0, -4.0, -5.0, 0.0, 1.0, 2.0]))
    assert interleaved_to_halves(6).tolist() == [0, 2, 4, 1, 3, 5]
    with pytest.raises(ValueError):
        interleaved_to_halves(5)
    with pytest.raises(ValueError, match="even"):
        apply_rope_half(torch.zeros(2, 3))


# ---- ALiBi ----------------------------------------------------------------------


def paper_slopes(n):
    """The slopes exactly as the ALiBi paper's code (ofirpress/attention_with_linear_biases) computes them."""

    def get_slopes_power_of_2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        ratio = start
        return [start * ratio**i for i in range(n)]

    if math.log2(n).is_integer():
        return get_slopes_power_of_2(n)
    closest_power_of_2 = 2 ** math.floor(math.log2(n))
    return get_slopes_power_of_2(closest_power_of_2) + paper_slopes(2 * closest_power_of_2)[0::2][
        : n - closest_power_of_2
    ]


@pytest.mark.parametrize("n_heads", [1, 2, 3, 4, 6, 8, 12, 16, 20])
def test_alibi_slopes_match_the_paper(n_heads):
    slopes = alibi_slopes(n_heads)
    assert slopes.shape == (n_heads,) and slopes.dtype == torch.float32
    torch.testing.assert_close(slopes.double(), torch.tensor(paper_slopes(n_heads), dtype=torch.float64))


def test_alibi_slopes_for_eight_heads_are_halvings():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0**-h for h in range(1, 9)]))
    with pytest.raises(ValueError):
        alibi_slopes(0)


def test_alibi_bias_is_minus_slope_times_distance():
    bias = alibi_bias(6, 4)
    assert bias.shape == (4, 6, 6)
    slopes = alibi_slopes(4)
    for h in range(4):
        for i in range(6):
            for j in range(6):
                assert bias[h, i, j].item() == pytest.approx(-slopes[h].item() * abs(i - j))
    # It depends on i - j only, and a longer table extends the shorter one.
    torch.testing.assert_close(alibi_bias(20, 4)[:, :6, :6], bias)
    torch.testing.assert_close(alibi_bias(20, 4)[:, 7:13, 7:13], bias)


def test_alibi_bias_as_a_float_mask_of_torch_attention():
    """Added to the scores: the same as F.scaled_dot_product_attention with a float attn_mask."""
    g = torch.Generator().manual_seed(6)
    q, k, v = (torch.randn(2, 4, 7, 8, generator=g) for _ in range(3))  # (B, H, L, d)
    causal = torch.ones(7, 7, dtype=torch.bool).tril()
    bias = alibi_bias(7, 4).masked_fill(~causal, float("-inf"))  # (H, L, L)
    scores = q @ k.transpose(-2, -1) / math.sqrt(8) + bias
    ours = torch.softmax(scores, dim=-1) @ v
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=bias))
