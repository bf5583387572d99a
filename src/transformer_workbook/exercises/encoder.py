"""Chapter 4 exercises: LayerNorm, the feed-forward network, the encoder layer,
the stack, and a block built from its description.

Each known mistake is a small implementation of that mistake (a subclass of the
package's module whose ``forward`` takes the wrong step): the learner's code is
diagnosed with it when the two behave the same on every case. The class
exercises build the learner's class, load the case's weights into it by
parameter name and call ``forward`` (the shared helper
:func:`.modules.build_and_call`); the stack exercise and the description
exercise use a variant of it, below.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import encoder as enc
from ..masks import causal_mask, combine_masks, padding_mask
from .api import register
from .core import randn
from .judging import Exercise, Mistake
from .modules import ModuleCase, build_and_call, load_params, reference_params

CHAPTER = "04_encoder"


def _params(reference, init: dict, g: torch.Generator, small: bool = False) -> dict:
    """Seeded weights for every parameter of ``reference(**init)``, by name.

    Matrices N(0, 1/fan_in); linear biases N(0, 0.3^2); normalization gains
    1 + N(0, 0.3^2) (near 1, as after training) and biases N(0, 0.3^2).
    ``small``: matrices ten times smaller and zero linear biases, so that the
    activations a case starts from stay small (where ``eps`` matters).
    """
    norms = {name for name, module in reference(**init).named_modules()
             if isinstance(module, (enc.LayerNorm, enc.RMSNorm))}

    def in_norm(name):
        return name.rpartition(".")[0] in norms

    def scale(name, p):
        if p.dim() >= 2:
            return (0.1 if small else 1.0) / math.sqrt(p.shape[-1])
        return 0.0 if small and not in_norm(name) else 0.3

    params = reference_params(reference, init, g, scale=scale)
    for name, value in params.items():
        if in_norm(name) and name.endswith("weight"):
            params[name] = value + 1.0  # a gain near 1
    return params


def _keep(lengths, L):
    """(B, 1, 1, L) padding mask: True at the real tokens of right-padded sequences."""
    return combine_masks(padding_mask(torch.tensor(lengths), L))


# ---------------------------------------------------------------------------
# encoder.LayerNorm
# ---------------------------------------------------------------------------


def layernorm_cases(seed: int) -> list[ModuleCase]:
    g = torch.Generator().manual_seed(seed)

    def case(name, shape, d_model, eps=1e-5, scale=3.0, offset=2.0, tags=(), x=None):
        init = {"d_model": d_model, "eps": eps}
        if x is None:
            x = randn(g, *shape, d_model, scale=scale) + offset
        return ModuleCase(name, args=(x,), tags=frozenset(tags), init=init,
                          params=_params(enc.LayerNorm, init, g), arg_names=("x",))

    constant = randn(g, 1, 3, 7) * 2 - 1
    constant[0, 1] = 0.75  # one position whose features are all equal: variance 0
    return [
        case("B=2, L=5, d_model=8", (2, 5), 8, tags={"3d"}),
        case("B=3, L=4, d_model=6, eps=0.1", (3, 4), 6, eps=0.1, scale=1.0, offset=0.0, tags={"3d"}),
        case("2-D input: 4 vectors of d_model=10", (4,), 10, tags={"2d"}),
        case("2-D input: 3 vectors of d_model=5, eps=0.01", (3,), 5, eps=0.01, scale=0.5, tags={"2d"}),
        case("4-D input: (B=2, H=3, L=2, d_model=4)", (2, 3, 2), 4, tags={"4d"}),
        case("small values (std 0.001): B=2, L=3, d_model=5", (2, 3), 5, scale=1e-3, offset=0.0,
             tags={"3d"}),
        case("a position whose features are all equal: B=1, L=3, d_model=7", (), 7, tags={"3d"},
             x=constant),
        case("one position: B=1, L=1, d_model=3", (1, 1), 3, tags={"3d"}),
    ]


class _LayerNormSteps(enc.LayerNorm):
    """The package's module (its weight and bias), with the formula's steps the mistakes reuse."""

    def affine(self, normalized):
        return normalized * self.weight + self.bias


class _UnbiasedVariance(_LayerNormSteps):
    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True)  # unbiased: divides by d_model - 1
        return self.affine((x - mean) / torch.sqrt(var + self.eps))


class _AnnotatedTransformer(_LayerNormSteps):
    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        std = x.std(dim=-1, keepdim=True)  # unbiased, and eps added outside the root
        return self.affine((x - mean) / (std + self.eps))


class _OverDim1(_LayerNormSteps):
    def forward(self, x):
        mean = x.mean(dim=1, keepdim=True)  # over the positions of a (B, L, d) batch
        var = ((x - mean) ** 2).mean(dim=1, keepdim=True)
        return self.affine((x - mean) / torch.sqrt(var + self.eps))


class _OverTheBatch(_LayerNormSteps):
    def forward(self, x):
        dims = tuple(range(x.dim() - 1))  # every dimension but the features: batch norm's statistics
        mean = x.mean(dim=dims, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
        return self.affine((x - mean) / torch.sqrt(var + self.eps))


class _NoEps(_LayerNormSteps):
    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        return self.affine((x - mean) / torch.sqrt(var))


class _EpsOutside(_LayerNormSteps):
    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        return self.affine((x - mean) / (torch.sqrt(var) + self.eps))


class _NoGainBias(_LayerNormSteps):
    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps)  # weight and bias never used


class _NotCentred(_LayerNormSteps):
    def forward(self, x):
        mean_square = (x**2).mean(dim=-1, keepdim=True)  # RMSNorm's statistic: no mean removed
        return self.affine(x / torch.sqrt(mean_square + self.eps))


register(
    Exercise(
        id="encoder.LayerNorm",
        title="Layer normalization",
        target="LayerNorm",
        chapter=CHAPTER,
        reference=enc.LayerNorm,
        make_cases=layernorm_cases,
        call=build_and_call,
        points=3,
        forbidden=("torch.nn.LayerNorm", "torch.nn.functional.layer_norm", "torch.layer_norm",
                   "torch.nn.functional.group_norm", "torch.nn.RMSNorm", "torch.nn.functional.rms_norm"),
        forbidden_reason="Compute the mean and the variance yourself, with tensor operations.",
        notes={
            "exception": "The cases differ in d_model, eps and the number of dimensions of x: "
                         "(N, d_model), (B, L, d_model) and (B, H, L, d_model); normalize over the "
                         "last one, whatever comes before it.",
        },
        mistakes=[
            Mistake(
                "unbiased-variance",
                "You divide by the unbiased variance (`x.var(-1)` and `x.std(-1)` divide by "
                "d_model - 1). Layer normalization uses the biased one, the mean of the squared "
                "deviations: `x.var(-1, unbiased=False, keepdim=True)` or "
                "`((x - mean) ** 2).mean(-1, keepdim=True)`. [1, 0, 0, 0] must become "
                "[1.732, -0.577, -0.577, -0.577], not [1.5, -0.5, -0.5, -0.5].",
                _UnbiasedVariance,
            ),
            Mistake(
                "annotated-transformer",
                "This is the LayerNorm of the Annotated Transformer (2018), `(x - mean) / "
                "(x.std(-1) + eps)`: two differences from nn.LayerNorm. `std` is unbiased (it "
                "divides by d_model - 1; use the biased variance), and eps is added outside the "
                "square root: write `torch.sqrt(var + self.eps)`.",
                _AnnotatedTransformer,
            ),
            Mistake(
                "normalized-over-positions",
                "You normalize each feature over the positions (dim 1 of a (B, L, d_model) "
                "batch). Layer normalization normalizes each position's vector over its own "
                "features: the last dimension, `dim=-1`, with `keepdim=True`.",
                _OverDim1,
                ignore_tags=frozenset({"2d", "4d"}),  # dim 1 or dim -2: the 3-D cases show both
            ),
            Mistake(
                "normalized-over-the-batch",
                "You compute each feature's statistics across the batch: that is batch "
                "normalization, whose output for one example changes with the other examples "
                "in the batch. Layer normalization takes the mean and the variance of each "
                "vector over its own features, `dim=-1`.",
                _OverTheBatch,
                ignore_tags=frozenset({"3d", "4d"}),  # dim 0, or every dimension but the last
            ),
            Mistake(
                "no-eps",
                "You never add eps: a vector whose features are all equal has variance 0 and "
                "comes out as NaN (0/0), and a tiny variance blows up. Divide by "
                "`torch.sqrt(var + self.eps)`.",
                _NoEps,
            ),
            Mistake(
                "eps-outside-sqrt",
                "You add eps outside the square root, `(x - mean) / (sqrt(var) + eps)`. "
                "nn.LayerNorm adds it to the variance, inside the root: "
                "`(x - mean) / torch.sqrt(var + self.eps)`. The two differ wherever the variance "
                "is small compared with eps.",
                _EpsOutside,
            ),
            Mistake(
                "no-gain-or-bias",
                "The normalization is right, but the learned gain and bias are never applied: "
                "multiply by `self.weight` and add `self.bias` at the end.",
                _NoGainBias,
            ),
            Mistake(
                "not-centred",
                "You divide x by its root mean square without subtracting the mean: that is "
                "RMSNorm (section 4.9), not LayerNorm. Subtract the mean first, and use the "
                "variance of the centred values.",
                _NotCentred,
            ),
        ],
        hints=[
            "__init__: `super().__init__()`, keep eps, and two parameters of shape (d_model,): "
            "`self.weight = nn.Parameter(torch.ones(d_model))` and "
            "`self.bias = nn.Parameter(torch.zeros(d_model))`.",
            "forward: the mean and the variance over the last dimension, `dim=-1, keepdim=True`, "
            "so they broadcast against x whatever its number of dimensions.",
            "The variance is the biased one: the mean of `(x - mean) ** 2` (or "
            "`x.var(-1, unbiased=False, keepdim=True)`).",
            "`(x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias`: eps goes inside "
            "the square root.",
        ],
    )
)


# ---------------------------------------------------------------------------
# encoder.FeedForward
# ---------------------------------------------------------------------------


def feed_forward_cases(seed: int) -> list[ModuleCase]:
    g = torch.Generator().manual_seed(seed)

    def case(name, shape, d_model, d_ff, dropout=None):
        init = {"d_model": d_model, "d_ff": d_ff}
        if dropout is not None:
            init["dropout"] = dropout
        x = randn(g, *shape, d_model, scale=2.0)
        return ModuleCase(name, args=(x,), init=init, params=_params(enc.FeedForward, init, g),
                          arg_names=("x",))

    return [
        case("B=2, L=5, d_model=8, d_ff=32", (2, 5), 8, 32),
        case("B=1, L=3, d_model=6, d_ff=10", (1, 3), 6, 10),
        case("2-D input: 4 vectors, d_model=5, d_ff=7", (4,), 5, 7),
        case("4-D input: (2, 2, 3, d_model=4), d_ff=12", (2, 2, 3), 4, 12),
        case("built with dropout=0.1 (the check runs it in eval mode): B=3, L=2, d_model=12, "
             "d_ff=48", (3, 2), 12, 48, dropout=0.1),
        case("d_ff smaller than d_model: B=2, L=4, d_model=9, d_ff=3", (2, 4), 9, 3),
    ]


class _NoActivation(enc.FeedForward):
    def forward(self, x):
        return self.linear2(self.linear1(x))


class _ReluOnOutputToo(enc.FeedForward):
    def forward(self, x):
        return F.relu(self.linear2(F.relu(self.linear1(x))))


class _ReluAfterSecond(enc.FeedForward):
    def forward(self, x):
        return F.relu(self.linear2(self.linear1(x)))


class _Gelu(enc.FeedForward):
    def forward(self, x):
        return self.linear2(F.gelu(self.linear1(x)))


class _ResidualInside(enc.FeedForward):
    def forward(self, x):
        return x + self.linear2(F.relu(self.linear1(x)))


register(
    Exercise(
        id="encoder.FeedForward",
        title="The position-wise feed-forward network",
        target="FeedForward",
        chapter=CHAPTER,
        reference=enc.FeedForward,
        make_cases=feed_forward_cases,
        call=build_and_call,
        points=2,
        notes={
            "exception": "The cases differ in d_model, d_ff and the number of dimensions of x; "
                         "nn.Linear works on the last dimension whatever comes before it.",
            "nondeterministic": "`F.dropout(h, p)` drops even in eval mode unless you pass "
                                "`training=self.training`; an `nn.Dropout` layer follows the "
                                "module's mode.",
        },
        mistakes=[
            Mistake(
                "no-activation",
                "There is no ReLU between the two linear layers, so the network is one linear map "
                "(two matrices multiply into one). Apply `torch.relu` to the hidden layer: "
                "`linear2(relu(linear1(x)))`.",
                _NoActivation,
            ),
            Mistake(
                "relu-on-the-output",
                "You apply the ReLU after the second layer too. FFN(x) = max(0, x W1 + b1) W2 + b2 "
                "has one ReLU, on the hidden layer; the output must be able to go negative (it is "
                "added to the residual stream).",
                _ReluOnOutputToo,
            ),
            Mistake(
                "relu-after-the-second-layer",
                "Your ReLU comes after the second layer instead of between the two: "
                "`linear2(relu(linear1(x)))`, not `relu(linear2(linear1(x)))`.",
                _ReluAfterSecond,
            ),
            Mistake(
                "gelu",
                "You use GELU (as BERT and GPT do); the paper's network, and this exercise, use "
                "ReLU: `torch.relu` (or `F.relu`).",
                _Gelu,
            ),
            Mistake(
                "residual-inside",
                "You add the input to the output (`x + ...`). The residual connection belongs to "
                "the encoder layer (section 4.6), not to the feed-forward network: return "
                "`linear2(relu(linear1(x)))` only.",
                _ResidualInside,
            ),
        ],
        hints=[
            "__init__: `super().__init__()`, then `self.linear1 = nn.Linear(d_model, d_ff)`, "
            "`self.linear2 = nn.Linear(d_ff, d_model)` and `self.dropout = nn.Dropout(dropout)`.",
            "forward: `self.linear2(self.dropout(torch.relu(self.linear1(x))))`.",
            "nn.Linear acts on the last dimension: the same two layers run on every position of "
            "every sequence, whatever the shape of x.",
        ],
    )
)


# ---------------------------------------------------------------------------
# encoder.EncoderLayer
# ---------------------------------------------------------------------------


def encoder_layer_cases(seed: int) -> list[ModuleCase]:
    g = torch.Generator().manual_seed(seed)

    def case(name, d_model, n_heads, d_ff, B, L, norm_first=False, mask=None, dropout=None, tags=()):
        init = {"d_model": d_model, "n_heads": n_heads, "d_ff": d_ff, "norm_first": norm_first}
        if dropout is not None:
            init["dropout"] = dropout
        x = randn(g, B, L, d_model, scale=2.0) + 0.5
        return ModuleCase(name, args=(x,), kwargs={} if mask is None else {"mask": mask},
                          tags=frozenset(tags) | ({"pre"} if norm_first else set()), init=init,
                          params=_params(enc.EncoderLayer, init, g), arg_names=("x",))

    return [
        case("post-LN: d_model=8, 2 heads, d_ff=16, B=2, L=5", 8, 2, 16, 2, 5),
        case("pre-LN: d_model=8, 2 heads, d_ff=16, B=2, L=5", 8, 2, 16, 2, 5, norm_first=True),
        case("post-LN with a (B, 1, 1, L) padding mask: d_model=12, 3 heads, d_ff=20, B=3, L=4",
             12, 3, 20, 3, 4, mask=_keep([4, 2, 3], 4), tags={"mask"}),
        case("pre-LN with a (B, 1, 1, L) padding mask: d_model=6, 1 head, d_ff=12, B=2, L=6",
             6, 1, 12, 2, 6, norm_first=True, mask=_keep([6, 3], 6), tags={"mask"}),
        case("post-LN built with dropout=0.1 (the check runs it in eval mode): d_model=16, "
             "4 heads, d_ff=32, B=1, L=3", 16, 4, 32, 1, 3, dropout=0.1),
        case("pre-LN with an (L, L) mask: d_model=10, 5 heads, d_ff=8, B=2, L=5",
             10, 5, 8, 2, 5, norm_first=True, mask=causal_mask(5), tags={"mask"}),
        case("post-LN, one position: d_model=4, 2 heads, d_ff=4, B=3, L=1", 4, 2, 4, 3, 1),
    ]


class _EncoderLayerSteps(enc.EncoderLayer):
    """The package's layer, with its two sublayers as methods the mistakes reuse."""

    def attend(self, h, mask):
        return self.self_attn(h, h, h, mask)[0]  # (B, L, d_model)


class _NoResidual(_EncoderLayerSteps):
    def forward(self, x, mask=None):
        if self.norm_first:
            x = self.attend(self.norm1(x), mask)
            return self.feed_forward(self.norm2(x))
        x = self.norm1(self.attend(x, mask))
        return self.norm2(self.feed_forward(x))


class _AlwaysPreLN(_EncoderLayerSteps):
    def forward(self, x, mask=None):
        x = x + self.attend(self.norm1(x), mask)
        return x + self.feed_forward(self.norm2(x))


class _AlwaysPostLN(_EncoderLayerSteps):
    def forward(self, x, mask=None):
        x = self.norm1(x + self.attend(x, mask))
        return self.norm2(x + self.feed_forward(x))


class _NormBeforeAdd(_EncoderLayerSteps):
    def forward(self, x, mask=None):
        if self.norm_first:
            x = x + self.attend(self.norm1(x), mask)
            return x + self.feed_forward(self.norm2(x))
        x = x + self.norm1(self.attend(x, mask))  # the sublayer's output normalized, then added
        return x + self.norm2(self.feed_forward(x))


class _PreLNNormalizedResidual(_EncoderLayerSteps):
    def forward(self, x, mask=None):
        if not self.norm_first:
            x = self.norm1(x + self.attend(x, mask))
            return self.norm2(x + self.feed_forward(x))
        x = self.norm1(x)  # the residual stream itself normalized
        x = x + self.attend(x, mask)
        x = self.norm2(x)
        return x + self.feed_forward(x)


class _MaskIgnored(_EncoderLayerSteps):
    def forward(self, x, mask=None):
        return enc.EncoderLayer.forward(self, x, None)


class _FeedForwardOnInput(_EncoderLayerSteps):
    def forward(self, x, mask=None):
        if self.norm_first:
            h = x + self.attend(self.norm1(x), mask)
            return h + self.feed_forward(self.norm2(x))  # reads the layer's input x
        h = self.norm1(x + self.attend(x, mask))
        return self.norm2(h + self.feed_forward(x))


register(
    Exercise(
        id="encoder.EncoderLayer",
        title="The encoder layer",
        target="EncoderLayer",
        chapter=CHAPTER,
        reference=enc.EncoderLayer,
        make_cases=encoder_layer_cases,
        call=build_and_call,
        points=4,
        forbidden=("torch.nn.TransformerEncoderLayer", "torch.nn.TransformerEncoder",
                   "torch.nn.Transformer"),
        forbidden_reason="Build the layer from MultiHeadAttention, FeedForward and LayerNorm.",
        notes={
            "exception": "The cases differ in d_model, n_heads, d_ff, the batch, the length, "
                         "norm_first and the mask: none, a (B, 1, 1, L) padding mask or an "
                         "(L, L) mask. Remember that MultiHeadAttention returns a tuple "
                         "(output, weights).",
            "nondeterministic": "Dropout must follow the module's mode: use `nn.Dropout` layers "
                                "(or `F.dropout(..., training=self.training)`).",
        },
        mistakes=[
            Mistake(
                "no-residual",
                "There are no residual connections: each sublayer's output replaces x instead of "
                "being added to it. Post-LN is `x = norm(x + sublayer(x))`, pre-LN "
                "`x = x + sublayer(norm(x))`.",
                _NoResidual,
            ),
            Mistake(
                "pre-ln-when-post-ln-asked",
                "Your layer is always pre-LN (`x + sublayer(norm(x))`), but with "
                "norm_first=False (the default, the paper's layer) it must be post-LN: "
                "`x = norm1(x + self_attn(x))`, then `x = norm2(x + feed_forward(x))`.",
                _AlwaysPreLN,
            ),
            Mistake(
                "post-ln-when-pre-ln-asked",
                "Your layer is always post-LN: with norm_first=True it must be pre-LN, "
                "`x = x + self_attn(norm1(x))`, then `x = x + feed_forward(norm2(x))` "
                "(the norm on the sublayer's input, the residual path left alone).",
                _AlwaysPostLN,
            ),
            Mistake(
                "normalized-before-the-add",
                "In post-LN you normalize the sublayer's output and then add x, "
                "`x + norm1(self_attn(x))`. The paper normalizes the sum: "
                "`norm1(x + self_attn(x))`, LayerNorm(x + Sublayer(x)).",
                _NormBeforeAdd,
            ),
            Mistake(
                "pre-ln-normalizes-the-residual",
                "Your pre-LN layer normalizes the residual stream itself (`x = norm1(x)`, then "
                "`x + self_attn(x)`). Only the sublayer's input is normalized; the residual path "
                "carries x untouched: `x = x + self_attn(norm1(x))`.",
                _PreLNNormalizedResidual,
            ),
            Mistake(
                "mask-ignored",
                "The mask never reaches the attention: pass it on, "
                "`self.self_attn(h, h, h, mask)`. Without it every position also attends to "
                "the padding.",
                _MaskIgnored,
            ),
            Mistake(
                "feed-forward-reads-the-input",
                "Your feed-forward sublayer reads the layer's input x instead of the attention "
                "sublayer's result. The sublayers run one after the other: the second one "
                "starts from the x the first one produced.",
                _FeedForwardOnInput,
            ),
        ],
        hints=[
            "__init__: `super().__init__()`, keep norm_first, then `self.self_attn = "
            "MultiHeadAttention(d_model, n_heads)`, `self.feed_forward = FeedForward(d_model, "
            "d_ff, dropout)`, `self.norm1 = LayerNorm(d_model)`, `self.norm2 = LayerNorm(d_model)` "
            "and `self.dropout = nn.Dropout(dropout)`.",
            "Self-attention: queries, keys and values are the same tensor, and the module returns "
            "(output, weights): `self.self_attn(h, h, h, mask)[0]`.",
            "Post-LN (norm_first=False): `x = norm1(x + attn(x))`, then `x = norm2(x + ffn(x))`.",
            "Pre-LN (norm_first=True): `x = x + attn(norm1(x))`, then `x = x + ffn(norm2(x))`.",
        ],
    )
)


# ---------------------------------------------------------------------------
# encoder.Encoder (the stack; a pre-LN stack needs a final norm)
# ---------------------------------------------------------------------------


def encoder_cases(seed: int) -> list[ModuleCase]:
    g = torch.Generator().manual_seed(seed)

    def case(name, d_model, n_heads, n_layers, d_ff, B, L, norm_first=False, mask=None, tags=()):
        init = {"d_model": d_model, "n_heads": n_heads, "n_layers": n_layers, "d_ff": d_ff,
                "norm_first": norm_first}
        x = randn(g, B, L, d_model, scale=3.0) + 1.0
        return ModuleCase(name, args=(x,), kwargs={} if mask is None else {"mask": mask},
                          tags=frozenset(tags) | ({"pre"} if norm_first else set()), init=init,
                          params=_params(enc.Encoder, init, g), arg_names=("x",))

    return [
        case("post-LN, 2 layers: d_model=8, 2 heads, d_ff=16, B=2, L=5", 8, 2, 2, 16, 2, 5),
        case("pre-LN, 2 layers: d_model=8, 2 heads, d_ff=16, B=2, L=5", 8, 2, 2, 16, 2, 5,
             norm_first=True),
        case("pre-LN, 3 layers, (B, 1, 1, L) padding mask: d_model=12, 3 heads, d_ff=24, B=3, L=4",
             12, 3, 3, 24, 3, 4, norm_first=True, mask=_keep([4, 1, 3], 4), tags={"mask"}),
        case("post-LN, 1 layer, (B, 1, 1, L) padding mask: d_model=6, 1 head, d_ff=12, B=2, L=6",
             6, 1, 1, 12, 2, 6, mask=_keep([2, 6], 6), tags={"mask"}),
        case("pre-LN, 1 layer: d_model=16, 4 heads, d_ff=8, B=1, L=3", 16, 4, 1, 8, 1, 3,
             norm_first=True),
        case("post-LN, 4 layers, (L, L) mask: d_model=10, 5 heads, d_ff=20, B=2, L=5",
             10, 5, 4, 20, 2, 5, mask=causal_mask(5), tags={"mask"}),
    ]


def build_stack_and_call(cls: object, case: ModuleCase):
    """:func:`.modules.build_and_call`, except that a stack with no final norm at all is run.

    A pre-LN case's weights include the final norm's (``norm.weight``,
    ``norm.bias``). A class that builds no such parameter (and every other
    one) gets the rest of the weights and runs, so that its results, not a
    missing name, show what leaving out the final norm does; any other
    difference in the parameters is reported as :func:`.modules.load_params`
    reports it.
    """
    final = {name for name in case.params if name.startswith("norm.")}
    if final and isinstance(cls, type):
        try:
            names = {name for name, _ in cls(**case.init).named_parameters()}
        except Exception:  # noqa: BLE001 - build_and_call below reports it
            names = None
        if names == set(case.params) - final:
            case = dataclasses.replace(
                case, params={k: v for k, v in case.params.items() if k not in final}
            )
    return build_and_call(cls, case)


class _NoFinalNorm(enc.Encoder):
    def __init__(self, d_model, n_heads, n_layers, d_ff, dropout=0.0, norm_first=False):
        super().__init__(d_model, n_heads, n_layers, d_ff, dropout, norm_first, final_norm=False)


class _MaskNotPassed(enc.Encoder):
    def forward(self, x, mask=None):
        return enc.Encoder.forward(self, x, None)


class _FinalNormOnTheInput(enc.Encoder):
    def forward(self, x, mask=None):
        if self.norm is not None:
            x = self.norm(x)  # normalizes the stack's input instead of its output
        for layer in self.layers:
            x = layer(x, mask)
        return x


register(
    Exercise(
        id="encoder.Encoder",
        title="The encoder stack",
        target="Encoder",
        chapter=CHAPTER,
        reference=enc.Encoder,
        make_cases=encoder_cases,
        call=build_stack_and_call,
        points=2,
        forbidden=("torch.nn.TransformerEncoderLayer", "torch.nn.TransformerEncoder",
                   "torch.nn.Transformer"),
        forbidden_reason="Stack EncoderLayer modules (yours or the package's) yourself.",
        notes={
            "exception": "The cases differ in d_model, n_heads, the number of layers, d_ff, the "
                         "batch, the length, norm_first and the mask. A post-LN stack "
                         "(norm_first=False) has no final norm (`self.norm = None`): its last "
                         "layer already ends with one.",
        },
        mistakes=[
            Mistake(
                "missing-final-norm",
                "Your pre-LN stack has no final LayerNorm. In pre-LN the residual stream is "
                "never normalized inside the layers, so its scale grows with depth: add "
                "`self.norm = LayerNorm(d_model)` when norm_first is True (None otherwise) and "
                "apply it to the output of the last layer.",
                _NoFinalNorm,
            ),
            Mistake(
                "mask-not-passed",
                "The layers are called without the mask: pass it to every layer, "
                "`x = layer(x, mask)`.",
                _MaskNotPassed,
            ),
            Mistake(
                "final-norm-on-the-input",
                "Your final norm normalizes the stack's input; it belongs after the last layer, "
                "on the output (the pre-LN layers already normalize what each sublayer reads).",
                _FinalNormOnTheInput,
            ),
        ],
        hints=[
            "__init__: `self.layers = nn.ModuleList([EncoderLayer(d_model, n_heads, d_ff, "
            "norm_first=norm_first) for _ in range(n_layers)])`: n_layers separate layers, each "
            "with its own weights.",
            "forward: `for layer in self.layers: x = layer(x, mask)`.",
            "A pre-LN stack ends with one more LayerNorm (`self.norm`, applied to the last "
            "layer's output); a post-LN stack does not (`self.norm = None`).",
        ],
    )
)


# ---------------------------------------------------------------------------
# encoder.make_block (not a transcription: from a description to a configuration)
# ---------------------------------------------------------------------------

#: The blocks the exercise describes.
BLOCK_KINDS = ("paper", "bert", "gpt2", "llama")


def make_block(kind: str, d_model: int, n_heads: int) -> nn.Module:
    """One block of the model ``kind`` describes, built from the package's parts."""
    EncoderLayer, LayerNorm, RMSNorm = enc.EncoderLayer, enc.LayerNorm, enc.RMSNorm
    FeedForward, SwiGLU = enc.FeedForward, enc.SwiGLU
    gelu = functools.partial(FeedForward, activation="gelu")
    if kind == "paper":  # post-LN, LayerNorm, ReLU, d_ff = 4 d_model
        return EncoderLayer(d_model, n_heads, 4 * d_model)
    if kind == "bert":  # post-LN, LayerNorm with eps 1e-12, GELU
        return EncoderLayer(d_model, n_heads, 4 * d_model,
                            norm=functools.partial(LayerNorm, eps=1e-12), feed_forward=gelu)
    if kind == "gpt2":  # pre-LN, LayerNorm, GELU
        return EncoderLayer(d_model, n_heads, 4 * d_model, norm_first=True, feed_forward=gelu)
    if kind == "llama":  # pre-LN, RMSNorm with eps 1e-6, SwiGLU of width 8 d_model / 3
        return EncoderLayer(d_model, n_heads, 8 * d_model // 3, norm_first=True,
                            norm=functools.partial(RMSNorm, eps=1e-6), feed_forward=SwiGLU)
    raise ValueError(f"kind must be one of {BLOCK_KINDS}, got {kind!r}")


@dataclasses.dataclass
class BlockCase(ModuleCase):
    """A :class:`ModuleCase` whose ``init`` holds ``make_block``'s arguments."""

    def describe(self) -> str:
        init = ", ".join(f"{v!r}" for v in self.init.values())
        mask = self.kwargs.get("mask")
        with_mask = "" if mask is None else f" and a mask {tuple(mask.shape)}"
        return f"{self.name}: make_block({init}), called on x {tuple(self.args[0].shape)}{with_mask}"


def make_block_cases(seed: int) -> list[BlockCase]:
    g = torch.Generator().manual_seed(seed)

    def case(name, kind, d_model, n_heads, B, L, small=False, mask=None, tags=()):
        init = {"kind": kind, "d_model": d_model, "n_heads": n_heads}
        x = randn(g, B, L, d_model, scale=1e-3 if small else 2.0)
        return BlockCase(name, args=(x,), kwargs={} if mask is None else {"mask": mask},
                         tags=frozenset(tags) | {kind}, init=init,
                         params=_params(make_block, init, g, small=small), arg_names=("x",))

    return [
        case("the paper's block, d_model=8, 2 heads, B=2, L=5", "paper", 8, 2, 2, 5),
        case("BERT's block, d_model=12, 3 heads, B=2, L=4", "bert", 12, 3, 2, 4),
        case("GPT-2's block, d_model=8, 4 heads, B=3, L=3", "gpt2", 8, 4, 3, 3),
        case("LLaMA's block, d_model=12, 2 heads, B=2, L=5", "llama", 12, 2, 2, 5),
        case("BERT's block on small activations (std 0.001), d_model=16, 4 heads, B=1, L=4",
             "bert", 16, 4, 1, 4, small=True),
        case("LLaMA's block on small activations (std 0.001), d_model=6, 3 heads, B=2, L=3",
             "llama", 6, 3, 2, 3, small=True),
        case("LLaMA's block with a (B, 1, 1, L) padding mask, d_model=24, 4 heads, B=2, L=6",
             "llama", 24, 4, 2, 6, mask=_keep([6, 4], 6)),
        case("GPT-2's block with a (B, 1, 1, L) padding mask, d_model=6, 2 heads, B=2, L=4",
             "gpt2", 6, 2, 2, 4, mask=_keep([1, 4], 4)),
    ]


def build_block_and_call(fn: object, case: BlockCase):
    """``Exercise.call`` for :func:`make_block`: build, load the weights by name, eval, forward."""
    if isinstance(fn, type):
        raise TypeError("pass your function `make_block` itself, not a class")
    block = fn(case.init["kind"], case.init["d_model"], case.init["n_heads"])
    if not isinstance(block, nn.Module):
        raise TypeError(f"make_block must return the block (an nn.Module); it returned "
                        f"{type(block).__name__}")
    load_params(block, case.params)
    block.eval()
    with torch.no_grad():
        return block(*case.args, **case.kwargs)


def _variant(**changes):
    """make_block with some kinds built another way: ``changes`` maps a kind to its builder."""

    def build(kind, d_model, n_heads):
        if kind in changes:
            return changes[kind](d_model, n_heads)
        return make_block(kind, d_model, n_heads)

    return build


_gelu = functools.partial(enc.FeedForward, activation="gelu")


def _all_post_ln(kind, d_model, n_heads):
    block = make_block(kind, d_model, n_heads)
    block.norm_first = False  # norm_first never set
    return block


def _all_relu(d_model, n_heads, norm_first):
    return enc.EncoderLayer(d_model, n_heads, 4 * d_model, norm_first=norm_first)


def _bert_default_eps(d_model, n_heads):
    return enc.EncoderLayer(d_model, n_heads, 4 * d_model, feed_forward=_gelu)


def _rms_default_eps(d_model, n_heads):
    return enc.EncoderLayer(d_model, n_heads, 8 * d_model // 3, norm_first=True,
                            norm=enc.RMSNorm, feed_forward=enc.SwiGLU)


def _bert_pre_ln(d_model, n_heads):
    return enc.EncoderLayer(d_model, n_heads, 4 * d_model, norm_first=True,
                            norm=functools.partial(enc.LayerNorm, eps=1e-12), feed_forward=_gelu)


register(
    Exercise(
        id="encoder.make_block",
        title="Build a block from its description",
        target="make_block",
        chapter=CHAPTER,
        reference=make_block,
        make_cases=make_block_cases,
        call=build_block_and_call,
        points=3,
        forbidden=("torch.nn.TransformerEncoderLayer", "torch.nn.TransformerEncoder"),
        forbidden_reason="Configure the package's EncoderLayer (or write your own block with the "
                         "same parameter names).",
        notes={
            "exception": "Each case builds one kind of block ('paper', 'bert', 'gpt2' or "
                         "'llama'): check the case's kind. A parameter the check cannot find "
                         "means a part of another kind (LayerNorm has a `bias`, RMSNorm does not; "
                         "FeedForward has `linear1`/`linear2`, SwiGLU `gate_proj`/`up_proj`/"
                         "`down_proj`) or another width.",
        },
        mistakes=[
            Mistake(
                "everything-post-ln",
                "Every block you build is post-LN. GPT-2 and LLaMA put the norm before each "
                "sublayer: build them with `norm_first=True`.",
                _all_post_ln,
            ),
            Mistake(
                "relu-for-bert-and-gpt2",
                "BERT and GPT-2 use GELU in their feed-forward network, not ReLU: pass "
                "`feed_forward=functools.partial(FeedForward, activation='gelu')` (EncoderLayer "
                "calls it as `feed_forward(d_model, d_ff, dropout)`).",
                _variant(bert=lambda d, h: _all_relu(d, h, False),
                         gpt2=lambda d, h: _all_relu(d, h, True)),
            ),
            Mistake(
                "bert-default-eps",
                "BERT's LayerNorm uses eps = 1e-12, not the default 1e-5; it shows on small "
                "activations. Pass `norm=functools.partial(LayerNorm, eps=1e-12)`.",
                _variant(bert=_bert_default_eps),
            ),
            Mistake(
                "rmsnorm-default-eps",
                "Your LLaMA block's RMSNorm keeps its default eps (the float32 machine epsilon, "
                "about 1.2e-7); the description asks for 1e-6, which shows on small activations. "
                "Pass `norm=functools.partial(RMSNorm, eps=1e-6)`.",
                _variant(llama=_rms_default_eps),
            ),
            Mistake(
                "bert-pre-ln",
                "Your BERT block is pre-LN. BERT keeps the paper's arrangement, post-LN "
                "(`norm_first=False`); GPT-2 is the one that moved the norms before the sublayers.",
                _variant(bert=_bert_pre_ln),
            ),
        ],
        hints=[
            "Every kind is one `EncoderLayer(d_model, n_heads, d_ff, norm_first=..., norm=..., "
            "feed_forward=...)`: decide, for each kind, the placement, the norm, the feed-forward "
            "network and d_ff.",
            "`norm` and `feed_forward` are factories: EncoderLayer calls `norm(d_model)` and "
            "`feed_forward(d_model, d_ff, dropout)`. `functools.partial(LayerNorm, eps=1e-12)` "
            "and `functools.partial(FeedForward, activation='gelu')` fix an argument.",
            "d_ff is 4 * d_model for 'paper', 'bert' and 'gpt2', and 8 * d_model // 3 for "
            "'llama' (SwiGLU has three matrices instead of two).",
        ],
    )
)
