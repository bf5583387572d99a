"""Chapter 2 exercises: splitting into heads, combining them, the whole module.

Each known mistake is a real implementation of that mistake: the learner's
code is diagnosed with it when the two behave the same on every case. The
class exercise builds the learner's class, loads the case's weights into its
``q_proj``, ``k_proj``, ``v_proj`` and ``out_proj`` and calls ``forward``
(see :func:`build_and_run`).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from .. import multihead as mh
from ..attention import scaled_dot_product_attention
from ..multihead import combine_heads, split_heads
from .core import Case, Exercise, Mistake, randn, register

CHAPTER = "02_multi_head_attention"


# ---------------------------------------------------------------------------
# multihead.split_heads
# ---------------------------------------------------------------------------


def split_heads_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    # L, H and d_head differ in the main cases, so every wrong layout shows.
    return [
        Case("B=2, L=5, d_model=12, 3 heads (d_head=4)", (randn(g, 2, 5, 12), 3)),
        Case("B=1, L=4, d_model=6, 2 heads (d_head=3)", (randn(g, 1, 4, 6), 2)),
        Case("B=3, L=2, d_model=24, 6 heads (d_head=4)", (randn(g, 3, 2, 24), 6)),
        Case("one head: B=2, L=3, d_model=4", (randn(g, 2, 3, 4), 1), tags=frozenset({"h1"})),
        Case("d_head=1: B=2, L=3, d_model=5, 5 heads", (randn(g, 2, 3, 5), 5)),
        Case("float64 input: B=2, L=3, d_model=8, 4 heads", (randn(g, 2, 3, 8, dtype=torch.float64), 4)),
        Case(
            "d_model=10 is not divisible by 4 heads (must raise)",
            (randn(g, 2, 3, 10), 4),
            tags=frozenset({"raises"}),
        ),
    ]


def _split_reshape_only(x, n_heads):
    B, L, d_model = x.shape
    return x.reshape(B, n_heads, L, d_model // n_heads)


def _split_interleaved(x, n_heads):
    B, L, d_model = x.shape
    return x.reshape(B, L, d_model // n_heads, n_heads).permute(0, 3, 1, 2)


def _split_no_transpose(x, n_heads):
    B, L, d_model = x.shape
    return x.reshape(B, L, n_heads, d_model // n_heads)


def _split_transpose_first(x, n_heads):
    B, L, d_model = x.shape
    return x.transpose(1, 2).reshape(B, n_heads, L, d_model // n_heads)


register(
    Exercise(
        id="multihead.split_heads",
        title="Split the channels into heads",
        target="split_heads",
        chapter=CHAPTER,
        reference=mh.split_heads,
        make_cases=split_heads_cases,
        points=2,
        mistakes=[
            Mistake(
                "reshape-without-transpose",
                "The shape is right but the heads mix positions: reshaping (B, L, d_model) "
                "straight to (B, H, L, d_head) cuts the sequence, not the channels, into heads. "
                "Reshape to (B, L, H, d_head) first, then `.transpose(1, 2)`.",
                _split_reshape_only,
            ),
            Mistake(
                "interleaved-channels",
                "Your heads take interleaved channels (head h gets channels h, h+H, h+2H, ...). "
                "Head h must get the contiguous block h*d_head:(h+1)*d_head, as nn.MultiheadAttention "
                "does: reshape to (B, L, H, d_head), not (B, L, d_head, H).",
                _split_interleaved,
            ),
            Mistake(
                "heads-not-moved",
                "You cut the channels into heads correctly, (B, L, H, d_head), but did not move "
                "the heads next to the batch: add `.transpose(1, 2)` to get (B, H, L, d_head).",
                _split_no_transpose,
            ),
            Mistake(
                "transpose-before-reshape",
                "You transpose before cutting the channels: x.transpose(1, 2) is (B, d_model, L), "
                "and reshaping that to (B, H, L, d_head) mixes channels and positions. Reshape to "
                "(B, L, H, d_head) first, then transpose dimensions 1 and 2.",
                _split_transpose_first,
            ),
        ],
        hints=[
            "Two steps: cut the last dimension into H blocks of d_head = d_model // H, then "
            "move the head dimension in front of the length.",
            "`x.reshape(B, L, n_heads, d_head)` gives (B, L, H, d_head); `.transpose(1, 2)` "
            "gives (B, H, L, d_head).",
            "Reshaping straight to (B, H, L, d_head) keeps the numbers in memory order, which "
            "mixes positions into heads: a reshape never moves data, a transpose does.",
            "When d_model is not a multiple of n_heads there is no way to split: raise a "
            "ValueError (a failing reshape also raises).",
        ],
    )
)


# ---------------------------------------------------------------------------
# multihead.combine_heads
# ---------------------------------------------------------------------------


def combine_heads_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    return [
        Case("B=2, 3 heads, L=5, d_head=4", (randn(g, 2, 3, 5, 4),)),
        Case("B=1, 2 heads, L=4, d_head=3", (randn(g, 1, 2, 4, 3),)),
        Case("B=3, 6 heads, L=2, d_head=4", (randn(g, 3, 6, 2, 4),)),
        Case("one head: B=2, L=3, d_head=4", (randn(g, 2, 1, 3, 4),), tags=frozenset({"h1"})),
        Case("d_head=1: B=2, 5 heads, L=3", (randn(g, 2, 5, 3, 1),)),
        Case("float64 input: B=2, 4 heads, L=3, d_head=2", (randn(g, 2, 4, 3, 2, dtype=torch.float64),)),
    ]


def _combine_reshape_only(x):
    B, H, L, d_head = x.shape
    return x.reshape(B, L, H * d_head)


def _combine_interleaved(x):
    B, H, L, d_head = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, L, d_head * H)


def _combine_not_merged(x):
    return x.transpose(1, 2)


register(
    Exercise(
        id="multihead.combine_heads",
        title="Concatenate the heads",
        target="combine_heads",
        chapter=CHAPTER,
        reference=mh.combine_heads,
        make_cases=combine_heads_cases,
        points=2,
        mistakes=[
            Mistake(
                "reshape-without-transpose",
                "The shape is right but positions and heads are mixed: reshaping (B, H, L, d_head) "
                "straight to (B, L, d_model) reads the numbers in memory order, head by head. "
                "Transpose to (B, L, H, d_head) first, then reshape.",
                _combine_reshape_only,
            ),
            Mistake(
                "interleaved-channels",
                "Your concatenation interleaves the heads' channels (channel j of every head, "
                "then channel j+1, ...). The heads go side by side, head 0's d_head channels "
                "first: transpose to (B, L, H, d_head) and reshape, which undoes split_heads.",
                _combine_interleaved,
            ),
            Mistake(
                "heads-not-merged",
                "You moved the heads back behind the length, (B, L, H, d_head), but did not merge "
                "the last two dimensions: `.reshape(B, L, H * d_head)`.",
                _combine_not_merged,
            ),
        ],
        hints=[
            "combine_heads undoes split_heads: undo its two steps in reverse order.",
            "`x.transpose(1, 2)` gives (B, L, H, d_head); then `.reshape(B, L, H * d_head)`.",
            "After a transpose the tensor is not contiguous, so `.view` raises; use `.reshape` "
            "(or `.contiguous().view(...)`).",
        ],
    )
)


# ---------------------------------------------------------------------------
# multihead.MultiHeadAttention (a class: built, loaded with weights, called)
# ---------------------------------------------------------------------------

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


@dataclasses.dataclass
class ModuleCase(Case):
    """A case for a module exercise: how to build it, its weights, what to call it on.

    ``init`` holds the constructor's keyword arguments, ``params`` the weights
    to load (``"q_proj.weight"`` -> tensor); ``args``/``kwargs`` go to
    ``forward``.
    """

    init: dict = dataclasses.field(default_factory=dict)
    params: dict = dataclasses.field(default_factory=dict)

    def describe(self) -> str:
        init = ", ".join(f"{k}={v!r}" for k, v in self.init.items())
        names = ["query", "key", "value"]
        parts = [f"{n} {tuple(a.shape)}" for n, a in zip(names, self.args, strict=False)]
        parts += [f"{k} {tuple(v.shape)}" for k, v in self.kwargs.items()]
        return f"{self.name}: MultiHeadAttention({init}) on {', '.join(parts)}"


def _load_projections(module: nn.Module, case: ModuleCase) -> None:
    """Copy the case's weights into the learner's four projections, with clear errors."""
    d_model, bias = case.init["d_model"], case.init["bias"]
    for name in PROJECTIONS:
        layer = getattr(module, name, None)
        if not isinstance(layer, nn.Linear):
            have = ", ".join(n for n, _ in module.named_children()) or "none"
            what = "is missing" if layer is None else f"is a {type(layer).__name__}"
            raise AttributeError(
                f"the check loads weights into nn.Linear layers named q_proj, k_proj, v_proj, "
                f"out_proj; your `{name}` {what} (your layers: {have})"
            )
        if tuple(layer.weight.shape) != (d_model, d_model):
            raise ValueError(
                f"`{name}.weight` has shape {tuple(layer.weight.shape)}; every projection is "
                f"nn.Linear(d_model, d_model), weight ({d_model}, {d_model})"
            )
        if bias != (layer.bias is not None):
            raise ValueError(
                f"`{name}` {'has no' if bias else 'has a'} bias but the module was built with "
                f"bias={bias}: pass `bias=bias` to each nn.Linear"
            )
        with torch.no_grad():
            layer.weight.copy_(case.params[f"{name}.weight"])
            if bias:
                layer.bias.copy_(case.params[f"{name}.bias"])


def build_and_run(cls, case: ModuleCase):
    """``Exercise.call`` for the class exercise: build, load weights, eval mode, forward."""
    init = ", ".join(f"{k}={v!r}" for k, v in case.init.items())
    if not isinstance(cls, type):
        raise TypeError(f"pass your class itself, e.g. `check(..., MultiHeadAttention)`; got {cls!r}")
    try:
        module = cls(**case.init)
    except TypeError as exc:
        raise TypeError(f"could not build `{cls.__name__}({init})`: {exc}") from exc
    except AttributeError as exc:
        if "Module.__init__()" not in str(exc):
            raise
        raise AttributeError(
            f"{exc}: call `super().__init__()` first thing in `{cls.__name__}.__init__`"
        ) from exc
    if not isinstance(module, nn.Module):
        raise TypeError(f"`{cls.__name__}` must subclass torch.nn.Module (class ...(nn.Module))")
    _load_projections(module, case)
    module.eval()
    with torch.no_grad():
        return module(*case.args, **case.kwargs)


class MultiHeadAttention(nn.Module):
    """Multi-head attention, batch-first: (B, Lq, d_model) -> (B, Lq, d_model), (B, H, Lq, Lk)."""

    def __init__(self, d_model: int, n_heads: int, bias: bool = True):
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, query, key, value, mask=None):
        q = split_heads(self.q_proj(query), self.n_heads)  # (B, H, Lq, d_head)
        k = split_heads(self.k_proj(key), self.n_heads)  # (B, H, Lk, d_head)
        v = split_heads(self.v_proj(value), self.n_heads)  # (B, H, Lk, d_head)
        out, weights = scaled_dot_product_attention(q, k, v, mask)  # scaled by sqrt(d_head)
        out = combine_heads(out)  # (B, Lq, d_model)
        return self.out_proj(out), weights  # (B, Lq, d_model), (B, H, Lq, Lk)


class _WrongMHA(MultiHeadAttention):
    """The reference with switches, one per known mistake (subclasses set them)."""

    scale_by_d_model = False
    use_out_proj = True
    split_without_transpose = False
    combine_without_transpose = False
    split_only_without_transpose = False
    invert_mask = False
    average_weights = False
    single_head = False
    value_from_key = False

    def _one_big_head(self, query, key, value, mask):
        q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)  # (B, L, d_model)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, Lq, Lk)
        if mask is not None:  # a 4-D mask does not fit 3-D scores: this raises, as it would
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, Lq, Lk)
        return self.out_proj(weights @ v), weights  # (B, Lq, d_model)

    def forward(self, query, key, value, mask=None):
        if self.single_head:
            return self._one_big_head(query, key, value, mask)
        B, Lq, d_model = query.shape
        Lk = key.shape[1]
        H = self.n_heads
        d_head = d_model // H
        value = key if self.value_from_key else value
        if self.split_without_transpose or self.split_only_without_transpose:
            q = self.q_proj(query).reshape(B, H, Lq, d_head)  # positions mixed into heads
            k = self.k_proj(key).reshape(B, H, Lk, d_head)
            v = self.v_proj(value).reshape(B, H, Lk, d_head)
        else:
            q = mh.split_heads(self.q_proj(query), H)  # (B, H, Lq, d_head)
            k = mh.split_heads(self.k_proj(key), H)  # (B, H, Lk, d_head)
            v = mh.split_heads(self.v_proj(value), H)  # (B, H, Lk, d_head)
        scores = q @ k.transpose(-2, -1)  # (B, H, Lq, Lk)
        scores = scores / math.sqrt(d_model if self.scale_by_d_model else d_head)
        if mask is not None:
            scores = scores.masked_fill(mask if self.invert_mask else ~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, H, Lq, Lk)
        out = weights @ v  # (B, H, Lq, d_head)
        if self.split_without_transpose or self.combine_without_transpose:
            out = out.reshape(B, Lq, d_model)  # heads and positions mixed
        else:
            out = mh.combine_heads(out)  # (B, Lq, d_model)
        if self.use_out_proj:
            out = self.out_proj(out)
        if self.average_weights:
            weights = weights.mean(dim=1)  # (B, Lq, Lk)
        return out, weights


def _wrong(**switches) -> type:
    return type("MultiHeadAttention", (_WrongMHA,), switches)


def _linear_params(g: torch.Generator, d_model: int, bias: bool) -> dict:
    params = {}
    for name in PROJECTIONS:
        params[f"{name}.weight"] = randn(g, d_model, d_model, scale=1.5 / math.sqrt(d_model))
        if bias:
            params[f"{name}.bias"] = randn(g, d_model, scale=0.3)
    return params


def mha_cases(seed: int) -> list[ModuleCase]:
    g = torch.Generator().manual_seed(seed)

    def case(name, d_model, n_heads, bias, B, Lq, Lk=None, mask=None, self_attention=True, tags=()):
        query = randn(g, B, Lq, d_model)
        if self_attention:
            key = value = query
        else:
            key, value = randn(g, B, Lk, d_model), randn(g, B, Lk, d_model)
        return ModuleCase(
            name,
            args=(query, key, value),
            kwargs={} if mask is None else {"mask": mask},
            tags=frozenset(tags),
            init={"d_model": d_model, "n_heads": n_heads, "bias": bias},
            params=_linear_params(g, d_model, bias),
        )

    # Every mask row allows some keys and blocks others, under either polarity,
    # so no query is left with nothing to attend to.
    shared = torch.tensor(
        [
            [True, False, True, False, False],
            [True, True, False, False, True],
            [False, True, True, True, False],
            [False, False, False, True, True],
        ]
    )  # (Lq=4, Lk=5), True = may attend
    lengths = torch.tensor([4, 2])
    padding = (torch.arange(6) < lengths[:, None])[:, None, None, :]  # (B=2, 1, 1, Lk=6)
    return [
        case("self-attention, 3 heads", 12, 3, True, B=2, Lq=5),
        case("cross-attention, key != value, 4 heads", 12, 4, True, B=2, Lq=3, Lk=6,
             self_attention=False, tags={"cross"}),
        case("self-attention without biases, 2 heads", 8, 2, False, B=1, Lq=4, tags={"no-bias"}),
        case("cross-attention with an (Lq, Lk) mask, 2 heads", 8, 2, True, B=2, Lq=4, Lk=5,
             mask=shared, self_attention=False, tags={"mask", "cross"}),
        case("self-attention with a (B, 1, 1, Lk) padding mask, 3 heads", 12, 3, True, B=2, Lq=6,
             mask=padding, tags={"mask"}),
        case("one head", 8, 1, True, B=2, Lq=3, tags={"h1"}),
        case("d_model=32, 8 heads", 32, 8, True, B=1, Lq=5, Lk=4, self_attention=False,
             tags={"cross"}),
    ]


register(
    Exercise(
        id="multihead.MultiHeadAttention",
        title="The multi-head attention module",
        target="MultiHeadAttention",
        chapter=CHAPTER,
        reference=MultiHeadAttention,
        make_cases=mha_cases,
        call=build_and_run,
        points=4,
        mistakes=[
            Mistake(
                "scale-by-sqrt-d_model",
                "You scale the scores by sqrt(d_model). Each head's dot products run over d_head "
                "= d_model // n_heads dimensions, so divide by sqrt(d_head); sqrt(d_model) makes "
                "every head's softmax too flat (section 2.4).",
                _wrong(scale_by_d_model=True),
            ),
            Mistake(
                "no-output-projection",
                "You never apply the output projection: after concatenating the heads, pass the "
                "result through `self.out_proj` (W_O), which mixes what the heads found.",
                _wrong(use_out_proj=False),
            ),
            Mistake(
                "heads-mixed-across-positions",
                "Your heads mix positions: reshaping (B, L, d_model) straight to (B, H, L, d_head) "
                "(and back) cuts the sequence, not the channels. Split with reshape to "
                "(B, L, H, d_head) then transpose(1, 2): your split_heads / combine_heads.",
                _wrong(split_without_transpose=True),
            ),
            Mistake(
                "split-without-transpose",
                "Your heads mix positions: q, k and v are reshaped straight from (B, L, d_model) to "
                "(B, H, L, d_head), which cuts the sequence, not the channels. Reshape to "
                "(B, L, H, d_head), then transpose(1, 2): your split_heads.",
                _wrong(split_only_without_transpose=True),
            ),
            Mistake(
                "combine-without-transpose",
                "The heads are split correctly, but concatenated without the transpose: "
                "(B, H, L, d_head) reshaped straight to (B, L, d_model) mixes heads and positions. "
                "Transpose to (B, L, H, d_head) first (combine_heads).",
                _wrong(combine_without_transpose=True),
            ),
            Mistake(
                "mask-inverted",
                "Your mask polarity is inverted: in this course True means 'may attend' (as in "
                "Chapter 1), so fill the scores with -inf where the mask is False (`~mask`). "
                "nn.MultiheadAttention's masks are the opposite: do not copy that convention.",
                _wrong(invert_mask=True),
            ),
            Mistake(
                "weights-averaged-over-heads",
                "Your output is right but you average the weights over the heads, as "
                "nn.MultiheadAttention does by default. Return every head's weights, "
                "(B, H, Lq, Lk).",
                _wrong(average_weights=True),
            ),
            Mistake(
                "single-head",
                "You never split into heads: one attention over all d_model channels is "
                "single-head attention (scaled by sqrt(d_model)), and a (B, 1, 1, Lk) mask does not "
                "fit its 3-D scores. Split q, k and v with split_heads, attend per head, and "
                "return weights of shape (B, H, Lq, Lk).",
                _wrong(single_head=True),
            ),
            Mistake(
                "value-from-key",
                "Your values come from `key`: it only looks right in self-attention, where key "
                "and value are the same tensor. Project `value` with v_proj.",
                _wrong(value_from_key=True),
            ),
        ],
        hints=[
            "__init__: `super().__init__()`, keep n_heads, and four `nn.Linear(d_model, d_model, "
            "bias=bias)` named q_proj, k_proj, v_proj, out_proj.",
            "forward: project, split each of q, k, v into heads (B, H, L, d_head), run Chapter 1's "
            "scaled_dot_product_attention on them (it scales by sqrt of the last dimension, "
            "d_head), combine the heads, apply out_proj.",
            "Return `(output, weights)`: output (B, Lq, d_model), weights (B, H, Lq, Lk), one map "
            "per head.",
            "The mask (True = may attend) broadcasts over the heads as it is: pass it straight "
            "to scaled_dot_product_attention.",
        ],
    )
)
