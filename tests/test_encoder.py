"""Chapter 4's encoder against torch.nn (after copying weights) and the paper."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn

from transformer_workbook.encoder import (
    Encoder,
    EncoderLayer,
    FeedForward,
    InputEmbedding,
    LayerNorm,
    RMSNorm,
    SwiGLU,
    record_attention,
)
from transformer_workbook.masks import combine_masks, padding_mask
from transformer_workbook.positional import sinusoidal_encoding

B, L, D, H, FF = 3, 7, 16, 4, 32


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _randomize(module: nn.Module) -> nn.Module:
    """Random values for every parameter (norm gains and biases too), so nothing is trivially 1 or 0."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if p.dim() == 1 and p.shape[0] == D else 0.0))
    return module


# ---------------------------------------------------------------------------
# LayerNorm and RMSNorm
# ---------------------------------------------------------------------------


def test_layer_norm_equals_torch():
    ours, theirs = LayerNorm(D), nn.LayerNorm(D)
    _randomize(theirs)
    ours.load_state_dict(theirs.state_dict())  # same parameter names: weight, bias
    x = torch.randn(B, L, D) * 3 + 1
    torch.testing.assert_close(ours(x), theirs(x))
    x.requires_grad_(True)
    g1 = torch.autograd.grad(ours(x).pow(2).sum(), x)[0]
    g2 = torch.autograd.grad(theirs(x).pow(2).sum(), x)[0]
    torch.testing.assert_close(g1, g2)


def test_layer_norm_equals_the_formula_written_out():
    """The docstring's formula (what Chapter 4 builds inline), values and gradients."""
    ln = _randomize(LayerNorm(D, eps=1e-3))
    x = (torch.randn(B, L, D, dtype=torch.float64) * 2 + 1).requires_grad_(True)
    ln = ln.double()
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # biased
    by_hand = (x - mean) / torch.sqrt(var + 1e-3) * ln.weight + ln.bias
    torch.testing.assert_close(ln(x), by_hand)
    g = torch.randn_like(x)
    params = (x, ln.weight, ln.bias)
    grads = torch.autograd.grad(ln(x), params, g)
    for a, b in zip(grads, torch.autograd.grad(by_hand, params, g), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("eps", [1e-5, 1e-6, 0.1])
def test_layer_norm_eps_inside_the_square_root(eps):
    x = torch.randn(2, D) * 0.01  # small variance: eps matters
    torch.testing.assert_close(LayerNorm(D, eps)(x), nn.LayerNorm(D, eps)(x))
    constant = torch.full((1, D), 3.0)  # variance 0: only eps keeps it finite
    assert (LayerNorm(D, eps)(constant) == 0).all()


def test_layer_norm_paper_example_and_the_unbiased_trap():
    x = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    ours = LayerNorm(4, eps=0.0)(x)
    eps_outside = (x - x.mean(-1, keepdim=True)) / (x.std(-1, unbiased=False, keepdim=True) + 0.1)
    assert not torch.allclose(LayerNorm(4, eps=0.1)(x), eps_outside, atol=1e-3)  # where eps goes matters
    expected = torch.tensor([[math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3)]])
    torch.testing.assert_close(ours, expected)  # [1.732, -0.577, -0.577, -0.577]
    unbiased = (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True)  # std divides by d - 1
    torch.testing.assert_close(unbiased, torch.tensor([[1.5, -0.5, -0.5, -0.5]]))
    assert not torch.allclose(unbiased, ours, atol=0.1)


def test_layer_norm_normalizes_each_position_alone():
    x = torch.randn(B, L, D) * 5 + 2
    y = LayerNorm(D)(x)
    torch.testing.assert_close(y.mean(-1), torch.zeros(B, L), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(B, L), atol=1e-3, rtol=0)
    x2 = x.clone()
    x2[0, 0] += 100  # another position changes: nothing else moves
    torch.testing.assert_close(LayerNorm(D)(x2)[0, 1:], y[0, 1:])


@pytest.mark.parametrize("eps", [None, 1e-6])
def test_rms_norm_equals_torch(eps):
    ours, theirs = RMSNorm(D, eps), nn.RMSNorm(D, eps)
    _randomize(theirs)
    ours.load_state_dict(theirs.state_dict())
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(B, L, D, dtype=dtype) * 3 + 1
        torch.testing.assert_close(ours.to(dtype)(x), theirs.to(dtype)(x))


def test_rms_norm_has_no_centring():
    x = torch.full((1, D), 2.0)
    torch.testing.assert_close(RMSNorm(D, 0.0)(x), torch.ones(1, D))  # LayerNorm would give 0
    assert sum(p.numel() for p in RMSNorm(D).parameters()) == D  # gain only


# ---------------------------------------------------------------------------
# Feed-forward networks
# ---------------------------------------------------------------------------


def test_feed_forward_is_relu_mlp_per_position():
    ff = FeedForward(D, FF)
    x = torch.randn(B, L, D)
    expected = torch.relu(x @ ff.linear1.weight.T + ff.linear1.bias) @ ff.linear2.weight.T + ff.linear2.bias
    torch.testing.assert_close(ff(x), expected)
    assert sum(p.numel() for p in ff.parameters()) == 2 * D * FF + FF + D
    torch.testing.assert_close(ff(x[:, 3:4]), ff(x)[:, 3:4])  # position-wise
    with pytest.raises(ValueError):
        FeedForward(D, FF, activation="tanh")


def test_swiglu_formula_and_size():
    ff = SwiGLU(D, FF)
    x = torch.randn(B, L, D)
    gate = x @ ff.gate_proj.weight.T
    expected = (gate * torch.sigmoid(gate) * (x @ ff.up_proj.weight.T)) @ ff.down_proj.weight.T
    torch.testing.assert_close(ff(x), expected)
    assert sum(p.numel() for p in ff.parameters()) == 3 * D * FF  # three matrices, no biases
    # d_ff = 8/3 * d_model matches a ReLU FFN with d_ff = 4 * d_model (without biases)
    d = 48
    assert sum(p.numel() for p in SwiGLU(d, 8 * d // 3).parameters()) == 2 * d * 4 * d


# ---------------------------------------------------------------------------
# InputEmbedding
# ---------------------------------------------------------------------------


def test_input_embedding_scales_and_adds_positions():
    emb = InputEmbedding(11, D, max_len=20)
    tokens = torch.randint(0, 11, (B, L))
    expected = emb.token.weight[tokens] * math.sqrt(D) + sinusoidal_encoding(L, D)
    torch.testing.assert_close(emb(tokens), expected)
    torch.testing.assert_close(emb(tokens[:, 3:], offset=3), expected[:, 3:])  # positions 3..L-1
    assert "pe" not in emb.state_dict()  # recomputed, not stored
    scaled = emb.token.weight * math.sqrt(D)
    assert 0.8 < scaled.std().item() < 1.2  # unit scale, like the positional encoding
    with pytest.raises(ValueError, match="max_len"):
        emb(tokens, offset=15)


# ---------------------------------------------------------------------------
# EncoderLayer and Encoder against nn.TransformerEncoderLayer / nn.TransformerEncoder
# ---------------------------------------------------------------------------


def _torch_layer(norm_first: bool, activation: str = "relu") -> nn.TransformerEncoderLayer:
    layer = nn.TransformerEncoderLayer(
        D, H, FF, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    )
    return _randomize(layer).eval()


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_equals_torch(norm_first, activation):
    theirs = _torch_layer(norm_first, activation)
    ours = EncoderLayer.from_torch(theirs).eval()
    assert ours.norm_first == norm_first
    x = torch.randn(B, L, D)
    torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_with_padding_equals_torch(norm_first):
    theirs = _torch_layer(norm_first)
    ours = EncoderLayer.from_torch(theirs).eval()
    x = torch.randn(B, L, D)
    keep = padding_mask(torch.tensor([L, 4, 2]), L)  # (B, L), True = real token
    out_t = theirs(x, src_key_padding_mask=~keep)  # torch: True = padding
    out_o = ours(x, combine_masks(keep))  # (B, 1, 1, L)
    # Compare real positions only: torch's eval fast path may zero padded positions.
    torch.testing.assert_close(out_o[keep], out_t[keep])


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_stack_equals_torch_with_padding(norm_first):
    layer = _torch_layer(norm_first)
    norm = nn.LayerNorm(D) if norm_first else None
    theirs = nn.TransformerEncoder(layer, 3, norm=norm, enable_nested_tensor=False)
    _randomize(theirs).eval()
    ours = Encoder.from_torch(theirs).eval()
    assert len(ours.layers) == 3 and (ours.norm is None) == (not norm_first)
    x = torch.randn(B, L, D)
    keep = padding_mask(torch.tensor([L, 5, 1]), L)
    out_t = theirs(x, src_key_padding_mask=~keep)
    out_o = ours(x, combine_masks(keep))
    torch.testing.assert_close(out_o, out_t)  # every position: the nested-tensor path is off


def test_padding_does_not_change_real_positions():
    enc = Encoder(D, H, 2, FF).eval()
    x = torch.randn(1, 4, D)
    padded = torch.cat([x, torch.randn(1, 3, D) * 10], dim=1)  # 3 positions of garbage padding
    keep = padding_mask(torch.tensor([4]), 7)
    torch.testing.assert_close(enc(padded, combine_masks(keep))[:, :4], enc(x))


def test_encoder_default_final_norm_follows_norm_first():
    assert Encoder(D, H, 2, FF).norm is None  # post-LN: the last layer ends with a norm
    assert isinstance(Encoder(D, H, 2, FF, norm_first=True).norm, LayerNorm)
    assert Encoder(D, H, 2, FF, final_norm=True).norm is not None


def test_pre_ln_residual_stream_is_not_normalized_without_final_norm():
    """Why a pre-LN stack needs a final LayerNorm: its output keeps the residual stream's scale."""
    x = torch.randn(B, L, D) * 5
    post = Encoder(D, H, 2, FF).eval()(x)
    pre_raw = Encoder(D, H, 2, FF, norm_first=True, final_norm=False).eval()(x)
    pre = Encoder(D, H, 2, FF, norm_first=True).eval()(x)
    torch.testing.assert_close(post.var(-1, unbiased=False), torch.ones(B, L), atol=1e-3, rtol=0)
    torch.testing.assert_close(pre.var(-1, unbiased=False), torch.ones(B, L), atol=1e-3, rtol=0)
    assert pre_raw.var(-1).mean() > 5


def test_modern_block_from_the_same_class():
    """Pre-LN + RMSNorm + SwiGLU (LLaMA's block) is an EncoderLayer configuration."""
    layer = EncoderLayer(
        D, H, FF, norm_first=True, norm=functools.partial(RMSNorm, eps=1e-6), feed_forward=SwiGLU
    ).eval()
    assert isinstance(layer.norm1, RMSNorm) and layer.norm1.eps == 1e-6
    assert isinstance(layer.feed_forward, SwiGLU)
    x = torch.randn(B, L, D)
    h = x + layer.self_attn(layer.norm1(x), layer.norm1(x), layer.norm1(x))[0]
    expected = h + layer.feed_forward(layer.norm2(h))
    torch.testing.assert_close(layer(x), expected)
    enc = Encoder(D, H, 2, FF, norm_first=True, norm=RMSNorm, feed_forward=SwiGLU)
    assert isinstance(enc.norm, RMSNorm) and enc(x).shape == (B, L, D)


def test_encoder_layer_dropout_only_in_training():
    layer = EncoderLayer(D, H, FF, dropout=0.5)
    x = torch.randn(B, L, D)
    assert not torch.allclose(layer(x), layer(x))
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))


def test_from_torch_keeps_layer_norm_eps():
    theirs = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, batch_first=True, layer_norm_eps=0.5).eval()
    ours = EncoderLayer.from_torch(theirs).eval()
    assert ours.norm1.eps == ours.norm2.eps == 0.5
    x = torch.randn(B, L, D) * 0.3  # small variance: eps matters
    torch.testing.assert_close(ours(x), theirs(x))


def test_from_torch_keeps_dtype_and_rejects_unknown_activation():
    theirs = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, batch_first=True).double().eval()
    ours = EncoderLayer.from_torch(theirs)
    x = torch.randn(B, L, D, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x))
    with pytest.raises(ValueError, match="activation"):
        EncoderLayer.from_torch(nn.TransformerEncoderLayer(D, H, FF, activation=torch.tanh))
    with pytest.raises(ValueError, match="bias"):
        EncoderLayer.from_torch(nn.TransformerEncoderLayer(D, H, FF, bias=False))


def test_self_attention_is_permutation_equivariant_without_positions():
    layer = EncoderLayer(D, H, FF).eval()
    x = torch.randn(1, L, D)
    perm = torch.randperm(L)
    torch.testing.assert_close(layer(x[:, perm]), layer(x)[:, perm])


# ---------------------------------------------------------------------------
# record_attention
# ---------------------------------------------------------------------------


def test_record_attention_collects_every_layer_and_changes_nothing():
    enc = Encoder(D, H, 2, FF).eval()
    x = torch.randn(B, L, D)
    keep = padding_mask(torch.tensor([L, 3, 5]), L)
    fused = enc(x, combine_masks(keep))
    with record_attention(enc) as maps:
        recorded = enc(x, combine_masks(keep))
    torch.testing.assert_close(recorded, fused)
    assert set(maps) == {"layers.0.self_attn", "layers.1.self_attn"}
    w = maps["layers.1.self_attn"]
    assert w.shape == (B, H, L, L)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H, L))
    assert (w[1, :, :, 3:] == 0).all()  # no weight on padding
    # afterwards: back to the fused path, nothing kept
    assert all(not layer.keep_attention and not layer.attention_weights for layer in enc.layers)
    # and the weights are the ones the layer's MultiHeadAttention computes
    layer0 = enc.layers[0]
    torch.testing.assert_close(maps["layers.0.self_attn"], layer0.self_attn(x, x, x, combine_masks(keep))[1])


@pytest.mark.parametrize("norm_first", [False, True])
def test_residual_false_drops_only_the_additions(norm_first):
    """residual=False (Chapter 4's measurement) is the same layer without the `x +`."""
    layer = _randomize(EncoderLayer(D, H, FF, norm_first=norm_first)).eval()
    plain = EncoderLayer(D, H, FF, norm_first=norm_first, residual=False).eval()
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(B, L, D)
    keep = padding_mask(torch.tensor([L, 4, 2]), L)
    mask = combine_masks(keep)

    def attn(h):
        return layer.self_attn(h, h, h, mask)[0]

    if norm_first:
        h = attn(layer.norm1(x))
        expected = layer.feed_forward(layer.norm2(h))
        with_residual = x + attn(layer.norm1(x))
        with_residual = with_residual + layer.feed_forward(layer.norm2(with_residual))
    else:
        h = layer.norm1(attn(x))
        expected = layer.norm2(layer.feed_forward(h))
        with_residual = layer.norm1(x + attn(x))
        with_residual = layer.norm2(with_residual + layer.feed_forward(with_residual))
    torch.testing.assert_close(plain(x, mask), expected)
    torch.testing.assert_close(layer(x, mask), with_residual)
    assert EncoderLayer(D, H, FF).residual is True
    enc = Encoder(D, H, 3, FF, norm_first=norm_first, residual=False)
    assert all(not layer.residual for layer in enc.layers)
