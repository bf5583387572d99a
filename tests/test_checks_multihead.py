"""Chapter 2's checks: the reference passes, every known mistake is named, and
hand-written learner answers (not the Mistake implementations) get the right verdict."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import transformer_workbook.multihead as mh
from transformer_workbook.attention import scaled_dot_product_attention
from transformer_workbook.exercises import (
    check,
    evaluate,
    get,
    outcomes_from_payload,
    outcomes_to_payload,
    run_cases,
)

IDS = ["multihead.split_heads", "multihead.combine_heads", "multihead.MultiHeadAttention"]


def verdict(exercise_id, fn):
    """What `check` answers (the same cases, options and judging)."""
    return check(exercise_id, fn, quiet=True)


# ---------------------------------------------------------------------------
# The machinery: reference, mistakes, registration
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("exercise_id", IDS)
def test_mistake_ids_unique_and_hints_given(exercise_id):
    ex = get(exercise_id)
    ids = [m.id for m in ex.mistakes]
    assert len(ids) == len(set(ids))
    assert ex.hints


def test_the_reference_is_the_package_module():
    """One implementation: the check's reference is the module the chapter teaches."""
    assert get("multihead.MultiHeadAttention").reference is mh.MultiHeadAttention


def test_case_description_names_the_constructor():
    ex = get("multihead.MultiHeadAttention")
    text = ex.cases()[3].describe()
    assert "built with (d_model=8, n_heads=2, bias=True)" in text
    assert "query (2, 4, 8)" in text and "mask (4, 5)" in text and "tensor" not in text


def test_payload_round_trip_keeps_the_diagnosis():
    ex = get("multihead.MultiHeadAttention")
    cases = ex.cases()
    wrong = next(m for m in ex.mistakes if m.id == "weights-averaged-over-heads").implementation
    payload = outcomes_to_payload(run_cases(wrong, cases, call=ex.call))
    loaded = torch.load(_save(payload), weights_only=True)
    res = evaluate(ex, cases, outcomes_from_payload(loaded))
    assert res.mistake == "weights-averaged-over-heads"


def _save(obj):
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def test_check_prints_feedback(capsys):
    res = check("multihead.split_heads", split_view_permute)
    assert res.passed
    assert "multihead.split_heads: passed" in capsys.readouterr().out


# ---------------------------------------------------------------------------
# split_heads: learner-style answers, written independently
# ---------------------------------------------------------------------------


def split_chunk_stack(x, n_heads):  # correct, another way
    return torch.stack(x.chunk(n_heads, dim=-1), dim=1)


def split_view_permute(x, n_heads):  # correct, another way
    b, seq, d = x.shape
    return x.view(b, seq, n_heads, -1).permute(0, 2, 1, 3)


def split_view_only(x, n_heads):
    return x.view(x.size(0), n_heads, x.size(1), -1)


def split_strided_slices(x, n_heads):
    return torch.stack([x[..., h::n_heads] for h in range(n_heads)], dim=1)


def split_unflatten(x, n_heads):
    return x.unflatten(-1, (n_heads, -1))


def split_permute_first(x, n_heads):
    b, seq, d = x.shape
    return x.permute(0, 2, 1).contiguous().view(b, n_heads, seq, -1)


def split_forgot_return(x, n_heads):
    b, seq, d = x.shape
    x.view(b, seq, n_heads, d // n_heads).transpose(1, 2)


def split_drops_channels(x, n_heads):  # right, except that it never refuses a bad n_heads
    b, seq, d = x.shape
    d_head = d // n_heads
    return x[..., : n_heads * d_head].reshape(b, seq, n_heads, d_head).transpose(1, 2)


@pytest.mark.parametrize("fn", [split_chunk_stack, split_view_permute])
def test_split_alternative_correct_answers_pass(fn):
    assert verdict("multihead.split_heads", fn).passed


@pytest.mark.parametrize(
    "fn, expected",
    [
        (split_view_only, "reshape-without-transpose"),
        (split_strided_slices, "interleaved-channels"),
        (split_unflatten, "heads-not-moved"),
        (split_permute_first, "transpose-before-reshape"),
        (split_forgot_return, "returned-none"),
        (split_drops_channels, "should-raise"),
    ],
)
def test_split_learner_mistakes_diagnosed(fn, expected):
    res = verdict("multihead.split_heads", fn)
    assert res.status == "failed" and res.mistake == expected, res.message


# ---------------------------------------------------------------------------
# combine_heads: learner-style answers
# ---------------------------------------------------------------------------


def combine_cat(x):  # correct, another way
    return torch.cat(x.unbind(dim=1), dim=-1)


def combine_permute_flatten(x):  # correct, another way
    return x.permute(0, 2, 1, 3).flatten(2)


def combine_view_only(x):
    return x.contiguous().view(x.size(0), x.size(2), -1)


def combine_stack_last(x):
    return torch.stack(x.unbind(dim=1), dim=-1).flatten(2)


def combine_permute_only(x):
    return x.permute(0, 2, 1, 3)


def combine_view_after_transpose(x):
    b, h, seq, d = x.shape
    return x.transpose(1, 2).view(b, seq, h * d)


def combine_stub(x):
    raise NotImplementedError("Replace this line with your code.")


@pytest.mark.parametrize("fn", [combine_cat, combine_permute_flatten])
def test_combine_alternative_correct_answers_pass(fn):
    assert verdict("multihead.combine_heads", fn).passed


@pytest.mark.parametrize(
    "fn, expected",
    [
        (combine_view_only, "reshape-without-transpose"),
        (combine_stack_last, "interleaved-channels"),
        (combine_permute_only, "heads-not-merged"),
    ],
)
def test_combine_learner_mistakes_diagnosed(fn, expected):
    res = verdict("multihead.combine_heads", fn)
    assert res.status == "failed" and res.mistake == expected, res.message


def test_combine_view_on_transposed_tensor_reports_the_error():
    res = verdict("multihead.combine_heads", combine_view_after_transpose)
    assert res.status == "error" and res.mistake == "exception"
    assert "view" in res.message and "reshape" in res.message


def test_combine_stub_not_attempted():
    res = verdict("multihead.combine_heads", combine_stub)
    assert res.status == "not attempted"


# ---------------------------------------------------------------------------
# MultiHeadAttention: learner-style classes
# ---------------------------------------------------------------------------


class LearnerBase(nn.Module):
    """How a learner starts: the four projections, as the exercise asks."""

    def __init__(self, d_model, n_heads, bias=True):
        super().__init__()
        self.d_model, self.h = d_model, n_heads
        self.d_k = d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def split(self, t):
        b, seq, _ = t.shape
        return t.view(b, seq, self.h, self.d_k).transpose(1, 2)

    def merge(self, t):
        b, _, seq, _ = t.shape
        return t.transpose(1, 2).contiguous().view(b, seq, self.d_model)


class PerHeadLoop(LearnerBase):
    """Correct: one head at a time, slicing each head's rows of the weight matrices."""

    def forward(self, query, key, value, mask=None):
        outs, maps = [], []
        for h in range(self.h):
            rows = slice(h * self.d_k, (h + 1) * self.d_k)

            def proj(layer, x, rows=rows):
                b = None if layer.bias is None else layer.bias[rows]
                return F.linear(x, layer.weight[rows], b)

            q, k, v = proj(self.q_proj, query), proj(self.k_proj, key), proj(self.v_proj, value)
            m = None if mask is None else mask[:, 0] if mask.dim() == 4 else mask
            o, w = scaled_dot_product_attention(q, k, v, m)
            outs.append(o)
            maps.append(w)
        return self.out_proj(torch.cat(outs, dim=-1)), torch.stack(maps, dim=1)


class FusedPlusWeights(LearnerBase):
    """Correct: F.scaled_dot_product_attention for the output, weights computed apart."""

    def forward(self, query, key, value, mask=None):
        q, k, v = self.split(self.q_proj(query)), self.split(self.k_proj(key)), self.split(self.v_proj(value))
        if mask is not None and mask.dim() == 3:
            mask = mask.unsqueeze(1)  # (B, 1, Lq, Lk): one mask per sequence, for every head
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_k)
        if mask is not None:
            scores = scores.masked_fill(mask.logical_not(), -math.inf)
        return self.out_proj(self.merge(out)), scores.softmax(-1)


class EinsumScaledByDModel(LearnerBase):
    def forward(self, query, key, value, mask=None):
        q, k, v = self.split(self.q_proj(query)), self.split(self.k_proj(key)), self.split(self.v_proj(value))
        scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / self.d_model**0.5
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        w = scores.softmax(dim=-1)
        return self.out_proj(self.merge(torch.einsum("bhqk,bhkd->bhqd", w, v))), w


class ForgotOutProj(LearnerBase):
    def forward(self, query, key, value, mask=None):
        q, k, v = self.split(self.q_proj(query)), self.split(self.k_proj(key)), self.split(self.v_proj(value))
        out, w = scaled_dot_product_attention(q, k, v, mask)
        return self.merge(out), w


class ViewWithoutTranspose(LearnerBase):
    def forward(self, query, key, value, mask=None):
        b, lq, _ = query.shape
        lk = key.shape[1]
        q = self.q_proj(query).view(b, self.h, lq, self.d_k)
        k = self.k_proj(key).view(b, self.h, lk, self.d_k)
        v = self.v_proj(value).view(b, self.h, lk, self.d_k)
        out, w = scaled_dot_product_attention(q, k, v, mask)
        return self.out_proj(out.reshape(b, lq, self.d_model)), w


class ViewSplitOnly(LearnerBase):
    def forward(self, query, key, value, mask=None):
        b, lq, _ = query.shape
        lk = key.shape[1]
        q = self.q_proj(query).view(b, self.h, lq, self.d_k)
        k = self.k_proj(key).view(b, self.h, lk, self.d_k)
        v = self.v_proj(value).view(b, self.h, lk, self.d_k)
        out, w = scaled_dot_product_attention(q, k, v, mask)
        return self.out_proj(self.merge(out)), w


class ReshapeCombine(LearnerBase):
    def forward(self, query, key, value, mask=None):
        q, k, v = self.split(self.q_proj(query)), self.split(self.k_proj(key)), self.split(self.v_proj(value))
        out, w = scaled_dot_product_attention(q, k, v, mask)
        return self.out_proj(out.reshape(query.shape[0], query.shape[1], -1)), w


class TorchStyleMask(LearnerBase):
    def forward(self, query, key, value, mask=None):
        q, k, v = self.split(self.q_proj(query)), self.split(self.k_proj(key)), self.split(self.v_proj(value))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_k)
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))  # True = blocked, as in nn.MHA
        w = torch.softmax(scores, dim=-1)
        return self.out_proj(self.merge(w @ v)), w


class AveragedWeights(LearnerBase):
    def forward(self, query, key, value, mask=None):
        q, k, v = self.split(self.q_proj(query)), self.split(self.k_proj(key)), self.split(self.v_proj(value))
        out, w = scaled_dot_product_attention(q, k, v, mask)
        return self.out_proj(self.merge(out)), w.mean(dim=1)


class NoHeads(LearnerBase):
    def forward(self, query, key, value, mask=None):
        out, w = scaled_dot_product_attention(
            self.q_proj(query), self.k_proj(key), self.v_proj(value), mask
        )
        return self.out_proj(out), w


class MaskStraight(LearnerBase):
    """Right, except that a (B, Lq, Lk) mask is passed on as it is (the old hint said so)."""

    def forward(self, query, key, value, mask=None):
        q, k, v = self.split(self.q_proj(query)), self.split(self.k_proj(key)), self.split(self.v_proj(value))
        out, w = scaled_dot_product_attention(q, k, v, mask)
        return self.out_proj(self.merge(out)), w


class DropoutInEval(PerHeadLoop):
    """Right, plus dropout on the weights that ignores eval mode (F.dropout's default)."""

    def forward(self, query, key, value, mask=None):
        out, w = super().forward(query, key, value, mask)
        return F.dropout(out, 0.1), w


class SubclassOfThePackage(mh.MultiHeadAttention):
    """The package's module under another name."""


class ValueFromKey(LearnerBase):
    def forward(self, query, key, value, mask=None):
        q, k, v = self.split(self.q_proj(query)), self.split(self.k_proj(key)), self.split(self.v_proj(key))
        out, w = scaled_dot_product_attention(q, k, v, mask)
        return self.out_proj(self.merge(out)), w


@pytest.mark.parametrize("cls", [PerHeadLoop, FusedPlusWeights])
def test_mha_alternative_correct_classes_pass(cls):
    res = verdict("multihead.MultiHeadAttention", cls)
    assert res.passed, res.message


@pytest.mark.parametrize(
    "cls, expected",
    [
        (EinsumScaledByDModel, "scale-by-sqrt-d_model"),
        (ForgotOutProj, "no-output-projection"),
        (ViewWithoutTranspose, "heads-mixed-across-positions"),
        (ViewSplitOnly, "split-without-transpose"),
        (ReshapeCombine, "combine-without-transpose"),
        (TorchStyleMask, "mask-inverted"),
        (AveragedWeights, "weights-averaged-over-heads"),
        (NoHeads, "single-head"),
        (ValueFromKey, "value-from-key"),
        (MaskStraight, "mask-not-per-sequence"),
        (DropoutInEval, "nondeterministic"),
        (SubclassOfThePackage, "uses-package"),
    ],
)
def test_mha_learner_mistakes_diagnosed(cls, expected):
    res = verdict("multihead.MultiHeadAttention", cls)
    assert res.status == "failed" and res.mistake == expected, res.message


# --- classes the check cannot even load: clear messages, never a crash ------


class WrongNames(nn.Module):
    def __init__(self, d_model, n_heads, bias=True):
        super().__init__()
        self.W_q = nn.Linear(d_model, d_model, bias=bias)
        self.W_k = nn.Linear(d_model, d_model, bias=bias)
        self.W_v = nn.Linear(d_model, d_model, bias=bias)
        self.W_o = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, query, key, value, mask=None):
        return query, None


class AlwaysBias(PerHeadLoop):
    def __init__(self, d_model, n_heads, bias=True):
        super().__init__(d_model, n_heads, bias=True)


class NoBiasArgument(LearnerBase):
    def __init__(self, d_model, n_heads):
        super().__init__(d_model, n_heads)


class RawParameters(nn.Module):
    def __init__(self, d_model, n_heads, bias=True):
        super().__init__()
        self.q_proj = nn.Parameter(torch.zeros(d_model, d_model))


class NotAModule:
    def __init__(self, d_model, n_heads, bias=True):
        pass


class ForgotSuper(nn.Module):
    def __init__(self, d_model, n_heads, bias=True):
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)


class HalfWidthProjections(LearnerBase):
    def __init__(self, d_model, n_heads, bias=True):
        super().__init__(d_model, n_heads, bias)
        self.q_proj = nn.Linear(d_model, d_model // n_heads, bias=bias)


class Stub(nn.Module):
    def __init__(self, d_model, n_heads, bias=True):
        super().__init__()
        raise NotImplementedError("Replace this line with your code.")


@pytest.mark.parametrize(
    "cls, words",
    [
        (WrongNames, ["no parameter `q_proj.weight` (12, 12)", "it has: W_q.weight (12, 12)"]),
        (RawParameters, ["no parameter `q_proj.weight`", "q_proj (12, 12)"]),
        (AlwaysBias, ["a parameter `q_proj.bias`", "bias=bias"]),
        (NoBiasArgument, ["could not build", "bias"]),
        (NotAModule, ["must subclass torch.nn.Module"]),
        (ForgotSuper, ["Module.__init__()"]),
        (HalfWidthProjections, ["`q_proj.weight` has shape (4, 12)", "(12, 12)"]),
    ],
)
def test_mha_unloadable_classes_get_clear_errors(cls, words):
    res = verdict("multihead.MultiHeadAttention", cls)
    assert res.status == "error" and res.mistake == "exception", res.message
    for w in words:
        assert w in res.message, res.message


def test_mha_instance_instead_of_class():
    res = verdict("multihead.MultiHeadAttention", PerHeadLoop(12, 3))
    assert res.status == "error" and "pass your class itself" in res.message


def test_mha_stub_not_attempted():
    assert verdict("multihead.MultiHeadAttention", Stub).status == "not attempted"


def test_check_does_not_change_the_learners_class_or_case_weights():
    ex = get("multihead.MultiHeadAttention")
    cases = ex.cases()
    before = {k: v.clone() for k, v in cases[0].params.items()}
    run_cases(PerHeadLoop, cases, call=ex.call)
    for k, v in before.items():
        assert torch.equal(cases[0].params[k], v)


# ---------------------------------------------------------------------------
# spot_the_bug: the reviewed self-attention module, edited the way learners edit it
# ---------------------------------------------------------------------------

from transformer_workbook.exercises.multihead import BUGGY_SELF_ATTENTION  # noqa: E402

SPLIT_BUG = "{t} = {t}.reshape(B, self.n_heads, L, self.d_head)"
SCALE_BUG = "/ math.sqrt(D)"
MASK_BUG = "~pad_mask.unsqueeze(1)"


def edited(split=None, scale=None, mask=None):
    """The reviewed code with some of its three buggy lines replaced."""
    source = BUGGY_SELF_ATTENTION
    if split is not None:
        for t in "qkv":
            source = source.replace(SPLIT_BUG.format(t=t), split.format(t=t))
    if scale is not None:
        source = source.replace(SCALE_BUG, scale)
    if mask is not None:
        source = source.replace(MASK_BUG, mask)
    namespace = {"math": math, "torch": torch, "nn": nn, "F": F}
    exec(source, namespace)
    return namespace["SelfAttention"]


FIX_SPLIT = "{t} = {t}.view(B, L, self.n_heads, self.d_head).transpose(1, 2)"
FIX_SPLIT_UNFLATTEN = "{t} = {t}.unflatten(-1, (self.n_heads, self.d_head)).permute(0, 2, 1, 3)"
FIX_SCALE = "/ math.sqrt(self.d_head)"
FIX_SCALE_POW = "/ (D // self.n_heads) ** 0.5"
FIX_MASK = "~pad_mask[:, None, None, :]"
FIX_MASK_UNSQUEEZE = "~pad_mask.unsqueeze(1).unsqueeze(2)"


def test_spot_the_bug_the_reviewed_code_is_recognised():
    assert verdict("multihead.spot_the_bug", edited()).mistake == "unchanged"


@pytest.mark.parametrize(
    "edits,expected",
    [
        ({"split": FIX_SPLIT, "scale": FIX_SCALE, "mask": FIX_MASK}, None),
        ({"split": FIX_SPLIT_UNFLATTEN, "scale": FIX_SCALE_POW, "mask": FIX_MASK_UNSQUEEZE}, None),
        ({"mask": FIX_MASK}, "split-and-scale-remain"),
        ({"scale": FIX_SCALE_POW}, "split-and-mask-remain"),
        ({"split": FIX_SPLIT}, "scale-and-mask-remain"),
        ({"scale": FIX_SCALE, "mask": FIX_MASK_UNSQUEEZE}, "split-remains"),
        ({"split": FIX_SPLIT_UNFLATTEN, "mask": FIX_MASK}, "scale-remains"),
        ({"split": FIX_SPLIT, "scale": FIX_SCALE}, "mask-remains"),
        ({"split": FIX_SPLIT, "scale": FIX_SCALE, "mask": "~pad_mask[:, None, :, None]"},
         "mask-hides-queries"),
        # A learner who reads True as "blocked" drops the ~ (a learner-style session did).
        ({"split": FIX_SPLIT, "scale": FIX_SCALE, "mask": "pad_mask[:, None, None, :]"},
         "mask-inverted"),
        ({"split": FIX_SPLIT, "scale": FIX_SCALE, "mask": "(pad_mask == 0)[:, None, None, :]"},
         None),  # the right fix, spelled without ~
        ({"split": FIX_SPLIT, "scale": FIX_SCALE, "mask": "(pad_mask == 1)[:, None, None, :]"},
         "mask-inverted"),
    ],
)
def test_spot_the_bug_fixes_and_partial_fixes(edits, expected):
    res = verdict("multihead.spot_the_bug", edited(**edits))
    if expected is None:
        assert res.passed, res.message
    else:
        assert res.status == "failed" and res.mistake == expected, res.message


class FusedSelfAttention(nn.Module):
    """A right answer written another way: heads by unflatten, PyTorch's fused attention, -1e9."""

    def __init__(self, d_model, n_heads):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x, pad_mask=None):
        B, L, D = x.shape
        q, k, v = (t.unflatten(-1, (self.n_heads, -1)).transpose(1, 2)
                   for t in self.qkv(x).chunk(3, dim=-1))
        mask = None if pad_mask is None else pad_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(out.transpose(1, 2).reshape(B, L, D))


class MinusOneE9SelfAttention(FusedSelfAttention):
    def forward(self, x, pad_mask=None):
        B, L, D = x.shape
        q, k, v = (t.reshape(B, L, self.n_heads, self.d_head).transpose(1, 2)
                   for t in self.qkv(x).chunk(3, dim=-1))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)
        if pad_mask is not None:
            scores = scores.masked_fill(pad_mask[:, None, None, :] == 0, -1e9)
        return self.out((scores.softmax(-1) @ v).transpose(1, 2).reshape(B, L, D))


class RenamedSelfAttention(FusedSelfAttention):
    def __init__(self, d_model, n_heads):
        nn.Module.__init__(self)
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.to_qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)


@pytest.mark.parametrize("cls", [FusedSelfAttention, MinusOneE9SelfAttention])
def test_spot_the_bug_accepts_other_right_answers(cls):
    res = verdict("multihead.spot_the_bug", cls)
    assert res.passed, res.message


def test_spot_the_bug_renamed_layers_are_reported_by_name():
    res = verdict("multihead.spot_the_bug", RenamedSelfAttention)
    assert res.status == "error" and "qkv.weight" in res.message, res.message
