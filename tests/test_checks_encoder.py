"""Chapter 4's checks against hand-written learner answers (not the Mistake implementations):
right answers spelled in unusual ways pass, wrong ones get the right diagnosis.

The registry tests (test_checks_registry.py) already check that the references pass and that
every known mistake is diagnosed as itself."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import transformer_workbook.encoder as enc
from transformer_workbook.exercises import check, get
from transformer_workbook.multihead import MultiHeadAttention


def verdict(exercise_id, fn):
    """What `check` answers (the same cases, options and judging)."""
    return check(exercise_id, fn, quiet=True)


def test_the_references_are_the_package_modules():
    """One implementation: the checks' references are the modules the chapter teaches."""
    assert get("encoder.LayerNorm").reference is enc.LayerNorm
    assert get("encoder.FeedForward").reference is enc.FeedForward
    assert get("encoder.EncoderLayer").reference is enc.EncoderLayer
    assert get("encoder.Encoder").reference is enc.Encoder


def test_cases_vary_every_size():
    for eid, keys in [("encoder.LayerNorm", ("d_model", "eps")), ("encoder.FeedForward", ("d_model", "d_ff")),
                      ("encoder.EncoderLayer", ("d_model", "n_heads", "d_ff", "norm_first")),
                      ("encoder.Encoder", ("d_model", "n_heads", "n_layers", "d_ff", "norm_first"))]:
        cases = get(eid).cases()
        for key in keys:
            assert len({c.init[key] for c in cases}) > 1, (eid, key)
        shapes = [c.args[0].shape for c in cases]
        for dim in range(2):  # batch and length (or the leading dimensions)
            assert len({s[dim] for s in shapes}) > 1, (eid, dim)


# ---------------------------------------------------------------------------
# LayerNorm
# ---------------------------------------------------------------------------


class LNBase(nn.Module):
    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))


class LNVarMean(LNBase):  # right: var_mean with correction=0 and rsqrt
    def forward(self, x):
        var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class LNBiasedVar(LNBase):  # right: x.var(unbiased=False), and the gain applied with addcmul
    def forward(self, x):
        mu = x.mean(-1, keepdim=True)
        sigma = torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + self.eps)
        return torch.addcmul(self.bias, (x - mu) / sigma, self.weight)


class LNStd(LNBase):  # the textbook formula with torch.std: unbiased
    def forward(self, x):
        mu = x.mean(-1, keepdim=True)
        return self.weight * (x - mu) / torch.sqrt(x.std(-1, keepdim=True) ** 2 + self.eps) + self.bias


class LNAnnotated(nn.Module):  # the Annotated Transformer's, with its own names a_2 and b_2
    def __init__(self, d_model, eps=1e-6):
        features = d_model
        super().__init__()
        self.a_2 = nn.Parameter(torch.ones(features))
        self.b_2 = nn.Parameter(torch.zeros(features))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return self.a_2 * (x - mean) / (std + self.eps) + self.b_2


class LNAnnotatedRenamed(LNBase):  # the same, with the exercise's names: diagnosed by its source
    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return self.weight * (x - mean) / (std + self.eps) + self.bias


class LNBatchDim(LNBase):  # "normalize over the batch": dim 0
    def forward(self, x):
        mu = x.mean(0, keepdim=True)
        var = ((x - mu) ** 2).mean(0, keepdim=True)
        return (x - mu) / torch.sqrt(var + self.eps) * self.weight + self.bias


class LNSequenceDim(LNBase):  # over dim=-2, the positions of a (B, L, d) batch
    def forward(self, x):
        mu = x.mean(-2, keepdim=True)
        var = x.var(-2, unbiased=False, keepdim=True)
        return (x - mu) / torch.sqrt(var + self.eps) * self.weight + self.bias


class LNNoEps(LNBase):
    def forward(self, x):
        mu = x.mean(-1, keepdim=True)
        return (x - mu) / x.var(-1, unbiased=False, keepdim=True).sqrt() * self.weight + self.bias


class LNEpsHardCoded(LNBase):  # ignores the eps argument
    def forward(self, x):
        mu = x.mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5) * self.weight + self.bias


class LNTorch(LNBase):
    def forward(self, x):
        return nn.functional.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)


class LNModule(nn.Module):
    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.ln = nn.LayerNorm(d_model, eps=eps)

    def forward(self, x):
        return self.ln(x)


class LNTensorsNotParameters(nn.Module):
    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = torch.ones(d_model)  # plain tensors: not parameters
        self.bias = torch.zeros(d_model)

    def forward(self, x):
        mu = x.mean(-1, keepdim=True)
        var = x.var(-1, unbiased=False, keepdim=True)
        return (x - mu) / torch.sqrt(var + self.eps) * self.weight + self.bias


@pytest.mark.parametrize("cls", [LNVarMean, LNBiasedVar])
def test_layernorm_right_answers_pass(cls):
    res = verdict("encoder.LayerNorm", cls)
    assert res.passed, res.message


@pytest.mark.parametrize(
    "cls, expected",
    [
        (LNStd, "unbiased-variance"),
        (LNAnnotatedRenamed, "annotated-transformer"),
        (LNBatchDim, "normalized-over-the-batch"),
        (LNSequenceDim, "normalized-over-positions"),
        (LNNoEps, "no-eps"),
    ],
)
def test_layernorm_learner_mistakes_diagnosed(cls, expected):
    res = verdict("encoder.LayerNorm", cls)
    assert res.status == "failed" and res.mistake == expected, res.message


def test_layernorm_hard_coded_eps_fails_on_the_eps_case():
    res = verdict("encoder.LayerNorm", LNEpsHardCoded)
    assert res.status == "failed" and res.mistake == "wrong-values"
    assert "eps=0.1" in res.message


@pytest.mark.parametrize("cls", [LNTorch, LNModule])
def test_layernorm_from_torch_is_refused(cls):
    res = verdict("encoder.LayerNorm", cls)
    assert res.status == "failed" and res.mistake == "forbidden-call", res.message
    assert "Compute the mean and the variance yourself" in res.message


def test_layernorm_other_names_and_plain_tensors_are_reported_by_name():
    res = verdict("encoder.LayerNorm", LNAnnotated)
    assert res.status == "error" and "`weight`" in res.message and "a_2" in res.message
    renamed = type("LayerNorm", (LNAnnotated,), {"__init__": lambda self, features, eps=1e-6: None})
    res = verdict("encoder.LayerNorm", renamed)
    assert res.status == "error" and "could not build `LayerNorm(d_model=8" in res.message
    res = verdict("encoder.LayerNorm", LNTensorsNotParameters)
    assert res.status == "error" and "no parameter `weight`" in res.message


# ---------------------------------------------------------------------------
# FeedForward
# ---------------------------------------------------------------------------


class FFBase(nn.Module):
    def __init__(self, d_model, d_ff, dropout=0.0):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)
        self.p = dropout


class FFModules(FFBase):  # right: nn.ReLU and nn.Dropout modules
    def forward(self, x):
        return self.linear2(self.drop(self.act(self.linear1(x))))


class FFClamp(FFBase):  # right: clamp, and F.dropout with the module's mode
    def forward(self, x):
        h = torch.clamp(x @ self.linear1.weight.T + self.linear1.bias, min=0)
        return F.linear(F.dropout(h, self.p, training=self.training), self.linear2.weight, self.linear2.bias)


class FFDropoutAlwaysOn(FFBase):
    def forward(self, x):
        return self.linear2(F.dropout(F.relu(self.linear1(x)), self.p))


class FFSequential(nn.Module):
    def __init__(self, d_model, d_ff, dropout=0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Linear(d_ff, d_model))

    def forward(self, x):
        return self.net(x)


class FFReluOnOutput(FFBase):
    def forward(self, x):
        return torch.relu(self.linear2(torch.relu(self.linear1(x))))


class FFWithResidual(FFBase):
    def forward(self, x):
        return x + self.linear2(self.act(self.linear1(x)))


class FFHardCodedWidth(nn.Module):  # d_ff = 4 * d_model, whatever it is asked
    def __init__(self, d_model, d_ff, dropout=0.0):
        super().__init__()
        self.linear1 = nn.Linear(d_model, 4 * d_model)
        self.linear2 = nn.Linear(4 * d_model, d_model)

    def forward(self, x):
        return self.linear2(torch.relu(self.linear1(x)))


@pytest.mark.parametrize("cls", [FFModules, FFClamp])
def test_feed_forward_right_answers_pass(cls):
    assert verdict("encoder.FeedForward", cls).passed


@pytest.mark.parametrize("cls, expected", [(FFReluOnOutput, "relu-on-the-output"),
                                           (FFWithResidual, "residual-inside")])
def test_feed_forward_learner_mistakes_diagnosed(cls, expected):
    res = verdict("encoder.FeedForward", cls)
    assert res.status == "failed" and res.mistake == expected, res.message


def test_feed_forward_dropout_in_eval_mode_is_named():
    res = verdict("encoder.FeedForward", FFDropoutAlwaysOn)
    assert res.mistake == "nondeterministic" and "training=self.training" in res.message


def test_feed_forward_other_names_and_widths_are_reported():
    res = verdict("encoder.FeedForward", FFSequential)
    assert res.status == "error" and "linear1" in res.message and "net.0.weight" in res.message
    res = verdict("encoder.FeedForward", FFHardCodedWidth)
    assert res.status == "error" and "linear1.weight" in res.message and "shape" in res.message


# ---------------------------------------------------------------------------
# EncoderLayer
# ---------------------------------------------------------------------------


class LayerBase(nn.Module):
    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, norm_first=False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads)
        self.feed_forward = enc.FeedForward(d_model, d_ff, dropout)
        self.norm1 = enc.LayerNorm(d_model)
        self.norm2 = enc.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def sa(self, h, mask):
        out, _ = self.self_attn(h, h, h, mask=mask)
        return self.dropout(out)


class LayerRight(LayerBase):
    def forward(self, x, mask=None):
        if self.norm_first:
            x = x + self.sa(self.norm1(x), mask)
            return x + self.dropout(self.feed_forward(self.norm2(x)))
        x = self.norm1(x + self.sa(x, mask))
        return self.norm2(x + self.dropout(self.feed_forward(x)))


class LayerOwnParts(nn.Module):
    """Right, from scratch: the learner's own LayerNorm and FFN code, the package's attention."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, norm_first=False):
        super().__init__()
        self.pre = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads)
        self.feed_forward = nn.Module()
        self.feed_forward.linear1 = nn.Linear(d_model, d_ff)
        self.feed_forward.linear2 = nn.Linear(d_ff, d_model)
        self.norm1, self.norm2 = LNVarMean(d_model), LNVarMean(d_model)

    def ffn(self, h):
        return self.feed_forward.linear2(torch.relu(self.feed_forward.linear1(h)))

    def forward(self, x, mask=None):
        subs = [(lambda h: self.self_attn(h, h, h, mask)[0], self.norm1), (self.ffn, self.norm2)]
        for f, norm in subs:
            x = x + f(norm(x)) if self.pre else norm(x + f(x))
        return x


class LayerIgnoresNormFirst(LayerBase):
    def forward(self, x, mask=None):
        x = self.norm1(x + self.sa(x, mask))
        return self.norm2(x + self.feed_forward(x))


class LayerNoResidual(LayerBase):
    def forward(self, x, mask=None):
        if self.norm_first:
            x = self.sa(self.norm1(x), mask)
            return self.feed_forward(self.norm2(x))
        x = self.norm1(self.sa(x, mask))
        return self.norm2(self.feed_forward(x))


class LayerNormThenAdd(LayerBase):
    def forward(self, x, mask=None):
        if self.norm_first:
            x = x + self.sa(self.norm1(x), mask)
            return x + self.feed_forward(self.norm2(x))
        attn = self.norm1(self.sa(x, mask))
        x = x + attn
        return x + self.norm2(self.feed_forward(x))


class LayerTupleAdded(LayerBase):
    def forward(self, x, mask=None):
        x = self.norm1(x + self.self_attn(x, x, x, mask))  # forgot [0]
        return self.norm2(x + self.feed_forward(x))


class LayerTwoHeads(LayerRight):  # n_heads hard-coded
    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, norm_first=False):
        super().__init__(d_model, 2, d_ff, dropout, norm_first)


class LayerFromTorch(nn.Module):
    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, norm_first=False):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout, batch_first=True,
                                                norm_first=norm_first)

    def forward(self, x, mask=None):
        return self.layer(x, src_key_padding_mask=None if mask is None else ~mask)


@pytest.mark.parametrize("cls", [LayerRight, LayerOwnParts])
def test_encoder_layer_right_answers_pass(cls):
    res = verdict("encoder.EncoderLayer", cls)
    assert res.passed, res.message


@pytest.mark.parametrize(
    "cls, expected",
    [
        (LayerIgnoresNormFirst, "post-ln-when-pre-ln-asked"),
        (LayerNoResidual, "no-residual"),
        (LayerNormThenAdd, "normalized-before-the-add"),
    ],
)
def test_encoder_layer_learner_mistakes_diagnosed(cls, expected):
    res = verdict("encoder.EncoderLayer", cls)
    assert res.status == "failed" and res.mistake == expected, res.message


def test_encoder_layer_tuple_from_attention_is_explained():
    res = verdict("encoder.EncoderLayer", LayerTupleAdded)
    assert res.status == "error" and res.mistake == "exception"
    assert "tuple" in res.message


def test_encoder_layer_hard_coded_heads_fail():
    res = verdict("encoder.EncoderLayer", LayerTwoHeads)
    assert res.status in ("failed", "error") and not res.passed


def test_encoder_layer_from_torch_is_refused():
    res = verdict("encoder.EncoderLayer", LayerFromTorch)
    assert res.status == "failed" and res.mistake == "forbidden-call"


# ---------------------------------------------------------------------------
# Encoder (the stack)
# ---------------------------------------------------------------------------


class StackBase(nn.Module):
    def __init__(self, d_model, n_heads, n_layers, d_ff, norm_first=False):
        super().__init__()
        self.layers = nn.ModuleList(
            [enc.EncoderLayer(d_model, n_heads, d_ff, norm_first=norm_first) for _ in range(n_layers)]
        )


class StackIdentity(StackBase):  # right: nn.Identity (no parameters) when post-LN
    def __init__(self, d_model, n_heads, n_layers, d_ff, norm_first=False):
        super().__init__(d_model, n_heads, n_layers, d_ff, norm_first)
        self.norm = enc.LayerNorm(d_model) if norm_first else nn.Identity()

    def forward(self, x, mask=None):
        for layer in self.layers:
            x = layer(x, mask=mask)
        return self.norm(x)


class StackOwnLayers(nn.Module):  # right, with the learner's own layer class of the exercise before
    def __init__(self, d_model, n_heads, n_layers, d_ff, norm_first=False):
        super().__init__()
        self.layers = nn.ModuleList(LayerRight(d_model, n_heads, d_ff, norm_first=norm_first)
                                    for _ in range(n_layers))
        self.norm = LNVarMean(d_model) if norm_first else None

    def forward(self, x, mask=None):
        for layer in self.layers:
            x = layer(x, mask)
        return x if self.norm is None else self.norm(x)


class StackNoFinalNorm(StackBase):
    def forward(self, x, mask=None):
        for layer in self.layers:
            x = layer(x, mask)
        return x


class StackNormUnused(StackBase):
    def __init__(self, d_model, n_heads, n_layers, d_ff, norm_first=False):
        super().__init__(d_model, n_heads, n_layers, d_ff, norm_first)
        self.norm = enc.LayerNorm(d_model) if norm_first else None

    def forward(self, x, mask=None):
        for layer in self.layers:
            x = layer(x, mask)
        return x  # self.norm built, never applied


class StackAlwaysNorm(StackBase):
    def __init__(self, d_model, n_heads, n_layers, d_ff, norm_first=False):
        super().__init__(d_model, n_heads, n_layers, d_ff, norm_first)
        self.norm = enc.LayerNorm(d_model)

    def forward(self, x, mask=None):
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x)


class StackSharedLayer(nn.Module):
    def __init__(self, d_model, n_heads, n_layers, d_ff, norm_first=False):
        super().__init__()
        layer = enc.EncoderLayer(d_model, n_heads, d_ff, norm_first=norm_first)
        self.layers = nn.ModuleList([layer] * n_layers)  # one layer, n times
        self.norm = enc.LayerNorm(d_model) if norm_first else None

    def forward(self, x, mask=None):
        for layer in self.layers:
            x = layer(x, mask)
        return x if self.norm is None else self.norm(x)


class StackNoMask(StackIdentity):
    def forward(self, x, mask=None):
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


@pytest.mark.parametrize("cls", [StackIdentity, StackOwnLayers])
def test_encoder_stack_right_answers_pass(cls):
    res = verdict("encoder.Encoder", cls)
    assert res.passed, res.message


@pytest.mark.parametrize("cls", [StackNoFinalNorm, StackNormUnused])
def test_missing_final_norm_is_diagnosed_whether_built_or_not(cls):
    res = verdict("encoder.Encoder", cls)
    assert res.status == "failed" and res.mistake == "missing-final-norm", res.message


def test_stack_without_the_mask_is_diagnosed():
    res = verdict("encoder.Encoder", StackNoMask)
    assert res.mistake == "mask-not-passed", res.message


def test_stack_parameter_problems_are_reported_by_name():
    res = verdict("encoder.Encoder", StackAlwaysNorm)
    assert res.status == "error" and "`norm.weight`" in res.message
    assert "post-LN stack (norm_first=False) has no final norm" in res.message
    res = verdict("encoder.Encoder", StackSharedLayer)
    assert res.status == "error" and "layers.1." in res.message


# ---------------------------------------------------------------------------
# make_block (from a description)
# ---------------------------------------------------------------------------


def make_block_lambdas(kind, d_model, n_heads):  # right: lambdas and a table of settings
    gelu = lambda d, f, p: enc.FeedForward(d, f, p, activation="gelu")  # noqa: E731
    table = {
        "paper": dict(d_ff=4 * d_model),
        "bert": dict(d_ff=4 * d_model, feed_forward=gelu, norm=lambda d: enc.LayerNorm(d, eps=1e-12)),
        "gpt2": dict(d_ff=4 * d_model, feed_forward=gelu, norm_first=True),
        "llama": dict(d_ff=math.floor(8 * d_model / 3), feed_forward=enc.SwiGLU, norm_first=True,
                      norm=lambda d: enc.RMSNorm(d, eps=1e-6)),
    }
    return enc.EncoderLayer(d_model, n_heads, **table[kind])


def make_block_all_post(kind, d_model, n_heads):
    gelu = functools.partial(enc.FeedForward, activation="gelu")
    if kind == "paper":
        return enc.EncoderLayer(d_model, n_heads, 4 * d_model)
    if kind == "bert":
        return enc.EncoderLayer(d_model, n_heads, 4 * d_model, feed_forward=gelu,
                                norm=functools.partial(enc.LayerNorm, eps=1e-12))
    if kind == "gpt2":
        return enc.EncoderLayer(d_model, n_heads, 4 * d_model, feed_forward=gelu)
    return enc.EncoderLayer(d_model, n_heads, 8 * d_model // 3, feed_forward=enc.SwiGLU,
                            norm=functools.partial(enc.RMSNorm, eps=1e-6))


def make_block_llama_layernorm(kind, d_model, n_heads):
    if kind == "llama":
        return enc.EncoderLayer(d_model, n_heads, 8 * d_model // 3, norm_first=True,
                                feed_forward=enc.SwiGLU)
    return make_block_lambdas(kind, d_model, n_heads)


def make_block_returns_the_class(kind, d_model, n_heads):
    return enc.EncoderLayer


def test_make_block_right_answer_passes():
    assert verdict("encoder.make_block", make_block_lambdas).passed


def test_make_block_learner_mistakes():
    assert verdict("encoder.make_block", make_block_all_post).mistake == "everything-post-ln"
    res = verdict("encoder.make_block", make_block_llama_layernorm)
    assert res.status == "error" and "norm1.bias" in res.message and "RMSNorm" in res.message
    res = verdict("encoder.make_block", make_block_returns_the_class)
    assert res.status == "error" and "nn.Module" in res.message
