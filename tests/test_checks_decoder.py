"""Chapter 5's checks against hand-written learner answers (not the Mistake implementations):
right answers spelled in unusual ways pass, wrong ones get the right diagnosis.

The registry tests (test_checks_registry.py) already check that the references pass and that
every known mistake is diagnosed as itself."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import transformer_workbook.decoder as dec
from transformer_workbook import masks
from transformer_workbook.encoder import FeedForward, LayerNorm
from transformer_workbook.exercises import check, get
from transformer_workbook.model import shift_right
from transformer_workbook.multihead import MultiHeadAttention


def verdict(exercise_id, fn):
    """What `check` answers (the same cases, options and judging)."""
    return check(exercise_id, fn, quiet=True)


def test_the_references_are_the_package_code():
    assert get("decoder.shift_right").reference is shift_right
    assert get("decoder.DecoderLayer").reference is dec.DecoderLayer


def test_cases_vary_every_size():
    cases = get("decoder.shift_right").cases()
    assert len({c.args[0].shape for c in cases}) == len(cases) and len({c.args[1] for c in cases}) > 3
    cases = get("decoder.DecoderLayer").cases()
    for key in ("d_model", "n_heads", "d_ff", "norm_first"):
        assert len({c.init[key] for c in cases}) > 1, key
    for i in range(2):
        for dim in range(2):
            assert len({c.args[i].shape[dim] for c in cases}) > 1
    cases = get("decoder.family_masks").cases()
    assert {c.args[0] for c in cases} == {"encoder-only", "decoder-only", "encoder-decoder"}
    assert len({c.args[1].shape for c in cases}) > 4


# ---------------------------------------------------------------------------
# shift_right
# ---------------------------------------------------------------------------


def shift_pad(tgt, start_id):  # right: F.pad
    return F.pad(tgt[:, :-1], (1, 0), value=start_id)


def shift_roll_then_fix(tgt, start_id):  # right: roll, then overwrite column 0 of the copy
    out = torch.roll(tgt, 1, dims=1)
    out[:, 0] = start_id
    return out


def shift_new_tensor(tgt, start_id):  # right: a new tensor filled column by column
    out = torch.empty_like(tgt)
    out[:, 0] = start_id
    out[:, 1:] = tgt[:, :-1]
    return out


def shift_in_place(tgt, start_id):
    tgt[:, 1:] = tgt[:, :-1].clone()
    tgt[:, 0] = start_id
    return tgt


def shift_roll(tgt, start_id):
    return tgt.roll(1, -1)


def shift_no_start(tgt, start_id):
    return torch.cat([tgt[:, :-1]], dim=1)


def shift_left_pad(tgt, start_id):
    return F.pad(tgt[:, 1:], (0, 1), value=start_id)


def shift_batch_of_two(tgt, start_id):  # B hard-coded
    return torch.cat([torch.full((2, 1), start_id), tgt[:, :-1]], dim=1)


def shift_bos_one(tgt, start_id):
    return torch.cat([torch.ones(tgt.size(0), 1, dtype=torch.long), tgt[:, :-1]], dim=1)


@pytest.mark.parametrize("fn", [shift_pad, shift_roll_then_fix, shift_new_tensor])
def test_shift_right_answers_pass(fn):
    res = verdict("decoder.shift_right", fn)
    assert res.passed, res.message


@pytest.mark.parametrize("fn, expected", [
    (shift_in_place, "modifies-input"),
    (shift_roll, "rolled"),
    (shift_no_start, "no-start-token"),
    (shift_left_pad, "shifted-left"),
    (shift_bos_one, "start-id-ignored"),
])
def test_shift_right_learner_mistakes(fn, expected):
    res = verdict("decoder.shift_right", fn)
    assert res.status == "failed" and res.mistake == expected, res.message


def test_shift_right_hard_coded_batch_raises_on_other_batches():
    res = verdict("decoder.shift_right", shift_batch_of_two)
    assert res.status == "error" and res.mistake == "exception" and "batch size" in res.message


# ---------------------------------------------------------------------------
# DecoderLayer
# ---------------------------------------------------------------------------


class DecBase(nn.Module):
    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, norm_first=False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads)
        self.cross_attn = MultiHeadAttention(d_model, n_heads)
        self.feed_forward = FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2, self.norm3 = LayerNorm(d_model), LayerNorm(d_model), LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def run(self, x, subs):
        for f, norm in subs:
            x = x + self.dropout(f(norm(x))) if self.norm_first else norm(x + self.dropout(f(x)))
        return x


class DecRight(DecBase):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        return self.run(x, [
            (lambda h: self.self_attn(h, h, h, self_mask)[0], self.norm1),
            (lambda h: self.cross_attn(h, memory, memory, memory_mask)[0], self.norm2),
            (self.feed_forward, self.norm3),
        ])


class DecRightSpelledOut(DecBase):  # right: the six lines of the two placements
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.self_attn(h, h, h, mask=self_mask)[0]
            x = x + self.cross_attn(self.norm2(x), memory, memory, mask=memory_mask)[0]
            return x + self.feed_forward(self.norm3(x))
        x = self.norm1(x + self.self_attn(x, x, x, mask=self_mask)[0])
        x = self.norm2(x + self.cross_attn(x, memory, memory, mask=memory_mask)[0])
        return self.norm3(x + self.feed_forward(x))


class DecNoSelfMask(DecBase):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        return self.run(x, [
            (lambda h: self.self_attn(h, h, h)[0], self.norm1),
            (lambda h: self.cross_attn(h, memory, memory, memory_mask)[0], self.norm2),
            (self.feed_forward, self.norm3),
        ])


class DecSelfTwice(DecBase):  # cross-attention over the decoder, memory_mask passed along
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        return self.run(x, [
            (lambda h: self.self_attn(h, h, h, self_mask)[0], self.norm1),
            (lambda h: self.cross_attn(h, h, h, memory_mask)[0], self.norm2),
            (self.feed_forward, self.norm3),
        ])


class DecCrossFirstNormsInOrder(DecBase):  # wrong order; norm1 with the first sublayer written
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        return self.run(x, [
            (lambda h: self.cross_attn(h, memory, memory, memory_mask)[0], self.norm1),
            (lambda h: self.self_attn(h, h, h, self_mask)[0], self.norm2),
            (self.feed_forward, self.norm3),
        ])


class DecCrossFirstNormsKept(DecBase):  # wrong order; each sublayer keeps its own norm
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        return self.run(x, [
            (lambda h: self.cross_attn(h, memory, memory, memory_mask)[0], self.norm2),
            (lambda h: self.self_attn(h, h, h, self_mask)[0], self.norm1),
            (self.feed_forward, self.norm3),
        ])


class DecFromTorch(nn.Module):
    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, norm_first=False):
        super().__init__()
        self.layer = nn.TransformerDecoderLayer(d_model, n_heads, d_ff, dropout, batch_first=True,
                                                norm_first=norm_first)

    def forward(self, x, memory, self_mask=None, memory_mask=None):
        return self.layer(x, memory, tgt_mask=~self_mask)


@pytest.mark.parametrize("cls", [DecRight, DecRightSpelledOut])
def test_decoder_layer_right_answers_pass(cls):
    res = verdict("decoder.DecoderLayer", cls)
    assert res.passed, res.message


@pytest.mark.parametrize("cls, expected", [
    (DecNoSelfMask, "no-causal-mask"),
    (DecSelfTwice, "cross-attention-reads-the-decoder"),
    (DecCrossFirstNormsInOrder, "cross-before-self"),
    (DecCrossFirstNormsKept, "cross-before-self"),
])
def test_decoder_layer_learner_mistakes(cls, expected):
    res = verdict("decoder.DecoderLayer", cls)
    assert res.status == "failed" and res.mistake == expected, res.message


def test_decoder_layer_from_torch_is_refused():
    res = verdict("decoder.DecoderLayer", DecFromTorch)
    assert res.status == "failed" and res.mistake == "forbidden-call"


# ---------------------------------------------------------------------------
# family_masks
# ---------------------------------------------------------------------------


def family_3d(family, keep, src_keep=None):
    """Right, another way: (B, Lq, Lk) masks built by hand, causal only for a right-padded decoder."""
    B, L = keep.shape
    tril = torch.tril(torch.ones(L, L, dtype=torch.bool))
    if family == "encoder-only":
        return keep[:, None, :].expand(B, L, L), None, None
    if family == "decoder-only":
        return None, tril, None  # right padding: no real token sees a pad anyway
    src = src_keep[:, None, None, :]
    return src, keep[:, None, None, :] & tril, src


def family_torch_style(family, keep, src_keep=None):
    """PyTorch's convention: True = blocked."""
    L = keep.size(1)
    blocked_future = torch.ones(L, L, dtype=torch.bool).triu(1)
    if family == "encoder-only":
        return (~keep)[:, None, None, :], None, None
    if family == "decoder-only":
        return None, blocked_future | (~keep)[:, None, None, :], None
    src_blocked = (~src_keep)[:, None, None, :]
    return src_blocked, blocked_future | (~keep)[:, None, None, :], src_blocked


def family_no_causal(family, keep, src_keep=None):
    pad = keep[:, None, None, :]
    if family == "encoder-only":
        return pad, None, None
    if family == "decoder-only":
        return None, pad, None
    return src_keep[:, None, None, :], pad, src_keep[:, None, None, :]


def family_unexpanded(family, keep, src_keep=None):
    if family == "encoder-only":
        return keep, None, None
    causal = masks.causal_mask(keep.size(1))
    if family == "decoder-only":
        return None, causal, None
    return src_keep, causal, src_keep


def family_everything(family, keep, src_keep=None):  # the same three masks for every family
    src = keep if src_keep is None else src_keep
    return (masks.combine_masks(src), masks.combine_masks(keep, masks.causal_mask(keep.size(1))),
            masks.combine_masks(src))


@pytest.mark.parametrize("fn", [family_3d])
def test_family_masks_right_answers_pass(fn):
    res = verdict("decoder.family_masks", fn)
    assert res.passed, res.message


@pytest.mark.parametrize("fn, expected", [
    (family_torch_style, "pytorch-polarity"),
    (family_no_causal, "decoder-not-causal"),
])
def test_family_masks_learner_mistakes(fn, expected):
    res = verdict("decoder.family_masks", fn)
    assert res.status == "failed" and res.mistake == expected, res.message


def test_family_masks_shape_and_sublayer_problems_are_explained():
    res = verdict("decoder.family_masks", family_unexpanded)
    assert res.status == "error" and "(B, 1, 1, Lk)" in res.message
    res = verdict("decoder.family_masks", family_everything)
    assert res.status == "error" and "has no sublayer" in res.message
