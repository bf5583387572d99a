"""Chapter 1 exercises: softmax, scaled dot-product attention, spot the bug, build a W_Q.

Each known mistake is a real implementation of that mistake: the learner's
code is diagnosed with it when the two behave the same on every case.
"""

from __future__ import annotations

import math

import torch

from .. import attention as ref
from .api import register
from .core import VALUE, Case, randn
from .judging import Exercise, Mistake

CHAPTER = "01_attention"


# ---------------------------------------------------------------------------
# attention.softmax
# ---------------------------------------------------------------------------


def softmax_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    offsets = torch.tensor([[0.0], [-200.0], [-1000.0]])
    with_inf = randn(g, 3, 5)
    with_inf[0, 1] = with_inf[2, 0] = with_inf[2, 4] = float("-inf")
    return [
        Case("2-D scores, default dim", (randn(g, 4, 6),)),
        Case("3-D batch, dim=-1", (randn(g, 2, 3, 5),), {"dim": -1}),
        Case("3-D batch, dim=1", (randn(g, 2, 3, 5),), {"dim": 1}, frozenset({"dim"})),
        Case("4-D, dim=0", (randn(g, 3, 2, 4, 5),), {"dim": 0}, frozenset({"dim"})),
        Case("1-D vector", (randn(g, 7),)),
        Case("large values (magnitude 1e4)", (randn(g, 3, 5, scale=1e4),), {"dim": -1}),
        Case("rows far apart (offsets 0, -200, -1000)", (randn(g, 3, 4) + offsets,), {"dim": -1}),
        Case("scores with some -inf (masked) entries", (with_inf,), {"dim": -1}),
        Case("float64 input", (randn(g, 3, 4, dtype=torch.float64),), {"dim": -1}),
    ]


#: Every spelling of a ready-made softmax (an alias, a method, a module, or
#: log_softmax(...).exp()): exercise 1.1 forbids them all.
SOFTMAX_FUNCTIONS = (
    "torch.softmax",
    "torch.Tensor.softmax",
    "torch.nn.functional.softmax",
    "torch.special.softmax",
    "torch._softmax",
    "torch.nn.Softmax",
    "torch.log_softmax",
    "torch.Tensor.log_softmax",
    "torch.nn.functional.log_softmax",
    "torch.special.log_softmax",
    "torch._log_softmax",
    "torch.nn.LogSoftmax",
    "torch.nn.functional.softmin",
)


def _softmax_ignores_dim(x, dim=-1):
    e = torch.exp(x - x.amax(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)


def _softmax_overflows(x, dim=-1):
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def _softmax_global_max(x, dim=-1):
    e = torch.exp(x - x.max())
    return e / e.sum(dim=dim, keepdim=True)


def _softmax_sum_over_all(x, dim=-1):
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum()


def _softmax_no_keepdim(x, dim=-1):
    e = torch.exp(x - x.amax(dim=dim))
    return e / e.sum(dim=dim)


register(
    Exercise(
        id="attention.softmax",
        title="A numerically stable softmax",
        target="softmax",
        chapter=CHAPTER,
        reference=ref.softmax,
        make_cases=softmax_cases,
        points=2,
        forbidden=SOFTMAX_FUNCTIONS,
        forbidden_reason="Build it from exp, a maximum and a sum: the point is to see why the "
                         "maximum is subtracted.",
        notes={"exception": "The cases differ in the number of dimensions, in `dim`, and in "
                            "their values (very large ones, -inf entries, float64)."},
        mistakes=[
            Mistake(
                "overflow",
                "Your softmax overflows on large inputs: exp(1e4) is inf in float32, and "
                "inf / inf is NaN. Subtract the maximum along `dim` before exponentiating "
                "(it cancels out in the ratio).",
                _softmax_overflows,
            ),
            Mistake(
                "ignores-dim",
                "Your softmax always normalizes over the last dimension and ignores the `dim` "
                "argument: it is right for dim=-1 and wrong for dim=0 or dim=1. Use `dim` in "
                "the max and in the sum.",
                _softmax_ignores_dim,
            ),
            Mistake(
                "global-max",
                "You subtract the maximum of the whole tensor instead of the maximum along "
                "`dim`. Rows far below that maximum underflow: every exp() is 0 and 0/0 is "
                "NaN. Use `x.amax(dim=dim, keepdim=True)`.",
                _softmax_global_max,
            ),
            Mistake(
                "sum-over-all",
                "You divide by the sum over the whole tensor; each slice along `dim` must sum "
                "to 1 on its own. Use `e.sum(dim=dim, keepdim=True)`.",
                _softmax_sum_over_all,
            ),
            Mistake(
                "no-keepdim",
                "Your max or sum along `dim` drops that dimension, so it broadcasts against the "
                "wrong axis (or not at all). Pass `keepdim=True` so the result lines up with `x`.",
                _softmax_no_keepdim,
            ),
        ],
        hints=[
            "softmax(x)_i = exp(x_i) / sum_j exp(x_j), where the sum runs along `dim` only.",
            "exp(x - c) / sum(exp(x - c)) is the same for any constant c. Pick c = the max "
            "along `dim`, so every exponent is <= 0 and nothing overflows.",
            "Reductions need `keepdim=True` to broadcast back: "
            "`x.amax(dim=dim, keepdim=True)`, `e.sum(dim=dim, keepdim=True)`.",
            "Do not modify `x` in place (`x -= m`): write `x - m`.",
        ],
    )
)


# ---------------------------------------------------------------------------
# attention.scaled_dot_product_attention
# ---------------------------------------------------------------------------


def sdpa_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def qkv(*lead: int, lq: int, lk: int, d_k: int, d_v: int, scale: float = 1.0):
        # d_v differs from d_k in every case, so scaling by sqrt(d_v) shows;
        # d_k, the lengths and the batch sizes vary, so no hard-coded size passes.
        return (randn(g, *lead, lq, d_k, scale=scale), randn(g, *lead, lk, d_k, scale=scale),
                randn(g, *lead, lk, d_v))

    # Every mask row allows at least one key and blocks at least one, under
    # either polarity, so no row is fully masked (that is Chapter 6's topic).
    mask_2d = torch.tensor(
        [[True, False, True, False], [False, True, True, True], [True, True, False, False]]
    )  # (Lq=3, Lk=4), broadcast over the batch
    lengths = torch.tensor([3, 1])  # real keys per sequence; the rest is padding
    padding = torch.arange(5) < lengths[:, None]  # (B=2, Lk=5)
    padding = padding[:, None, None, :]  # (B, 1, 1, Lk): same keys hidden for every head and query
    return [
        Case("3-D batch, no mask", qkv(2, lq=3, lk=4, d_k=8, d_v=5)),
        Case("4-D (batch, heads), no mask", qkv(2, 3, lq=3, lk=5, d_k=4, d_v=6), tags=frozenset({"4d"})),
        Case("2-D single sequence, no mask", qkv(lq=3, lk=4, d_k=16, d_v=5), tags=frozenset({"2d"})),
        Case("3-D batch with a (Lq, Lk) mask", qkv(3, lq=3, lk=4, d_k=6, d_v=2), {"mask": mask_2d},
             frozenset({"mask"})),
        Case("4-D with a (B, 1, 1, Lk) padding mask", qkv(2, 2, lq=3, lk=5, d_k=10, d_v=3),
             {"mask": padding}, frozenset({"mask", "4d"})),
        Case("3-D self-attention (Lq = Lk)", qkv(1, lq=5, lk=5, d_k=12, d_v=4)),
        Case("large scores (entries of magnitude 30)", qkv(2, lq=3, lk=4, d_k=9, d_v=5, scale=30.0),
             tags=frozenset({"large"})),
    ]


def _scores(q, k, mask, scale):
    """Scaled scores with masked entries at -inf: the part most mistakes share."""
    scores = q @ k.transpose(-2, -1) / scale  # (..., Lq, Lk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores


def _attend(weights, v):
    return weights @ v, weights


def _no_scaling(q, k, v, mask=None):
    return _attend(ref.softmax(_scores(q, k, mask, 1.0), dim=-1), v)


def _divide_by_d_k(q, k, v, mask=None):
    return _attend(ref.softmax(_scores(q, k, mask, q.size(-1)), dim=-1), v)


def _scale_by_sqrt_d_v(q, k, v, mask=None):
    return _attend(ref.softmax(_scores(q, k, mask, math.sqrt(v.size(-1))), dim=-1), v)


def _scale_after_softmax(q, k, v, mask=None):
    weights = ref.softmax(_scores(q, k, mask, 1.0), dim=-1) / math.sqrt(q.size(-1))
    return _attend(weights, v)


def _softmax_over_queries(q, k, v, mask=None):
    return _attend(ref.softmax(_scores(q, k, mask, math.sqrt(q.size(-1))), dim=-2), v)


def _softmax_dim_1(q, k, v, mask=None):
    return _attend(ref.softmax(_scores(q, k, mask, math.sqrt(q.size(-1))), dim=1), v)


def _mask_inverted(q, k, v, mask=None):
    return ref.scaled_dot_product_attention(q, k, v, None if mask is None else ~mask)


def _mask_after_softmax(q, k, v, mask=None):
    weights = ref.softmax(_scores(q, k, None, math.sqrt(q.size(-1))), dim=-1)
    if mask is not None:
        weights = weights * mask  # zeroed, but the rows no longer sum to 1
    return _attend(weights, v)


def _mask_ignored(q, k, v, mask=None):
    return ref.scaled_dot_product_attention(q, k, v)


def _weights_transposed(q, k, v, mask=None):
    out, weights = ref.scaled_dot_product_attention(q, k, v, mask)
    return out, weights.transpose(-2, -1)


def _only_3d(q, k, v, mask=None):
    scores = torch.bmm(q, k.transpose(1, 2)) / math.sqrt(q.size(-1))  # bmm: exactly 3-D only
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = ref.softmax(scores, dim=-1)
    return torch.bmm(weights, v), weights


def _softmax_overflow(q, k, v, mask=None):
    e = _scores(q, k, mask, math.sqrt(q.size(-1))).exp()  # no max subtracted: exp(100) = inf
    return _attend(e / e.sum(dim=-1, keepdim=True), v)


register(
    Exercise(
        id="attention.scaled_dot_product_attention",
        title="Scaled dot-product attention with a mask",
        target="scaled_dot_product_attention",
        chapter=CHAPTER,
        reference=ref.scaled_dot_product_attention,
        make_cases=sdpa_cases,
        outputs=("output", "weights"),
        points=3,
        forbidden=("torch.nn.functional.scaled_dot_product_attention",),
        forbidden_reason="Compute the scores, the softmax and the weighted sum yourself.",
        notes={
            "exception": "The cases differ in the number of leading dimensions (none, a batch, "
                         "a batch and heads), in d_k, d_v and the lengths, and some have a mask.",
            "not-exact-zero": "Masked positions must get weight exactly 0: fill their scores with "
                              "float('-inf') (or a number so negative that exp() gives 0, such as "
                              "-1e9), not a moderate number such as -20.",
        },
        mistakes=[
            Mistake(
                "no-scaling",
                "You did not scale the scores: divide q @ k^T by sqrt(d_k) (d_k = q.size(-1)) "
                "before the softmax. Without it the softmax saturates as d_k grows (section 1.7).",
                _no_scaling,
            ),
            Mistake(
                "divide-by-d_k",
                "You divide the scores by d_k; the paper divides by sqrt(d_k). The dot product of "
                "two random d_k-vectors has variance d_k, so its standard deviation is sqrt(d_k).",
                _divide_by_d_k,
            ),
            Mistake(
                "scale-by-sqrt-d_v",
                "You scale by sqrt(d_v), the size of the values. The scale comes from the "
                "query-key dot product, so it is sqrt(d_k) = sqrt(q.size(-1)) (here d_k != d_v).",
                _scale_by_sqrt_d_v,
            ),
            Mistake(
                "scale-after-softmax",
                "You divide by sqrt(d_k) after the softmax, so the weights no longer sum to 1. "
                "Scale the scores, then take the softmax.",
                _scale_after_softmax,
            ),
            Mistake(
                "softmax-wrong-axis",
                "Your softmax runs over the queries (dim=-2). Each query's weights over the keys "
                "must sum to 1: take the softmax over the last dimension (dim=-1), the keys.",
                _softmax_over_queries,
                ignore_tags=frozenset({"mask"}),
            ),
            Mistake(
                "softmax-dim-1",
                "Your softmax runs over dim=1, as in a widely copied blog post: that is the keys "
                "only for a single 2-D sequence; for a (B, Lq, Lk) batch it is the queries, and "
                "for (B, H, Lq, Lk) the heads. Count from the end: the keys are always dim=-1.",
                _softmax_dim_1,
                ignore_tags=frozenset({"mask"}),
            ),
            Mistake(
                "mask-inverted",
                "Your mask polarity is inverted: you hide the positions where the mask is True. "
                "In this course (and in F.scaled_dot_product_attention) True means 'may attend': "
                "fill the scores with -inf where the mask is False (`~mask`).",
                _mask_inverted,
            ),
            Mistake(
                "mask-after-softmax",
                "You apply the mask after the softmax (weights * mask), so the remaining weights "
                "no longer sum to 1. Mask the scores before the softmax: "
                "`scores.masked_fill(~mask, float('-inf'))`.",
                _mask_after_softmax,
            ),
            Mistake(
                "mask-ignored",
                "Your function ignores the mask: the results are right without a mask and wrong "
                "with one. Set the scores of masked positions (mask False) to -inf before the softmax.",
                _mask_ignored,
            ),
            Mistake(
                "weights-transposed",
                "Your output is right but the weights are transposed: return them as "
                "(..., Lq, Lk), one row per query, not (..., Lk, Lq).",
                _weights_transposed,
            ),
            Mistake(
                "only-3d",
                "Your function works only for 3-D inputs (batch, length, dim): it fails for a "
                "single 2-D sequence and for 4-D (batch, heads, ...) inputs. `torch.bmm` and "
                "`k.transpose(1, 2)` assume exactly one batch dimension; use `@` and "
                "`k.transpose(-2, -1)`, which work for any number of leading dimensions.",
                _only_3d,
            ),
            Mistake(
                "softmax-overflow",
                "Your softmax overflows when the scores are large (exp(100) is inf in float32, and "
                "inf / inf is NaN). Subtract the row maximum first, or use your stable softmax "
                "from the previous exercise.",
                _softmax_overflow,
            ),
        ],
        hints=[
            "Four steps: scores = q @ k^T; scale by 1/sqrt(d_k); mask; softmax over the keys; "
            "then weights @ v.",
            "`k.transpose(-2, -1)` swaps the last two dimensions whatever comes before them.",
            "d_k is `q.size(-1)`: read it from the input, never write a number. Keep scores as "
            "(..., Lq, Lk): one row per query.",
            "With a mask (True = may attend), `scores.masked_fill(~mask, float('-inf'))` before "
            "the softmax gives masked keys a weight of exactly 0.",
            "Return a tuple `(output, weights)`.",
        ],
    )
)


# ---------------------------------------------------------------------------
# attention.spot_the_bug
# ---------------------------------------------------------------------------

#: The buggy code the learner starts from (shown in the notebook).
BUGGY_ATTENTION_WEIGHTS = '''\
def attention_weights(q, k):
    """Attention weights for q (B, Lq, d_k) and k (B, Lk, d_k): shape (B, Lq, Lk)."""
    d_k = k.size(1)
    scores = q @ k.transpose(1, 2) / math.sqrt(d_k)
    return torch.softmax(scores, dim=1)
'''


def attention_weights(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Attention weights for q (B, Lq, d_k) and k (B, Lk, d_k): shape (B, Lq, Lk)."""
    d_k = k.size(-1)
    scores = q @ k.transpose(1, 2) / math.sqrt(d_k)  # (B, Lq, Lk)
    return torch.softmax(scores, dim=-1)  # over the keys


def _buggy(q, k):
    return torch.softmax(q @ k.transpose(1, 2) / math.sqrt(k.size(1)), dim=1)


def _only_dim_fixed(q, k):
    return torch.softmax(q @ k.transpose(1, 2) / math.sqrt(k.size(1)), dim=-1)


def _only_scale_fixed(q, k):
    return torch.softmax(q @ k.transpose(1, 2) / math.sqrt(k.size(-1)), dim=1)


def spot_the_bug_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    # Lq, Lk and d_k all different, so each bug shows on its own.
    return [
        Case("B=2, Lq=3, Lk=5, d_k=4", (randn(g, 2, 3, 4), randn(g, 2, 5, 4))),
        Case("B=1, Lq=6, Lk=2, d_k=16", (randn(g, 1, 6, 16), randn(g, 1, 2, 16))),
        Case("B=3, Lq=4, Lk=4, d_k=9", (randn(g, 3, 4, 9, scale=2.0), randn(g, 3, 4, 9))),
    ]


register(
    Exercise(
        id="attention.spot_the_bug",
        title="Spot the bug: attention weights from a blog post",
        target="attention_weights",
        chapter=CHAPTER,
        reference=attention_weights,
        make_cases=spot_the_bug_cases,
        points=2,
        notes={"exception": "The cases differ in the batch size, the lengths and d_k."},
        mistakes=[
            Mistake(
                "unchanged",
                "This still behaves exactly like the buggy original: both bugs are still there. "
                "Check which dimension each size and each softmax refers to for a (B, L, d) tensor.",
                _buggy,
            ),
            Mistake(
                "softmax-over-queries",
                "One bug fixed, one to go: the softmax still runs over dim=1, which for scores "
                "of shape (B, Lq, Lk) is the queries. Each query's weights over the keys must "
                "sum to 1.",
                _only_scale_fixed,
            ),
            Mistake(
                "scale-by-length",
                "One bug fixed, one to go: `k.size(1)` is Lk, the number of keys, not d_k. The "
                "scale is sqrt(d_k) = sqrt(k.size(-1)); it only looked right when Lk = d_k.",
                _only_dim_fixed,
            ),
        ],
        hints=[
            "There are two bugs: one in the first line of the body (`d_k = ...`) and one in the "
            "last (`return ...`); the middle line is right.",
            "For k of shape (B, Lk, d_k), what is k.size(1)?",
            "scores has shape (B, Lq, Lk). Along which dimension should each row of weights sum to 1?",
        ],
    )
)


# ---------------------------------------------------------------------------
# attention.build_w_q: construct a W_Q that produces a given attention pattern
# ---------------------------------------------------------------------------
#
# Many matrices are right, so the check compares what the learner's W_Q *does*
# (which key each query attends to, and whether every query puts at least 90%
# of its weight on its target), not its entries.

#: The share of its weight each query must put on its target key.
FOCUS = 0.9


def build_w_q(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A W_Q (d, d) with which query i attends to key target[i] (keys = x, orthonormal rows)."""
    L, d = x.shape
    # The target's score is s / sqrt(d), every other score 0: a gap of
    # ln(9 (L - 1)) gives the target 90%; twice ln(9 L) is plenty.
    s = math.sqrt(d) * 2 * math.log(9 * L)
    return s * x.T @ x[target]  # (d, L) @ (L, d): maps x_i to s * x[target[i]]


def attend_with_w_q(fn, case: Case):
    """``Exercise.call``: build W_Q with ``fn``, then run attention with it on the case's tokens.

    Returns ``(attended, focused)``: the key each query gives its largest
    weight, and whether every query puts at least :data:`FOCUS` of its weight
    on its target.
    """
    x, target = case.args
    w_q = fn(*case.args, **case.kwargs)
    L, d = x.shape
    if w_q is None:
        raise TypeError(f"build_w_q returned None (did you forget the `return` statement?): it "
                        f"must return W_Q, a tensor of shape (d, d) = ({d}, {d})")
    if not isinstance(w_q, torch.Tensor):
        raise TypeError(f"build_w_q must return a tensor of shape (d, d) = ({d}, {d}); got "
                        f"{type(w_q).__name__}")
    if tuple(w_q.shape) != (d, d):
        raise ValueError(f"W_Q must have shape (d, d) = ({d}, {d}): it maps each embedding "
                         f"(d,) to a query (d,); got shape {tuple(w_q.shape)}")
    if not torch.isfinite(w_q).all():
        raise ValueError("W_Q has NaN or infinite entries (an overflow, or 0/0?): every entry "
                         "must be a finite number")
    with torch.no_grad():
        x64 = x.double()
        scores = (x64 @ w_q.double()) @ x64.T / math.sqrt(d)  # (L, L): keys are the embeddings
        weights = torch.softmax(scores, dim=-1)  # (L, L), computed in float64
    attended = weights.argmax(dim=-1)  # (L,)
    focused = (weights[torch.arange(L), target] >= FOCUS).all()  # () bool
    return attended, focused


def _one_hot_rows(L: int, d: int, order=None) -> torch.Tensor:
    """Embeddings that are one-hot feature vectors, like section 1.2's (feature order optional)."""
    rows = torch.eye(d)[:L] if order is None else torch.eye(d)[order[:L]]
    return rows  # (L, d)


def _rotated_rows(g: torch.Generator, L: int, d: int) -> torch.Tensor:
    """L orthonormal embeddings in d dimensions, in no particular direction."""
    q, _ = torch.linalg.qr(randn(g, d, d, dtype=torch.float64))  # (d, d) orthogonal
    return q[:L].to(torch.float32)  # (L, d), rows orthonormal


def build_w_q_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def permutation(n):  # a random rearrangement with no fixed point
        while True:
            p = torch.randperm(n, generator=g)
            if (p != torch.arange(n)).all():
                return p

    previous = torch.tensor([0, 0, 1, 2, 3])  # (L=5,): each token looks at the one before
    repeats = torch.randint(6, (6,), generator=g)  # (L=6,): several queries may share a key
    # Every case needs a strength of at least 10 (sqrt(d) ln(9 (L - 1))), so a
    # strength picked without the sqrt(d) scale or the number of keys fails.
    # The rotated cases use permutations as targets, so no two keys tie for
    # any of the known mistakes.
    return [
        Case("one-hot embeddings, L=5, d=8, each token looks at the previous one",
             (_one_hot_rows(5, 8), previous)),
        Case("one-hot embeddings in shuffled feature order, L=6, d=8",
             (_one_hot_rows(6, 8, torch.randperm(8, generator=g)), repeats)),
        Case("rotated orthonormal embeddings, L=4, d=16", (_rotated_rows(g, 4, 16), permutation(4))),
        Case("rotated orthonormal embeddings, L=12, d=16", (_rotated_rows(g, 12, 16), permutation(12))),
        Case("rotated orthonormal embeddings, L=8, d=64", (_rotated_rows(g, 8, 64), permutation(8))),
        Case("rotated orthonormal embeddings, L = d = 8", (_rotated_rows(g, 8, 8), permutation(8))),
    ]


def _flat_on_some_cases(cases, outcomes, ref):
    """Every query finds its target, but on some cases (not all) the weights are not focused."""
    flat = []
    for case, mine, r in zip(cases, outcomes, ref, strict=True):
        if mine.kind != VALUE or not isinstance(mine.value, tuple) or len(mine.value) != 2:
            return None
        attended, focused = mine.value
        if not (isinstance(attended, torch.Tensor) and torch.equal(attended, r.value[0])):
            return None
        if not bool(focused):
            flat.append(case)
    if not flat or len(flat) == len(cases):
        return None  # all focused: passed; none: the "too-flat" mistake says it
    sizes = ", ".join(str(tuple(c.args[0].shape)) for c in flat)
    return (
        "too-flat",
        f"Every query's largest weight is on its target, and on {len(cases) - len(flat)} of "
        f"{len(cases)} cases every query puts at least 90% there, but not on {len(flat)} "
        f"(with (L, d) = {sizes}): your scale is large enough for some sizes only. The scores are divided "
        "by sqrt(d), and the target competes with L - 1 other keys: its score must beat theirs "
        "by about ln(9 (L - 1)) after that division. Compute the factor from x.shape (it grows "
        "with sqrt(d) and ln(L)) rather than fixing a number.",
    )


def _strength(x):
    L, d = x.shape
    return math.sqrt(d) * 2 * math.log(9 * L)


def _too_flat(x, target):
    return x.T @ x[target]  # the right direction, strength 1


def _looks_at_itself(x, target):
    return _strength(x) * torch.eye(x.shape[1])  # q_i = s x_i: every query finds its own key


def _who_looks_at_me(x, target):
    return _strength(x) * x[target].T @ x  # transposed: x_i -> s * sum of x_j with target[j] = i


def _assumes_one_hot(x, target):
    L, d = x.shape
    w_q = torch.zeros(d, d)
    w_q[torch.arange(L), target] = _strength(x)  # "row = my feature, column = what I look for"
    return w_q


def _returns_the_pattern(x, target):
    L = x.shape[0]
    return _strength(x) * torch.eye(L)[target]  # (L, L): the scores wanted, not W_Q


register(
    Exercise(
        id="attention.build_w_q",
        title="Build a W_Q for a given attention pattern",
        target="build_w_q",
        chapter=CHAPTER,
        reference=build_w_q,
        make_cases=build_w_q_cases,
        call=attend_with_w_q,
        explain=_flat_on_some_cases,
        outputs=("attended", "focused"),
        points=3,
        notes={"exception": "The cases differ in L and d (L <= d), in the embeddings (one-hot or "
                            "rotated orthonormal rows) and in the target pattern. W_Q must be a "
                            "(d, d) tensor."},
        mistakes=[
            Mistake(
                "too-flat",
                "Every query's largest weight is on its target: the direction is right. But the "
                "weights are not focused: some query puts less than 90% on its target. The "
                "scores are divided by sqrt(d), and the target competes with L - 1 other keys: "
                "its score must beat theirs by about ln(9 (L - 1)) after that division. Scale "
                "your W_Q up, with a factor that grows with sqrt(d) and ln(L).",
                _too_flat,
            ),
            Mistake(
                "looks-at-itself",
                "Every query attends to its own key: your W_Q maps each embedding to (a multiple "
                "of) itself, and a vector matches itself best. Query i must look like key "
                "target[i]: map x[i] to a multiple of x[target[i]].",
                _looks_at_itself,
            ),
            Mistake(
                "who-looks-at-me",
                "Your pattern is transposed: query i attends to the tokens whose target is i, "
                "not to target[i]. In `x.T @ x[target]` the first factor reads the query's "
                "own embedding and the second writes the key it looks for; you swapped them.",
                _who_looks_at_me,
            ),
            Mistake(
                "assumes-one-hot",
                "Right when the embeddings are one-hot vectors in token order (like section "
                "1.2's features), wrong otherwise: you wrote W_Q[i, target[i]], in token "
                "coordinates. Here the rows of x are orthonormal but point anywhere: write what "
                "query i looks for in x's coordinates, q_i = s * x[target[i]], which the matrix "
                "s * x.T @ x[target] does (x_i @ x.T is one-hot, because the rows are orthonormal).",
                _assumes_one_hot,
            ),
            Mistake(
                "returns-the-pattern",
                "You returned the (L, L) pattern of scores you want, but W_Q is a (d, d) matrix "
                "that maps each embedding to its query: the scores are x @ W_Q @ x.T / sqrt(d). "
                "Find the W_Q that makes them large on (i, target[i]).",
                _returns_the_pattern,
            ),
        ],
        hints=[
            "The keys are the embeddings themselves (W_K = I), so query i attends to key j in "
            "proportion to exp(q_i . x_j / sqrt(d)). Make q_i = x_i W_Q a large multiple of "
            "x[target[i]].",
            "The rows of x are orthonormal, so x_i @ x.T is the one-hot vector e_i, and "
            "x_i @ (x.T @ x[target]) = x[target[i]]: W_Q = s * x.T @ x[target].",
            "How large must s be? The target's score is s / sqrt(d) and every other score is 0, "
            "so the target gets exp(s/sqrt(d)) / (exp(s/sqrt(d)) + L - 1) >= 0.9 when "
            "s >= sqrt(d) * ln(9 (L - 1)). Read L and d from x.shape; do not hard-code them.",
            "Return a (d, d) tensor: W_Q maps embeddings (d) to queries (d).",
        ],
    )
)
