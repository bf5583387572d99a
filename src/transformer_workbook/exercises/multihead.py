"""Chapter 2 exercises: splitting into heads, combining them, the whole module, spot the bugs.

Each known mistake is a real implementation of that mistake: the learner's
code is diagnosed with it when the two behave the same on every case. The
class exercise builds the learner's class, loads the case's weights into its
``q_proj``, ``k_proj``, ``v_proj`` and ``out_proj`` by name and calls
``forward`` (the shared helper :func:`.modules.build_and_call`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import multihead as mh
from ..attention import scaled_dot_product_attention
from ..multihead import combine_heads, split_heads
from .api import register
from .core import RAISES, Case, randn
from .judging import Exercise, Mistake
from .modules import ModuleCase, build_and_call, reference_params

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
            tags=frozenset({RAISES}),
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
        notes={
            "exception": "The cases differ in the batch size, the length, d_model and the number "
                         "of heads (one head; d_head = 1; float64).",
            "must-raise": "When d_model is not a multiple of n_heads, a reshape to "
                          "(B, L, H, d_model // H) drops channels: check `d_model % n_heads`.",
        },
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
        notes={"exception": "The cases differ in the batch size, the number of heads, the length "
                            "and d_head (one head; d_head = 1; float64)."},
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


def mha_cases(seed: int) -> list[ModuleCase]:
    g = torch.Generator().manual_seed(seed)

    def case(name, d_model, n_heads, bias, B, Lq, Lk=None, mask=None, self_attention=True, tags=()):
        init = {"d_model": d_model, "n_heads": n_heads, "bias": bias}
        params = reference_params(  # entries N(0, 1.5^2 / d_model) and 0.3^2 for the biases
            mh.MultiHeadAttention, init, g,
            scale=lambda name, p: 1.5 / math.sqrt(d_model) if p.dim() == 2 else 0.3,
        )
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
            init=init,
            params=params,
            arg_names=("query", "key", "value"),
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
    # (B, Lq, Lk) masks, one per sequence: with B == H a mask passed straight
    # lines its batch axis up with the heads (silently wrong); with B != H it fails.
    per_sequence_2 = torch.stack([shared[:3, :4], ~shared[:3, :4]])  # (B=2, Lq=3, Lk=4)
    per_sequence_3 = torch.stack([shared[:3], ~shared[:3], shared[1:]])  # (B=3, Lq=3, Lk=5)
    return [
        case("self-attention, 3 heads", 12, 3, True, B=2, Lq=5),
        case("cross-attention, key != value, 4 heads", 12, 4, True, B=2, Lq=3, Lk=6,
             self_attention=False, tags={"cross"}),
        case("self-attention without biases, 2 heads", 8, 2, False, B=1, Lq=4, tags={"no-bias"}),
        case("cross-attention with an (Lq, Lk) mask, 2 heads", 8, 2, True, B=2, Lq=4, Lk=5,
             mask=shared, self_attention=False, tags={"mask", "cross"}),
        case("self-attention with a (B, 1, 1, Lk) padding mask, 3 heads", 12, 3, True, B=2, Lq=6,
             mask=padding, tags={"mask"}),
        case("cross-attention with a (B, Lq, Lk) mask, B = 2, 2 heads", 8, 2, True, B=2, Lq=3, Lk=4,
             mask=per_sequence_2, self_attention=False, tags={"mask", "mask3d", "cross"}),
        case("cross-attention with a (B, Lq, Lk) mask, B = 3, 2 heads", 10, 2, True, B=3, Lq=3, Lk=5,
             mask=per_sequence_3, self_attention=False, tags={"mask", "mask3d", "cross"}),
        case("one head", 8, 1, True, B=2, Lq=3, tags={"h1"}),
        case("d_model=32, 8 heads", 32, 8, True, B=1, Lq=5, Lk=4, self_attention=False,
             tags={"cross"}),
    ]


# The known mistakes: each the package's module with one step of forward()
# written the wrong way, spelled out.

#: A learner who makes one of the mistakes below often also passes a (B, Lq, Lk)
#: mask straight (the next mistake); ignoring those cases names the first one.
ONE_MISTAKE_AT_A_TIME = frozenset({"mask3d"})


class _Steps(mh.MultiHeadAttention):
    """The package's module, with its steps as methods the mistakes reuse."""

    def heads(self, query, key, value):
        H = self.n_heads
        return (split_heads(self.q_proj(query), H),  # (B, H, Lq, d_head)
                split_heads(self.k_proj(key), H),  # (B, H, Lk, d_head)
                split_heads(self.v_proj(value), H))  # (B, H, Lk, d_head)

    @staticmethod
    def head_mask(mask):
        return None if mask is None else mh._head_mask(mask)  # (B|1, H|1, Lq, Lk)


class _ScaleByDModel(_Steps):
    def forward(self, query, key, value, mask=None):
        q, k, v = self.heads(query, key, value)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_model)  # sqrt(d_model), not sqrt(d_head)
        m = self.head_mask(mask)
        if m is not None:
            scores = scores.masked_fill(~m, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return self.out_proj(combine_heads(weights @ v)), weights


class _NoOutputProjection(_Steps):
    def forward(self, query, key, value, mask=None):
        q, k, v = self.heads(query, key, value)
        out, weights = scaled_dot_product_attention(q, k, v, self.head_mask(mask))
        return combine_heads(out), weights  # out_proj never applied


class _HeadsMixedAcrossPositions(_Steps):
    def forward(self, query, key, value, mask=None):
        B, Lq, d_model = query.shape
        Lk, H = key.shape[1], self.n_heads
        q = self.q_proj(query).reshape(B, H, Lq, d_model // H)  # reshape without transpose
        k = self.k_proj(key).reshape(B, H, Lk, d_model // H)
        v = self.v_proj(value).reshape(B, H, Lk, d_model // H)
        out, weights = scaled_dot_product_attention(q, k, v, self.head_mask(mask))
        return self.out_proj(out.reshape(B, Lq, d_model)), weights  # and back, without transpose


class _SplitWithoutTranspose(_Steps):
    def forward(self, query, key, value, mask=None):
        B, Lq, d_model = query.shape
        Lk, H = key.shape[1], self.n_heads
        q = self.q_proj(query).reshape(B, H, Lq, d_model // H)  # reshape without transpose
        k = self.k_proj(key).reshape(B, H, Lk, d_model // H)
        v = self.v_proj(value).reshape(B, H, Lk, d_model // H)
        out, weights = scaled_dot_product_attention(q, k, v, self.head_mask(mask))
        return self.out_proj(combine_heads(out)), weights


class _CombineWithoutTranspose(_Steps):
    def forward(self, query, key, value, mask=None):
        q, k, v = self.heads(query, key, value)
        out, weights = scaled_dot_product_attention(q, k, v, self.head_mask(mask))
        return self.out_proj(out.reshape(query.shape)), weights  # (B, H, Lq, d_head) read as (B, Lq, d)


class _MaskInverted(_Steps):
    def forward(self, query, key, value, mask=None):
        q, k, v = self.heads(query, key, value)
        m = self.head_mask(mask)
        out, weights = scaled_dot_product_attention(q, k, v, None if m is None else ~m)
        return self.out_proj(combine_heads(out)), weights


class _MaskNotPerSequence(_Steps):
    def forward(self, query, key, value, mask=None):
        q, k, v = self.heads(query, key, value)
        out, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, Lq, Lk) lines up with H
        return self.out_proj(combine_heads(out)), weights


class _WeightsAveraged(_Steps):
    def forward(self, query, key, value, mask=None):
        q, k, v = self.heads(query, key, value)
        out, weights = scaled_dot_product_attention(q, k, v, self.head_mask(mask))
        return self.out_proj(combine_heads(out)), weights.mean(dim=1)  # (B, Lq, Lk)


class _SingleHead(_Steps):
    def forward(self, query, key, value, mask=None):
        q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)  # (B, L, d_model), no heads
        out, weights = scaled_dot_product_attention(q, k, v, mask)  # scaled by sqrt(d_model)
        return self.out_proj(out), weights  # weights (B, Lq, Lk)


class _ValueFromKey(_Steps):
    def forward(self, query, key, value, mask=None):
        return mh.MultiHeadAttention.forward(self, query, key, key, mask)


register(
    Exercise(
        id="multihead.MultiHeadAttention",
        title="The multi-head attention module",
        target="MultiHeadAttention",
        chapter=CHAPTER,
        reference=mh.MultiHeadAttention,
        make_cases=mha_cases,
        call=build_and_call,
        outputs=("output", "weights"),
        points=4,
        forbidden=("torch.nn.MultiheadAttention", "torch.nn.functional.multi_head_attention_forward"),
        forbidden_reason="Build it from nn.Linear layers, your split_heads and combine_heads, "
                         "and Chapter 1's attention.",
        notes={
            "exception": "The cases differ in d_model, the number of heads, the batch size, "
                         "the lengths (self- and cross-attention), biases, and the mask's shape: "
                         "(Lq, Lk), (B, Lq, Lk) or (B, 1, 1, Lk).",
            "nondeterministic": "`F.dropout(x, p)` drops even in eval mode unless you pass "
                                "`training=self.training`; an `nn.Dropout` layer follows the "
                                "module's mode.",
        },
        mistakes=[
            Mistake(
                "scale-by-sqrt-d_model",
                "You scale the scores by sqrt(d_model). Each head's dot products run over d_head "
                "= d_model // n_heads dimensions, so divide by sqrt(d_head); at initialisation, "
                "sqrt(d_model) makes every head's softmax too flat (section 2.4).",
                _ScaleByDModel,
                ignore_tags=ONE_MISTAKE_AT_A_TIME,
            ),
            Mistake(
                "no-output-projection",
                "You never apply the output projection: after concatenating the heads, pass the "
                "result through `self.out_proj` (W_O), which mixes what the heads found.",
                _NoOutputProjection,
                ignore_tags=ONE_MISTAKE_AT_A_TIME,
            ),
            Mistake(
                "heads-mixed-across-positions",
                "Your heads mix positions: reshaping (B, L, d_model) straight to (B, H, L, d_head) "
                "(and back) cuts the sequence, not the channels. Split with reshape to "
                "(B, L, H, d_head) then transpose(1, 2): your split_heads / combine_heads.",
                _HeadsMixedAcrossPositions,
                ignore_tags=ONE_MISTAKE_AT_A_TIME,
            ),
            Mistake(
                "split-without-transpose",
                "Your heads mix positions: q, k and v are reshaped straight from (B, L, d_model) to "
                "(B, H, L, d_head), which cuts the sequence, not the channels. Reshape to "
                "(B, L, H, d_head), then transpose(1, 2): your split_heads.",
                _SplitWithoutTranspose,
                ignore_tags=ONE_MISTAKE_AT_A_TIME,
            ),
            Mistake(
                "combine-without-transpose",
                "The heads are split correctly, but concatenated without the transpose: "
                "(B, H, L, d_head) reshaped straight to (B, L, d_model) mixes heads and positions. "
                "Transpose to (B, L, H, d_head) first (combine_heads).",
                _CombineWithoutTranspose,
                ignore_tags=ONE_MISTAKE_AT_A_TIME,
            ),
            Mistake(
                "mask-inverted",
                "Your mask polarity is inverted: in this course True means 'may attend' (as in "
                "Chapter 1), so fill the scores with -inf where the mask is False (`~mask`). "
                "nn.MultiheadAttention's masks are the opposite: do not copy that convention.",
                _MaskInverted,
                ignore_tags=ONE_MISTAKE_AT_A_TIME,
            ),
            Mistake(
                "mask-not-per-sequence",
                "Your module is right for (Lq, Lk) and (B, 1, 1, Lk) masks, but a (B, Lq, Lk) mask "
                "(one per sequence) is passed to the 4-D scores (B, H, Lq, Lk) as it is, so its "
                "batch axis lines up with the heads: wrong when B == H, an error otherwise. Add a "
                "head axis first: `mask[:, None]` gives (B, 1, Lq, Lk).",
                _MaskNotPerSequence,
            ),
            Mistake(
                "weights-averaged-over-heads",
                "Your output is right but you average the weights over the heads, as "
                "nn.MultiheadAttention does by default. Return every head's weights, "
                "(B, H, Lq, Lk).",
                _WeightsAveraged,
                ignore_tags=ONE_MISTAKE_AT_A_TIME,
            ),
            Mistake(
                "single-head",
                "You never split into heads: one attention over all d_model channels is "
                "single-head attention (scaled by sqrt(d_model)). Split q, k and v with "
                "split_heads, attend per head, and return weights of shape (B, H, Lq, Lk).",
                _SingleHead,
                ignore_tags=frozenset({"mask"}),  # what a mask does to 3-D scores depends on the spelling
            ),
            Mistake(
                "value-from-key",
                "Your values come from `key`: it only looks right in self-attention, where key "
                "and value are the same tensor. Project `value` with v_proj.",
                _ValueFromKey,
                ignore_tags=ONE_MISTAKE_AT_A_TIME,
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
            "The scores are (B, H, Lq, Lk). An (Lq, Lk) or (B, 1, 1, Lk) mask broadcasts to them "
            "as it is; a (B, Lq, Lk) mask (one per sequence) would line its batch axis up with "
            "the heads: give it a head axis first, `mask[:, None]`.",
        ],
    )
)


# ---------------------------------------------------------------------------
# multihead.spot_the_bug: three bugs in a realistic self-attention module
# ---------------------------------------------------------------------------

#: The buggy code the learner starts from (shown in the notebook). Each bug is
#: a published pattern: heads cut with a bare `reshape`, the scale of the whole
#: model instead of one head's, a (B, L) padding mask given one axis only.
BUGGY_SELF_ATTENTION = '''\
class SelfAttention(nn.Module):
    """Multi-head self-attention with a padding mask, batch-first."""

    def __init__(self, d_model, n_heads):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)  # W_Q, W_K, W_V stacked
        self.out = nn.Linear(d_model, d_model)  # W_O

    def forward(self, x, pad_mask=None):
        """x (B, L, d_model); pad_mask (B, L), True = a real token."""
        B, L, D = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q = q.reshape(B, self.n_heads, L, self.d_head)
        k = k.reshape(B, self.n_heads, L, self.d_head)
        v = v.reshape(B, self.n_heads, L, self.d_head)
        scores = q @ k.transpose(-2, -1) / math.sqrt(D)
        if pad_mask is not None:
            scores = scores.masked_fill(~pad_mask.unsqueeze(1), float("-inf"))
        weights = scores.softmax(dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(B, L, D)
        return self.out(out)
'''


class SelfAttention(nn.Module):
    """Multi-head self-attention with a padding mask, batch-first."""

    def __init__(self, d_model, n_heads):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)  # W_Q, W_K, W_V stacked
        self.out = nn.Linear(d_model, d_model)  # W_O

    def forward(self, x, pad_mask=None):
        """x (B, L, d_model); pad_mask (B, L), True = a real token."""
        B, L, D = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # (B, L, D) each
        # Cut the channels into heads, then move the heads next to the batch.
        q = q.reshape(B, L, self.n_heads, self.d_head).transpose(1, 2)  # (B, H, L, d_head)
        k = k.reshape(B, L, self.n_heads, self.d_head).transpose(1, 2)  # (B, H, L, d_head)
        v = v.reshape(B, L, self.n_heads, self.d_head).transpose(1, 2)  # (B, H, L, d_head)
        # Each head's dot products run over d_head channels.
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)  # (B, H, L, L)
        if pad_mask is not None:
            # (B, 1, 1, L): the same keys hidden for every head and every query
            scores = scores.masked_fill(~pad_mask[:, None, None, :], float("-inf"))
        weights = scores.softmax(dim=-1)  # (B, H, L, L)
        out = (weights @ v).transpose(1, 2).reshape(B, L, D)  # (B, L, D)
        return self.out(out)


def self_attention_cases(seed: int) -> list[ModuleCase]:
    g = torch.Generator().manual_seed(seed)

    def case(name, d_model, n_heads, B, L, lengths=None, tags=()):
        init = {"d_model": d_model, "n_heads": n_heads}
        params = reference_params(  # entries N(0, 1.5^2 / d_model) and 0.3^2 for the biases
            SelfAttention, init, g,
            scale=lambda name, p: 1.5 / math.sqrt(d_model) if p.dim() == 2 else 0.3,
        )
        x = randn(g, B, L, d_model)
        args = (x,)
        if lengths is not None:  # (B, L), True = a real token; every sequence has one at least
            args = (x, torch.arange(L) < torch.tensor(lengths)[:, None])
        return ModuleCase(name, args=args, tags=frozenset(tags), init=init, params=params,
                          arg_names=("x", "pad_mask"))

    # Heads and batch differ in most cases; B == H once (the bare unsqueeze is
    # silently wrong there) and B == 1 once (it is right there).
    return [
        case("3 heads, no mask", 12, 3, B=2, L=5),
        case("2 heads, one sequence, no mask", 8, 2, B=1, L=4),
        case("2 heads, B = 2, a padding mask", 8, 2, B=2, L=5, lengths=[5, 2], tags={"mask"}),
        case("2 heads, B = 3, a padding mask", 12, 2, B=3, L=4, lengths=[4, 1, 3], tags={"mask"}),
        case("4 heads, one sequence, a padding mask", 16, 4, B=1, L=6, lengths=[4], tags={"mask"}),
        case("one head, B = 2, a padding mask", 6, 1, B=2, L=5, lengths=[3, 5], tags={"mask"}),
        case("8 heads, d_model = 32, B = 2, a padding mask", 32, 8, B=2, L=3, lengths=[3, 2],
             tags={"mask"}),
    ]


# The known mistakes: the fixed module with one or more of its three steps
# still written the buggy way. Each step is a method; each mistake overrides
# exactly the steps it gets wrong.


class _Steps(SelfAttention):
    def split(self, t, B, L):
        return t.reshape(B, L, self.n_heads, self.d_head).transpose(1, 2)  # (B, H, L, d_head)

    def scale(self, D):
        return math.sqrt(self.d_head)

    def key_mask(self, pad_mask):
        return pad_mask[:, None, None, :]  # (B, 1, 1, L)

    def forward(self, x, pad_mask=None):
        B, L, D = x.shape
        q, k, v = (self.split(t, B, L) for t in self.qkv(x).chunk(3, dim=-1))
        scores = q @ k.transpose(-2, -1) / self.scale(D)  # (B, H, L, L)
        if pad_mask is not None:
            scores = scores.masked_fill(~self.key_mask(pad_mask), float("-inf"))
        out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, L, D)
        return self.out(out)


class _BareReshape(_Steps):
    def split(self, t, B, L):
        return t.reshape(B, self.n_heads, L, self.d_head)  # right shape, positions cut into heads


class _ScaleByDModel(_Steps):
    def scale(self, D):
        return math.sqrt(D)  # the whole model's width, not one head's


class _MaskOneAxis(_Steps):
    def key_mask(self, pad_mask):
        return pad_mask.unsqueeze(1)  # (B, 1, L): its batch axis meets the heads


class _MasksQueries(_Steps):
    def key_mask(self, pad_mask):
        return pad_mask[:, None, :, None]  # (B, 1, L, 1): hides whole rows (queries), not keys


class _MaskInvertedInReview(_Steps):
    def forward(self, x, pad_mask=None):  # the statement's True = real token, read as "blocked"
        return super().forward(x, None if pad_mask is None else ~pad_mask)


class _Unchanged(_BareReshape, _ScaleByDModel, _MaskOneAxis):
    pass


class _OnlyMaskFixed(_BareReshape, _ScaleByDModel):
    pass


class _OnlyScaleFixed(_BareReshape, _MaskOneAxis):
    pass


class _OnlySplitFixed(_ScaleByDModel, _MaskOneAxis):
    pass


_SPLIT = ("`q.reshape(B, self.n_heads, L, self.d_head)` has the right shape but cuts the sequence, "
          "not the channels, into heads: reshape to (B, L, H, d_head), then `.transpose(1, 2)` "
          "(section 2.3)")
_SCALE = ("the scores are divided by sqrt(D) = sqrt(d_model); each head's dot products run over "
          "d_head channels, so divide by sqrt(self.d_head) (section 2.4)")
_MASK = ("`pad_mask.unsqueeze(1)` is (B, 1, L), which lines its batch axis up with the heads of "
         "the (B, H, L, L) scores (wrong when B == H, an error otherwise, right only for B = 1): "
         "hide the keys with `pad_mask[:, None, None, :]`, (B, 1, 1, L)")

register(
    Exercise(
        id="multihead.spot_the_bug",
        title="Spot the bugs: a self-attention module from a code review",
        target="SelfAttention",
        chapter=CHAPTER,
        reference=SelfAttention,
        make_cases=self_attention_cases,
        call=build_and_call,
        points=3,
        notes={"exception": "The cases differ in d_model, the number of heads, the batch size "
                            "(1, 2 and 3) and the length; most have a (B, L) padding mask."},
        mistakes=[
            Mistake("unchanged",
                    "This still behaves exactly like the code under review: all three bugs are "
                    "still there. Check the shape of every tensor, and which axis each size "
                    "lands on.",
                    _Unchanged),
            Mistake("split-and-scale-remain",
                    f"The mask is fixed; two bugs remain. First, {_SPLIT}. Second, {_SCALE}.",
                    _OnlyMaskFixed),
            Mistake("split-and-mask-remain",
                    f"The scale is fixed; two bugs remain. First, {_SPLIT}. Second, {_MASK}.",
                    _OnlyScaleFixed),
            Mistake("scale-and-mask-remain",
                    f"The split into heads is fixed; two bugs remain. First, {_SCALE}. Second, "
                    f"{_MASK}.",
                    _OnlySplitFixed),
            Mistake("split-remains", f"Two bugs fixed, one to go: {_SPLIT}.", _BareReshape),
            Mistake("scale-remains", f"Two bugs fixed, one to go: {_SCALE}.", _ScaleByDModel),
            Mistake("mask-remains", f"Two bugs fixed, one to go: {_MASK}.", _MaskOneAxis),
            Mistake("mask-hides-queries",
                    "Your mask hides queries, not keys: `pad_mask[:, None, :, None]` is "
                    "(B, 1, L, 1), so a padded position's whole row of scores is -inf (its "
                    "weights become NaN) while real queries still attend to the padding. Padding "
                    "is hidden as a key: `pad_mask[:, None, None, :]`, (B, 1, 1, L).",
                    _MasksQueries),
            Mistake("mask-inverted",
                    "Your mask is inverted: it hides the real tokens and lets every query attend "
                    "only to the padding (a row with no padding gets all -inf scores, and NaN "
                    "weights). In this module `pad_mask` is True at real tokens, so "
                    "`masked_fill(~mask, -inf)` hides the padding; drop the extra `~` (or the "
                    "`== 0`).",
                    _MaskInvertedInReview),
        ],
        hints=[
            "There are three bugs, in three different lines of forward(); __init__ is right.",
            "Write the shape next to every line, for B = 2, L = 5, d_model = 12 and 3 heads. "
            "Which axis of `q.reshape(B, self.n_heads, L, self.d_head)` holds the positions?",
            "Over how many channels does one head's dot product run? That is what the scale is "
            "about.",
            "The scores are (B, H, L, L). Broadcasting lines shapes up from the right: where does "
            "the batch axis of a (B, 1, L) mask land?",
        ],
    )
)
