"""Chapter 6 exercises: the causal mask, the padding mask, and a leakage test.

Each known mistake is a real implementation of that mistake: the learner's
code is diagnosed with it when the two behave the same on every case.

The third exercise turns the check around: the learner writes a *test*,
``leaks_future(layer, x)``, and the check hands it layers that leak the future
in every way it knows, and layers that do not. The layers are built by the
check from plain data (:class:`LayerCase`: which layer, and its weights), so
the grader can ship them like any other case; the learner's function receives
a plain function ``layer(x)``. The known mistakes are tests that look in only
one place (the last position, the first output, the next position, one split
point), compare the wrong outputs, shuffle the future instead of changing it,
or use a tolerance too loose for a weak leak; the layers are chosen so that
each of those misjudges a different set of them.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from .. import masks as ref
from ..decoder import DecoderLayer
from ..multihead import MultiHeadAttention, combine_heads, split_heads
from .api import register
from .core import Case, randn
from .judging import Exercise, Mistake
from .modules import load_params, reference_params

CHAPTER = "06_masking"


# ---------------------------------------------------------------------------
# masking.causal_mask
# ---------------------------------------------------------------------------


def causal_mask_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    n1, n2 = (int(n) for n in torch.randint(4, 12, (2,), generator=g))
    return [
        Case("n = 5", (5,)),
        Case("n = 1 (a single position)", (1,)),
        Case(f"n = {n1}", (n1,)),
        Case("n = 2", (2,)),
        Case("n = 3, device='cpu'", (3,), {"device": "cpu"}),
        Case(f"n = {n2 + 4}", (n2 + 4,)),
    ]


def _no_diagonal(n, device=None):
    return torch.ones(n, n, dtype=torch.bool, device=device).tril(-1)


def _upper_triangle(n, device=None):
    return torch.ones(n, n, dtype=torch.bool, device=device).triu()


def _inverted(n, device=None):
    return torch.ones(n, n, dtype=torch.bool, device=device).triu(1)


def _float_ones(n, device=None):
    return torch.ones(n, n, device=device).tril()


def _float_additive(n, device=None):
    return torch.full((n, n), float("-inf"), device=device).triu(1)


register(
    Exercise(
        id="masking.causal_mask",
        title="The causal mask",
        target="causal_mask",
        chapter=CHAPTER,
        reference=ref.causal_mask,
        make_cases=causal_mask_cases,
        points=1,
        forbidden=("torch.nn.Transformer.generate_square_subsequent_mask",),
        forbidden_reason="Build the mask from a tensor of ones and a triangle.",
        notes={"exception": "The cases differ in n (1 to 15), and one passes device='cpu'."},
        mistakes=[
            Mistake(
                "no-diagonal",
                "Your mask hides the diagonal: query i may not see key i, its own position. "
                "Query i sees keys 0..i, itself included: `.tril()` (diagonal 0), not `.tril(-1)`. "
                "Without the diagonal the first query has nothing to attend to at all.",
                _no_diagonal,
            ),
            Mistake(
                "upper-triangle",
                "Your mask is the upper triangle: query i sees keys i..n-1, itself and the "
                "future. Row i is the query: it must see the keys j <= i, the lower triangle, "
                "`.tril()`.",
                _upper_triangle,
            ),
            Mistake(
                "inverted",
                "Your mask has the opposite polarity: True above the diagonal, on the positions to "
                "block. That is nn.MultiheadAttention's convention (True = blocked); this course's "
                "masks, like F.scaled_dot_product_attention's, say True = may attend. Passed to "
                "attention it would show each query the future only.",
                _inverted,
            ),
            Mistake(
                "float-mask",
                "Your mask has the right pattern but is a float tensor of 1s and 0s. The course's "
                "masks are bool (`dtype=torch.bool`): attention uses `~mask`, and a float mask "
                "passed to F.scaled_dot_product_attention is *added* to the scores instead.",
                _float_ones,
            ),
            Mistake(
                "additive-float-mask",
                "You return the additive float mask of nn.Transformer.generate_square_subsequent_mask "
                "(0 where allowed, -inf above the diagonal). The exercise asks for the course's bool "
                "mask: True on and below the diagonal (`to_float_mask` converts between the two).",
                _float_additive,
            ),
        ],
        hints=[
            "Row i is the query at position i, column j the key at position j. Which (i, j) "
            "pairs are allowed?",
            "Query i may attend to keys j <= i: on and below the diagonal, the lower triangle.",
            "`torch.ones(n, n, dtype=torch.bool, device=device).tril()`.",
        ],
    )
)


# ---------------------------------------------------------------------------
# masking.padding_mask
# ---------------------------------------------------------------------------


def padding_mask_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    drawn = torch.randint(1, 8, (4,), generator=g)  # (4,) lengths between 1 and 7
    return [
        Case("lengths [3, 1, 4], max_len=6", (torch.tensor([3, 1, 4]), 6)),
        Case("lengths [2, 5], max_len left out", (torch.tensor([2, 5]),)),
        Case("a sequence of length 0: lengths [0, 2, 3], max_len=4", (torch.tensor([0, 2, 3]), 4)),
        Case("one full sequence: lengths [7], max_len=7", (torch.tensor([7]), 7)),
        Case(f"lengths {drawn.tolist()}, max_len=9 (keyword)", (drawn,), {"max_len": 9}),
        Case("lengths [1, 6, 3], max_len left out", (torch.tensor([1, 6, 3]),)),
    ]


def _pad_inverted(lengths, max_len=None):
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len)[None, :] >= lengths[:, None]


def _pad_off_by_one(lengths, max_len=None):
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len)[None, :] <= lengths[:, None]


def _pad_one_short(lengths, max_len=None):
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(1, max_len + 1)[None, :] < lengths[:, None]


def _pad_ignores_max_len(lengths, max_len=None):
    return torch.arange(int(lengths.max()))[None, :] < lengths[:, None]


def _pad_transposed(lengths, max_len=None):
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len)[:, None] < lengths[None, :]


register(
    Exercise(
        id="masking.padding_mask",
        title="The padding mask",
        target="padding_mask",
        chapter=CHAPTER,
        reference=ref.padding_mask,
        make_cases=padding_mask_cases,
        points=2,
        forbidden=("transformer_workbook.masks.padding_mask_from_tokens",),
        forbidden_reason="Build the mask from the lengths with a comparison.",
        notes={"exception": "The cases differ in the batch size and the lengths (a length of 0, "
                            "a full sequence), and some leave max_len out or pass it by keyword."},
        mistakes=[
            Mistake(
                "inverted",
                "Your mask is True at the padding and False at the real tokens: the opposite "
                "polarity. In this course True means 'a real token, may be attended to' (the "
                "`key_padding_mask` of nn.MultiheadAttention is the one that is True at padding).",
                _pad_inverted,
            ),
            Mistake(
                "off-by-one",
                "Your mask marks one token too many: a sequence of length n has real tokens at "
                "positions 0..n-1, so position n is already padding. Compare with `<`, not `<=`.",
                _pad_off_by_one,
            ),
            Mistake(
                "one-short",
                "Your mask marks one real token too few: the positions start at 0 "
                "(`torch.arange(max_len)`), and a sequence of length n has real tokens at "
                "0..n-1.",
                _pad_one_short,
            ),
            Mistake(
                "ignores-max-len",
                "Your mask is right when max_len is left out, but always as long as the longest "
                "sequence: when max_len is given (the batch is padded further, e.g. to a fixed "
                "length), the mask must have max_len columns.",
                _pad_ignores_max_len,
            ),
            Mistake(
                "transposed",
                "Your mask is transposed: (max_len, B) instead of (B, max_len). One row per "
                "sequence: compare `positions[None, :]` (1, L) with `lengths[:, None]` (B, 1).",
                _pad_transposed,
            ),
        ],
        hints=[
            "Sequence b has lengths[b] real tokens at positions 0..lengths[b]-1; the rest, up to "
            "max_len, is padding.",
            "When max_len is None, use the longest length: `int(lengths.max())`.",
            "Broadcasting does it in one comparison: `torch.arange(max_len)[None, :]` is (1, L), "
            "`lengths[:, None]` is (B, 1).",
        ],
    )
)


# ---------------------------------------------------------------------------
# masking.leakage_test: the learner writes the test, the check hands it layers
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class LayerCase(Case):
    """A layer for the learner's leakage test to judge, as plain data.

    ``layer`` names what :func:`build_layer` builds around a
    :class:`~transformer_workbook.multihead.MultiHeadAttention` with
    ``params`` (its weights by name; a whole decoder layer's for
    ``"decoder-layer"``); ``pair`` is the (query, key) a ``"one-pair"`` layer
    lets through. ``args`` is ``(x,)``, the example input handed to the test.
    """

    layer: str = "causal"
    n_heads: int = 1
    d_ff: int = 0
    params: dict = dataclasses.field(default_factory=dict)
    pair: tuple = ()

    def describe(self) -> str:
        x = self.args[0]
        return f"{self.name}, called on x of shape {tuple(x.shape)}"


#: Every kind of layer the cases use, and whether it leaks the future.
LAYERS = {
    "causal": False,  # MultiHeadAttention with the causal mask (fused kernel)
    "causal-weights": False,  # the same, on Chapter 1's path (weights kept)
    "decoder-layer": False,  # a pre-LN decoder-only layer with the causal mask
    "window": False,  # a causal sliding window of 3
    "no-mask": True,  # attention without any mask
    "off-by-one": True,  # the diagonal shifted by one: tril(1)
    "inverted": True,  # the blocked-convention mask used as "may attend"
    "one-pair": True,  # causal, plus one (query, key) pair with key > query
    "centred": True,  # the input centred over the sequence before causal attention
    "weak": True,  # the future's scores lowered by 10 instead of blocked
}


def _mask(kind: str, L: int, pair: tuple) -> torch.Tensor | None:
    if kind in ("causal", "causal-weights", "decoder-layer", "centred"):
        return ref.causal_mask(L)
    if kind == "window":
        return ref.sliding_window_mask(L, 3)
    if kind == "no-mask":
        return None
    if kind == "off-by-one":
        return torch.ones(L, L, dtype=torch.bool).tril(1)
    if kind == "inverted":
        return ~ref.causal_mask(L)
    if kind == "one-pair":
        mask = ref.causal_mask(L).clone()
        if pair[1] < L:  # (a shorter input has no position pair[1] to leak from)
            mask[pair[0], pair[1]] = True
        return mask
    raise ValueError(f"no layer {kind!r}")


def build_layer(case: LayerCase):
    """The function ``layer(x)`` ``(B, L, d_model) -> (B, L, d_model)`` that ``case`` describes.

    Gradients flow from ``x`` through it (a learner's test may use them); the
    weights are fixed. It computes
    in float64 and returns ``x``'s dtype: float32 rounding then
    hides every difference below 1e-16, so a layer that ignores the order of
    the positions it sees gives *exactly* the same outputs for any order
    (the learner's choice of tolerance cannot make it seem to leak), and a
    causal layer gives exactly the same earlier outputs for any future.
    """
    d_model = case.args[0].size(-1)
    if case.layer == "decoder-layer":
        block = DecoderLayer(d_model, case.n_heads, case.d_ff, norm_first=True, cross_attention=False)
        load_params(block, case.params)
        block.double().eval().requires_grad_(False)  # outputs track x only

        def layer(x):
            out = block(x.double(), self_mask=ref.causal_mask(x.size(1)))  # (B, L, d_model)
            return out.to(x.dtype)

        return layer
    mha = MultiHeadAttention(d_model, case.n_heads)
    load_params(mha, case.params)
    mha.double().eval().requires_grad_(False)  # outputs track x only
    kind, pair = case.layer, tuple(case.pair)

    if kind == "weak":
        def layer(x):
            h, L = x.double(), x.size(1)
            bias = torch.zeros(L, L, dtype=h.dtype).masked_fill(~ref.causal_mask(L), -10.0)  # added
            q, k, v = (split_heads(p(h), case.n_heads) for p in (mha.q_proj, mha.k_proj, mha.v_proj))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, L, d_head)
            return mha.out_proj(combine_heads(out)).to(x.dtype)  # (B, L, d_model)

        return layer

    def layer(x):
        h = x.double()
        if kind == "centred":
            h = h - h.mean(dim=1, keepdim=True)  # the mean over *all* positions, future included
        mask = _mask(kind, x.size(1), pair)
        out = mha(h, h, h, mask=mask, need_weights=(kind == "causal-weights"))[0]  # (B, L, d_model)
        return out.to(x.dtype)

    return layer


def call_with_layer(fn, case: LayerCase):
    """``Exercise.call``: build the case's layer, hand it and ``x`` to the learner's test.

    A one-element bool tensor (``(a != b).any()``) is read as the bool it holds.
    """
    result = fn(build_layer(case), *case.args, **case.kwargs)
    if isinstance(result, torch.Tensor) and result.dtype == torch.bool and result.numel() == 1:
        return bool(result)
    return result


def leakage_cases(seed: int) -> list[LayerCase]:
    g = torch.Generator().manual_seed(seed)

    def case(name, layer, B, L, d_model, n_heads, pair=(), d_ff=0, gain=1.2):
        if layer == "decoder-layer":
            init = {"d_model": d_model, "n_heads": n_heads, "d_ff": d_ff, "norm_first": True,
                    "cross_attention": False}
            params = reference_params(DecoderLayer, init, g)
        else:
            params = reference_params(
                MultiHeadAttention, {"d_model": d_model, "n_heads": n_heads}, g,
                scale=lambda name, p: gain / math.sqrt(d_model) if p.dim() == 2 else 0.2,
            )
        x = randn(g, B, L, d_model)
        return LayerCase(name, (x,), layer=layer, n_heads=n_heads, d_ff=d_ff, params=params, pair=pair)

    return [
        case("attention with the causal mask", "causal", 2, 7, 8, 2),
        case("a pre-LN decoder layer (attention, feed-forward, LayerNorms) with the causal mask",
             "decoder-layer", 1, 6, 12, 3, d_ff=20),
        case("attention with a causal sliding window of 3 (Chapter 1's path)", "window", 3, 8, 8, 1),
        case("attention with the causal mask (Chapter 1's path, weights kept)", "causal-weights",
             1, 9, 16, 4),
        case("attention without a mask", "no-mask", 2, 6, 12, 2),
        case("attention whose mask is the lower triangle shifted by one, tril(1)", "off-by-one",
             1, 7, 8, 2),
        case("attention given nn.MultiheadAttention's causal mask (True = blocked) as 'may attend'",
             "inverted", 2, 8, 16, 4),
        case("causal attention where query 3 may also see key 5", "one-pair", 1, 9, 8, 2, pair=(3, 5)),
        case("causal attention where query 2 may also see the last key, 7", "one-pair", 2, 8, 12, 3,
             pair=(2, 7)),
        case("causal attention where query 0 may also see key 1", "one-pair", 1, 6, 8, 1, pair=(0, 1)),
        case("causal attention where query 3 may also see key 4", "one-pair", 3, 7, 16, 2, pair=(3, 4)),
        case("causal attention on the input centred over the sequence (x - x.mean(dim=1))", "centred",
             2, 7, 12, 3),
        # Small projections keep the scores within a few units, so the weak leak stays between
        # about 6e-5 and 1e-3 whatever the seed: far above float noise, far below 1e-2.
        case("attention that lowers the future's scores by 10 instead of blocking them", "weak",
             2, 8, 8, 2, gain=0.5),
    ]


# The known mistakes: leakage tests that look in the wrong places. Each is
# deterministic (a seeded replacement for the changed positions).


def _replacement(shape, like):
    g = torch.Generator().manual_seed(1)
    return torch.randn(shape, generator=g, dtype=like.dtype)


def _changed(x, positions):
    """``x`` with the positions ``positions`` (a slice or an index) replaced by other values."""
    new = x.clone()
    new[:, positions] = _replacement(new[:, positions].shape, x)
    return new


def _same(a, b, atol=1e-6):
    return torch.allclose(a, b, rtol=1e-5, atol=atol)


def _compares_all_positions(layer, x):
    before = layer(x)
    for t in range(x.size(1) - 1):
        if not _same(layer(_changed(x, slice(t + 1, None))), before):
            return True
    return False


def _wrong_direction(layer, x):
    before = layer(x)
    for t in range(x.size(1) - 1):
        after = layer(_changed(x, slice(0, t + 1)))  # changes the past ...
        if not _same(after[:, t + 1 :], before[:, t + 1 :]):  # ... and looks at the future
            return True
    return False


def _only_last_position(layer, x):
    before, after = layer(x), layer(_changed(x, -1))
    return not _same(after[:, :-1], before[:, :-1])


def _only_first_output(layer, x):
    before, after = layer(x), layer(_changed(x, slice(1, None)))
    return not _same(after[:, 0], before[:, 0])


def _only_next_position(layer, x):
    before = layer(x)
    for t in range(x.size(1) - 1):
        if not _same(layer(_changed(x, t + 1))[:, t], before[:, t]):
            return True
    return False


def _one_split_point(layer, x):
    t = x.size(1) // 2
    before, after = layer(x), layer(_changed(x, slice(t + 1, None)))
    return not _same(after[:, : t + 1], before[:, : t + 1])


def _shuffles_future(layer, x):
    before = layer(x)
    for t in range(x.size(1) - 1):
        shuffled = x.clone()
        shuffled[:, t + 1 :] = x[:, t + 1 :].flip(1)  # the same tokens, in another order
        if not _same(layer(shuffled)[:, : t + 1], before[:, : t + 1]):
            return True
    return False


def _loose_tolerance(layer, x):
    before = layer(x)
    for t in range(x.size(1) - 1):
        after = layer(_changed(x, slice(t + 1, None)))
        if not _same(after[:, : t + 1], before[:, : t + 1], atol=1e-2):
            return True
    return False


register(
    Exercise(
        id="masking.leakage_test",
        title="A leakage test",
        target="leaks_future",
        chapter=CHAPTER,
        reference=ref.leaks_future,
        make_cases=leakage_cases,
        call=call_with_layer,
        points=3,
        time_limit_s=30.0,
        notes={
            "exception": "Every case hands your function a different layer, as a function "
                         "`layer(x)` from (B, L, d_model) to (B, L, d_model), and its own x: the batch "
                         "size (1 to 3), the length (6 to 9) and d_model (8 to 16) vary.",
            "nondeterministic": "Random replacement values are fine, but the answer must not "
                                "depend on them: compare with a tolerance far below a real leak.",
        },
        mistakes=[
            Mistake(
                "compares-all-positions",
                "Your test says that every layer leaks, even causal attention: after changing the "
                "positions after t, it compares *all* the outputs, and the outputs at those "
                "changed positions (and after) are allowed to change. Compare only the outputs at "
                "positions 0..t.",
                _compares_all_positions,
            ),
            Mistake(
                "wrong-direction",
                "Your test changes earlier positions and looks at later outputs: that is how "
                "every causal layer is meant to work (the future reads the past). A leak is the "
                "other way round: change the positions after t and look at the outputs up to t.",
                _wrong_direction,
            ),
            Mistake(
                "only-last-position",
                "Your test only changes the last position. A layer can leak from any later "
                "position into any earlier one: here, one that lets query 3 see key 5 of 9 passes "
                "your test. For every t, change all the positions after t and compare the outputs "
                "up to t.",
                _only_last_position,
            ),
            Mistake(
                "only-first-output",
                "Your test only looks at the output of position 0. A leak into a later position "
                "(query 3 seeing key 5) leaves position 0 alone. For every t, compare the "
                "outputs at positions 0..t after changing the positions after t.",
                _only_first_output,
            ),
            Mistake(
                "only-next-position",
                "Your test only checks that position t does not see position t + 1. A layer can "
                "look further ahead: query 3 seeing key 5 passes your test. Change *all* the "
                "positions after t, not only the next one.",
                _only_next_position,
            ),
            Mistake(
                "one-split-point",
                "Your test checks one split point, in the middle: a leak between two positions "
                "on the same side of it (query 0 seeing key 1) passes. Repeat the test for every "
                "t from 0 to L - 2.",
                _one_split_point,
            ),
            Mistake(
                "shuffles-future",
                "Your test reorders the later positions instead of changing them. Attention "
                "without positions does not care in which order it sees its keys, so a layer "
                "that sees the whole future (no mask, an inverted mask, a mean over the "
                "sequence) gives the same earlier outputs for any order: replace the later "
                "positions with other values (e.g. `torch.randn_like`).",
                _shuffles_future,
            ),
            Mistake(
                "loose-tolerance",
                "Your test's tolerance is too loose: a layer that only *weakens* the future "
                "(scores lowered by 10 instead of -inf, weights of about 5e-5) changes the earlier "
                "outputs by 1e-4 to 1e-3, below your tolerance. A causal layer computes its earlier "
                "outputs from exactly the same numbers, so compare tightly (`torch.allclose` with "
                "its defaults, or atol=1e-6).",
                _loose_tolerance,
            ),
        ],
        hints=[
            "The layer leaks when the output at some position t changes although only positions "
            "after t changed. Try it: change the input after t, run the layer again, compare.",
            "Do it for every t from 0 to L - 2: change every position after t (`x.clone()`, then "
            "replace `x[:, t + 1:]` with new random values), and compare the outputs at positions "
            "0..t with the original ones.",
            "Replace, do not shuffle: attention without positions does not notice a new order. "
            "And compare tightly: `torch.allclose(a, b)`; a causal layer gives exactly the same "
            "earlier outputs.",
            "Return a bool: True when some comparison fails (the layer leaks), False otherwise. "
            "Never modify `x` itself.",
        ],
    )
)
