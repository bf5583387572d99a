"""Chapter 5's decoder against torch.nn (after copying weights): layers, stacks, a whole nn.Transformer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from transformer_workbook.decoder import Decoder, DecoderCache, DecoderLayer
from transformer_workbook.encoder import Encoder, LayerNorm, record_attention
from transformer_workbook.masks import (
    causal_mask,
    causal_mask_with_cache,
    combine_masks,
    padding_mask,
    to_float_mask,
    to_torch_key_padding_mask,
)
from transformer_workbook.multihead import KVCache

B, LT, LS, D, H, FF = 3, 6, 7, 16, 4, 32


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _randomize(module: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if p.dim() == 1 and p.shape[0] == D else 0.0))
    return module


def _masks():
    tgt_keep = padding_mask(torch.tensor([LT, 4, 5]), LT)  # (B, Lt), True = real
    src_keep = padding_mask(torch.tensor([LS, 3, 6]), LS)  # (B, Ls)
    return tgt_keep, src_keep


def _torch_layer(norm_first: bool) -> nn.TransformerDecoderLayer:
    layer = nn.TransformerDecoderLayer(D, H, FF, dropout=0.0, batch_first=True, norm_first=norm_first)
    return _randomize(layer).eval()


# ---------------------------------------------------------------------------
# Against nn.TransformerDecoderLayer / nn.TransformerDecoder / nn.Transformer
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_equals_torch(norm_first):
    theirs = _torch_layer(norm_first)
    ours = DecoderLayer.from_torch(theirs).eval()
    x, memory = torch.randn(B, LT, D), torch.randn(B, LS, D)
    tgt_keep, src_keep = _masks()
    out_t = theirs(
        x, memory, tgt_mask=to_float_mask(causal_mask(LT)), tgt_is_causal=True,
        tgt_key_padding_mask=to_float_mask(tgt_keep), memory_key_padding_mask=to_float_mask(src_keep),
    )
    out_o = ours(x, memory, combine_masks(tgt_keep, causal_mask(LT)), combine_masks(src_keep))
    torch.testing.assert_close(out_o, out_t)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_stack_equals_torch(norm_first):
    theirs = nn.TransformerDecoder(_torch_layer(norm_first), 3, norm=nn.LayerNorm(D) if norm_first else None)
    _randomize(theirs).eval()
    ours = Decoder.from_torch(theirs).eval()
    assert len(ours.layers) == 3 and (ours.norm is None) == (not norm_first)
    x, memory = torch.randn(B, LT, D), torch.randn(B, LS, D)
    _, src_keep = _masks()
    out_t = theirs(x, memory, tgt_mask=~causal_mask(LT), memory_key_padding_mask=~src_keep)
    out_o = ours(x, memory, causal_mask(LT), combine_masks(src_keep))
    torch.testing.assert_close(out_o, out_t)


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")  # nn.Transformer, pre-LN
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_and_decoder_equal_a_whole_nn_transformer(norm_first):
    """nn.Transformer always ends each stack with a LayerNorm (post-LN too): from_torch copies them."""
    theirs = nn.Transformer(D, H, 2, 2, FF, dropout=0.0, batch_first=True, norm_first=norm_first)
    _randomize(theirs).eval()
    encoder, decoder = Encoder.from_torch(theirs.encoder).eval(), Decoder.from_torch(theirs.decoder).eval()
    assert encoder.norm is not None and decoder.norm is not None
    src, tgt = torch.randn(B, LS, D), torch.randn(B, LT, D)
    tgt_keep, src_keep = _masks()
    out_t = theirs(
        src, tgt, tgt_mask=~causal_mask(LT), tgt_is_causal=True,  # bool masks: True = blocked
        src_key_padding_mask=to_torch_key_padding_mask(src_keep),
        memory_key_padding_mask=to_torch_key_padding_mask(src_keep),
        tgt_key_padding_mask=to_torch_key_padding_mask(tgt_keep),
    )
    memory = encoder(src, combine_masks(src_keep))
    out_o = decoder(tgt, memory, combine_masks(tgt_keep, causal_mask(LT)), combine_masks(src_keep))
    torch.testing.assert_close(out_o, out_t)


def test_from_torch_names_and_dtype():
    theirs = nn.TransformerDecoderLayer(D, H, FF, dropout=0.1, batch_first=True).double()
    ours = DecoderLayer.from_torch(theirs)
    assert ours.training and ours.dropout.p == 0.1 and ours.cross_attn.dropout == 0.1
    torch.testing.assert_close(ours.cross_attn.out_proj.weight, theirs.multihead_attn.out_proj.weight)
    assert ours.norm3.weight.dtype == torch.float64 and isinstance(ours.norm3, LayerNorm)


# ---------------------------------------------------------------------------
# Causality
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("cross_attention", [True, False])
def test_future_tokens_do_not_change_earlier_outputs(norm_first, cross_attention):
    dec = Decoder(D, H, 2, FF, norm_first=norm_first, cross_attention=cross_attention).eval()
    memory = torch.randn(B, LS, D) if cross_attention else None
    x = torch.randn(B, LT, D)
    out = dec(x, memory, causal_mask(LT))
    for t in range(LT):
        changed = x.clone()
        changed[:, t:] = torch.randn(B, LT - t, D) * 5  # rewrite positions t onwards
        out_changed = dec(changed, memory, causal_mask(LT))
        torch.testing.assert_close(out_changed[:, :t], out[:, :t])  # earlier positions: untouched
        assert not torch.allclose(out_changed[:, t:], out[:, t:])
    # Without the mask the past does see the future: the test can fail.
    no_mask = dec(x, memory)
    changed = x.clone()
    changed[:, -1] = torch.randn(B, D)
    assert not torch.allclose(dec(changed, memory)[:, 0], no_mask[:, 0])


def test_padded_memory_positions_are_ignored():
    dec = Decoder(D, H, 2, FF).eval()
    x, memory = torch.randn(1, LT, D), torch.randn(1, 4, D)
    padded = torch.cat([memory, torch.randn(1, 3, D) * 10], dim=1)  # 3 garbage positions
    keep = padding_mask(torch.tensor([4]), 7)
    expected = dec(x, memory, causal_mask(LT))
    torch.testing.assert_close(dec(x, padded, causal_mask(LT), combine_masks(keep)), expected)


# ---------------------------------------------------------------------------
# Decoder-only layers, errors
# ---------------------------------------------------------------------------


def test_decoder_only_layer_has_two_sublayers():
    layer = DecoderLayer(D, H, FF, cross_attention=False).eval()
    assert layer.cross_attn is None and not hasattr(layer, "norm3")
    x = torch.randn(B, LT, D)
    mask = causal_mask(LT)
    h = layer.norm1(x + layer.self_attn(x, x, x, mask)[0])
    torch.testing.assert_close(layer(x, self_mask=mask), layer.norm2(h + layer.feed_forward(h)))
    with pytest.raises(ValueError, match="no cross-attention"):
        layer(x, torch.randn(B, LS, D))
    with pytest.raises(ValueError, match="pass memory"):
        DecoderLayer(D, H, FF)(x)


def test_parameter_counts():
    def count(m):
        return sum(p.numel() for p in m.parameters())

    mha, ff, ln = 4 * D * D + 4 * D, 2 * D * FF + FF + D, 2 * D
    assert count(DecoderLayer(D, H, FF)) == 2 * mha + ff + 3 * ln
    assert count(DecoderLayer(D, H, FF, cross_attention=False)) == mha + ff + 2 * ln
    theirs = nn.TransformerDecoderLayer(D, H, FF)
    assert count(DecoderLayer(D, H, FF)) == count(theirs)


# ---------------------------------------------------------------------------
# KV cache through the stack
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("cross_attention", [True, False])
@pytest.mark.parametrize("chunks", [(1,) * LT, (2, 1, 3), (LT,)])
def test_cached_decoding_equals_the_full_pass(norm_first, cross_attention, chunks):
    """Feeding the positions a few at a time with a DecoderCache gives the full pass's outputs."""
    dec = Decoder(D, H, 2, FF, norm_first=norm_first, cross_attention=cross_attention).eval()
    x = torch.randn(B, LT, D)
    memory = torch.randn(B, LS, D) if cross_attention else None
    _, src_keep = _masks()
    memory_mask = combine_masks(src_keep) if cross_attention else None
    full = dec(x, memory, causal_mask(LT), memory_mask)
    cache = dec.new_cache()
    assert isinstance(cache, DecoderCache) and len(cache) == 0
    outs, start = [], 0
    for n in chunks:
        mask = causal_mask_with_cache(n, start)  # (n, start + n): the diagonal shifted by the cache
        outs.append(dec(x[:, start : start + n], memory, mask, memory_mask, cache=cache))
        start += n
        assert len(cache) == start
    torch.testing.assert_close(torch.cat(outs, dim=1), full)
    if cross_attention:  # the memory's keys/values were projected once and kept
        assert all(c.static and len(c) == LS for c in cache.cross_attn)
    else:
        assert cache.cross_attn is None


def test_cache_without_the_offset_mask_is_wrong():
    """The trap: a plain causal mask for the new chunk hides most of the cache."""
    dec = Decoder(D, H, 1, FF, cross_attention=False).eval()
    x = torch.randn(1, 4, D)
    full = dec(x, self_mask=causal_mask(4))
    cache = dec.new_cache()
    dec(x[:, :2], self_mask=causal_mask(2), cache=cache)
    wrong = dec(x[:, 2:], self_mask=torch.ones(2, 4, dtype=torch.bool).tril(), cache=cache)
    assert not torch.allclose(wrong, full[:, 2:], atol=1e-4)


def test_record_attention_in_the_decoder_with_padding():
    dec = Decoder(D, H, 2, FF).eval()
    x, memory = torch.randn(B, LT, D), torch.randn(B, LS, D)
    _, src_keep = _masks()
    with record_attention(dec) as maps:
        dec(x, memory, causal_mask(LT), combine_masks(src_keep))
    assert set(maps) == {f"layers.{i}.{k}" for i in range(2) for k in ("self_attn", "cross_attn")}
    cross, self_w = maps["layers.1.cross_attn"], maps["layers.0.self_attn"]
    assert cross.shape == (B, H, LT, LS) and self_w.shape == (B, H, LT, LT)
    assert (cross[1, ..., 3:] == 0).all()  # sequence 1 has 3 real source tokens
    assert (self_w[..., ~causal_mask(LT)] == 0).all()  # nothing on the future
    torch.testing.assert_close(cross.sum(-1), torch.ones(B, H, LT))


def test_kv_cache_class():
    c = KVCache()
    k1, v1 = torch.randn(B, H, 2, 4), torch.randn(B, H, 2, 4)
    assert len(c) == 0 and c.update(k1, v1)[0] is k1 and len(c) == 2
    k, v = c.update(torch.randn(B, H, 1, 4), torch.randn(B, H, 1, 4))
    assert k.shape == (B, H, 3, 4) and len(c) == 3
    torch.testing.assert_close(v[:, :, :2], v1)
    s = KVCache(static=True)
    s.update(k1, v1)
    assert "static=True" in repr(s) and len(s) == 2
