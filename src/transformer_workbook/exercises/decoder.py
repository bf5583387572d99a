"""Chapter 5 exercises: teacher forcing's shifted input, the decoder layer, and
the masks of the three model families.

Each known mistake is a small implementation of that mistake. The decoder layer
is a class exercise (the shared helper :func:`.modules.build_and_call` builds
the learner's class, loads the case's weights by parameter name and calls
``forward``); the family exercise is judged by its effect: the check runs
models built from the package's parts with the learner's masks and compares
their outputs at the real tokens.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from .. import decoder as dec
from .. import model as mdl
from ..encoder import Encoder
from ..masks import as_head_mask, causal_mask, combine_masks, padding_mask
from .api import register
from .core import Case, randn
from .judging import Exercise, Mistake
from .modules import ModuleCase, build_and_call, load_params, reference_params

CHAPTER = "05_decoder"


# ---------------------------------------------------------------------------
# decoder.shift_right
# ---------------------------------------------------------------------------


def shift_right_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def tokens(B, L, pad_after=None):
        t = torch.randint(4, 30, (B, L), generator=g)
        if pad_after is not None:  # right padding (id 0) after each row's length
            t = t.masked_fill(~padding_mask(torch.tensor(pad_after), L), 0)
        return t

    return [
        Case("B=2, L=5, start_id=1", (tokens(2, 5), 1)),
        Case("B=1, L=3, start_id=0", (tokens(1, 3), 0)),
        Case("right-padded targets (pad id 0): B=3, L=7, start_id=2", (tokens(3, 7, [7, 4, 2]), 2)),
        Case("one position: B=2, L=1, start_id=5", (tokens(2, 1), 5)),
        Case("B=4, L=2, start_id=3", (tokens(4, 2), 3)),
        Case("B=3, L=6, start_id=1", (tokens(3, 6), 1)),
    ]


def _shifted_left(tgt, start_id):
    start = torch.full_like(tgt[:, :1], start_id)
    return torch.cat([tgt[:, 1:], start], dim=1)


def _dropped_the_first(tgt, start_id):
    start = torch.full_like(tgt[:, :1], start_id)
    return torch.cat([start, tgt[:, 1:]], dim=1)  # keeps the last token, drops the first


def _no_start_token(tgt, start_id):
    return tgt[:, :-1]


def _rolled(tgt, start_id):
    return torch.roll(tgt, shifts=1, dims=1)  # the last token wraps around to the front


def _kept_everything(tgt, start_id):
    start = torch.full_like(tgt[:, :1], start_id)
    return torch.cat([start, tgt], dim=1)  # (B, L + 1)


def _start_id_one(tgt, start_id):
    start = torch.ones_like(tgt[:, :1])
    return torch.cat([start, tgt[:, :-1]], dim=1)


def _along_the_batch(tgt, start_id):
    start = torch.full_like(tgt[:1], start_id)  # a row of start tokens
    return torch.cat([start, tgt[:-1]], dim=0)


register(
    Exercise(
        id="decoder.shift_right",
        title="The decoder's input for teacher forcing",
        target="shift_right",
        chapter=CHAPTER,
        reference=mdl.shift_right,
        make_cases=shift_right_cases,
        points=2,
        notes={"exception": "The cases differ in the batch size, the length (L = 1 included) and "
                            "start_id."},
        mistakes=[
            Mistake(
                "shifted-left",
                "You shift the target left (drop its first token and append the start token). "
                "The decoder's input is shifted RIGHT: the start token first, then the target "
                "without its last token, so that position i holds token i - 1.",
                _shifted_left,
            ),
            Mistake(
                "dropped-the-wrong-end",
                "The start token is in front, but you drop the target's first token and keep its "
                "last. Drop the last one: `tgt[:, :-1]`. Position i of the input must hold token "
                "i - 1 of the target; the last token is never an input, only predicted.",
                _dropped_the_first,
            ),
            Mistake(
                "no-start-token",
                "You return the target without its last token, but no start token in front: "
                "prepend a column of `start_id`, so the result keeps the target's length "
                "(B, L) and position 0 holds the start token.",
                _no_start_token,
            ),
            Mistake(
                "rolled",
                "`torch.roll` wraps the last token around to position 0: the decoder would start "
                "from the answer's last token instead of the start token. Put `start_id` in "
                "column 0 (after rolling, or build the result with `torch.cat`).",
                _rolled,
            ),
            Mistake(
                "kept-the-last-token",
                "Your result is one position longer than the target: you prepend the start token "
                "but keep every token. Drop the last one, `tgt[:, :-1]`, so input and target have "
                "the same length and line up position by position.",
                _kept_everything,
            ),
            Mistake(
                "start-id-ignored",
                "The start token is always 1: use the `start_id` argument "
                "(`torch.full_like(tgt[:, :1], start_id)`).",
                _start_id_one,
            ),
            Mistake(
                "shifted-along-the-batch",
                "You shift along dimension 0, the batch: each sequence gets the previous "
                "sequence's tokens. The sequences are (B, L), batch first: shift along dim 1.",
                _along_the_batch,
            ),
        ],
        hints=[
            "The result has the target's shape (B, L): column 0 is the start token, column i "
            "is the target's column i - 1.",
            "`tgt[:, :-1]` is the target without its last token; `torch.full_like(tgt[:, :1], "
            "start_id)` is a (B, 1) column of start tokens with the target's dtype.",
            "`torch.cat([start, tgt[:, :-1]], dim=1)`.",
        ],
    )
)


# ---------------------------------------------------------------------------
# decoder.DecoderLayer
# ---------------------------------------------------------------------------


def _layer_params(init: dict, g: torch.Generator, random_norms: bool) -> dict:
    """Weights for every parameter of ``DecoderLayer(**init)``: matrices N(0, 1/fan_in),
    biases N(0, 0.3^2); the norms' gains 1 + N(0, 0.3^2) and biases N(0, 0.3^2) when
    ``random_norms``, else 1 and 0 (as at initialisation)."""
    params = reference_params(dec.DecoderLayer, init, g,
                              scale=lambda name, p: 1 / math.sqrt(p.shape[-1]) if p.dim() >= 2 else 0.3)
    for name in params:
        if name.startswith("norm"):
            if not random_norms:
                params[name] = torch.ones_like(params[name]) if name.endswith("weight") else \
                    torch.zeros_like(params[name])
            elif name.endswith("weight"):
                params[name] = params[name] + 1.0
    return params


def decoder_layer_cases(seed: int) -> list[ModuleCase]:
    g = torch.Generator().manual_seed(seed)

    def case(name, d_model, n_heads, d_ff, B, Lt, Ls, norm_first=False, tgt_lengths=None,
             src_lengths=None, random_norms=False, dropout=None):
        init = {"d_model": d_model, "n_heads": n_heads, "d_ff": d_ff, "norm_first": norm_first}
        if dropout is not None:
            init["dropout"] = dropout
        x, memory = randn(g, B, Lt, d_model, scale=2.0), randn(g, B, Ls, d_model, scale=2.0)
        tgt_keep = None if tgt_lengths is None else padding_mask(torch.tensor(tgt_lengths), Lt)
        kwargs = {"self_mask": combine_masks(tgt_keep, causal_mask(Lt)) if tgt_keep is not None
                  else causal_mask(Lt)}
        tags = set()
        if src_lengths is not None:
            kwargs["memory_mask"] = combine_masks(padding_mask(torch.tensor(src_lengths), Ls))
            tags.add("memory-mask")
        if random_norms:
            tags.add("random-norms")
        if norm_first:
            tags.add("pre")
        return ModuleCase(name, args=(x, memory), kwargs=kwargs, tags=frozenset(tags), init=init,
                          params=_layer_params(init, g, random_norms), arg_names=("x", "memory"))

    return [
        case("post-LN, causal (Lt, Lt) mask: d_model=8, 2 heads, d_ff=16, B=2, Lt=4, Ls=6",
             8, 2, 16, 2, 4, 6),
        case("post-LN, causal + padding masks, learned norms: d_model=12, 3 heads, d_ff=24, B=3, "
             "Lt=5, Ls=3", 12, 3, 24, 3, 5, 3, tgt_lengths=[5, 3, 4], src_lengths=[3, 1, 2],
             random_norms=True),
        case("pre-LN, causal mask: d_model=8, 4 heads, d_ff=8, B=2, Lt=3, Ls=5", 8, 4, 8, 2, 3, 5,
             norm_first=True),
        case("pre-LN, causal + memory padding masks, learned norms: d_model=6, 1 head, d_ff=12, "
             "B=2, Lt=6, Ls=2", 6, 1, 12, 2, 6, 2, norm_first=True, src_lengths=[2, 1],
             random_norms=True),
        case("post-LN built with dropout=0.1 (the check runs it in eval mode): d_model=16, 4 heads, "
             "d_ff=32, B=2, Lt=2, Ls=7", 16, 4, 32, 2, 2, 7, dropout=0.1),
        case("post-LN, causal + memory padding masks, learned norms: d_model=10, 5 heads, d_ff=20, "
             "B=2, Lt=5, Ls=4", 10, 5, 20, 2, 5, 4, src_lengths=[4, 2], random_norms=True),
        case("pre-LN, Lt = Ls, learned norms: d_model=12, 2 heads, d_ff=16, B=3, Lt=4, Ls=4",
             12, 2, 16, 3, 4, 4, norm_first=True, random_norms=True),
        case("pre-LN, Lt = Ls: d_model=4, 2 heads, d_ff=6, B=1, Lt=3, Ls=3", 4, 2, 6, 1, 3, 3,
             norm_first=True),
    ]


class _DecoderLayerSteps(dec.DecoderLayer):
    """The package's layer, with its sublayers as methods the mistakes reuse."""

    def self_block(self, h, mask):
        return self.self_attn(h, h, h, mask)[0]  # (B, Lt, d_model)

    def cross_block(self, h, memory, mask):
        return self.cross_attn(h, memory, memory, mask)[0]  # (B, Lt, d_model)

    def sublayers(self, x, steps):
        """Apply ``steps`` (sublayer, norm) in order, post-LN or pre-LN."""
        for sublayer, norm in steps:
            x = x + sublayer(norm(x)) if self.norm_first else norm(x + sublayer(x))
        return x


class _NoCausalMask(_DecoderLayerSteps):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        return dec.DecoderLayer.forward(self, x, memory, None, memory_mask)


class _CrossAttendsToTheDecoder(_DecoderLayerSteps):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        return self.sublayers(x, [
            (lambda h: self.self_block(h, self_mask), self.norm1),
            (lambda h: self.cross_attn(h, h, h)[0], self.norm2),  # keys and values from the decoder
            (self.feed_forward, self.norm3),
        ])


class _MemoryMaskIgnored(_DecoderLayerSteps):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        return dec.DecoderLayer.forward(self, x, memory, self_mask, None)


class _CrossBeforeSelf(_DecoderLayerSteps):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        return self.sublayers(x, [
            (lambda h: self.cross_block(h, memory, memory_mask), self.norm1),
            (lambda h: self.self_block(h, self_mask), self.norm2),
            (self.feed_forward, self.norm3),
        ])


class _FeedForwardBeforeCross(_DecoderLayerSteps):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        return self.sublayers(x, [
            (lambda h: self.self_block(h, self_mask), self.norm1),
            (self.feed_forward, self.norm2),
            (lambda h: self.cross_block(h, memory, memory_mask), self.norm3),
        ])


class _AlwaysPostLN(_DecoderLayerSteps):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        x = self.norm1(x + self.self_block(x, self_mask))
        x = self.norm2(x + self.cross_block(x, memory, memory_mask))
        return self.norm3(x + self.feed_forward(x))


class _NoResidual(_DecoderLayerSteps):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        steps = [
            (lambda h: self.self_block(h, self_mask), self.norm1),
            (lambda h: self.cross_block(h, memory, memory_mask), self.norm2),
            (self.feed_forward, self.norm3),
        ]
        for sublayer, norm in steps:
            x = sublayer(norm(x)) if self.norm_first else norm(sublayer(x))
        return x


#: Cases on which the sublayers' norms differ (learned gains and biases): there a wrong
#: order depends on which norm the learner pairs with which sublayer, so those mistakes
#: are judged on the other cases (norms as at initialisation, all alike).
_NORMS_DIFFER = frozenset({"random-norms"})

register(
    Exercise(
        id="decoder.DecoderLayer",
        title="The decoder layer",
        target="DecoderLayer",
        chapter=CHAPTER,
        reference=dec.DecoderLayer,
        make_cases=decoder_layer_cases,
        call=build_and_call,
        points=4,
        forbidden=("torch.nn.TransformerDecoderLayer", "torch.nn.TransformerDecoder",
                   "torch.nn.Transformer"),
        forbidden_reason="Build the layer from MultiHeadAttention, FeedForward and LayerNorm.",
        notes={
            "exception": "The cases differ in d_model, n_heads, d_ff, the batch, the target and "
                         "source lengths (Lt and Ls), norm_first and the masks: self_mask is "
                         "(Lt, Lt) or (B, 1, Lt, Lt), memory_mask None or (B, 1, 1, Ls). "
                         "MultiHeadAttention returns a tuple (output, weights).",
            "nondeterministic": "Dropout must follow the module's mode: use `nn.Dropout` layers "
                                "(or `F.dropout(..., training=self.training)`).",
        },
        mistakes=[
            Mistake(
                "no-causal-mask",
                "Your masked self-attention ignores self_mask, so every target position sees the "
                "tokens after it, the very tokens it must predict. Pass it on: "
                "`self.self_attn(h, h, h, self_mask)`.",
                _NoCausalMask,
            ),
            Mistake(
                "cross-attention-reads-the-decoder",
                "Your cross-attention takes its keys and values from the decoder (`x`), so it is "
                "a second self-attention and never looks at the source. Queries come from the "
                "decoder, keys and values from the encoder's output: "
                "`self.cross_attn(h, memory, memory, memory_mask)`.",
                _CrossAttendsToTheDecoder,
                ignore_tags=frozenset({"memory-mask"}),  # memory_mask does not fit (Lt, Lt) scores
            ),
            Mistake(
                "memory-mask-ignored",
                "Your cross-attention ignores memory_mask, so the target attends to the source's "
                "padding. Pass it on: `self.cross_attn(h, memory, memory, memory_mask)`.",
                _MemoryMaskIgnored,
            ),
            Mistake(
                "cross-before-self",
                "Your sublayers are in the wrong order: cross-attention comes second. The paper's "
                "decoder layer is masked self-attention, then cross-attention to the encoder, "
                "then the feed-forward network (norm1, norm2, norm3 in that order).",
                _CrossBeforeSelf,
                ignore_tags=_NORMS_DIFFER,
            ),
            Mistake(
                "feed-forward-before-cross",
                "Your sublayers are in the wrong order: the feed-forward network comes last, "
                "after cross-attention (self-attention, cross-attention, feed-forward).",
                _FeedForwardBeforeCross,
                ignore_tags=_NORMS_DIFFER,
            ),
            Mistake(
                "post-ln-when-pre-ln-asked",
                "Your layer is always post-LN: with norm_first=True each sublayer reads "
                "`norm(x)` and its output is added to x, `x = x + sublayer(norm(x))`.",
                _AlwaysPostLN,
            ),
            Mistake(
                "no-residual",
                "There are no residual connections: each sublayer's output replaces x instead of "
                "being added to it (`norm(x + sublayer(x))`, or `x + sublayer(norm(x))` in "
                "pre-LN).",
                _NoResidual,
            ),
        ],
        hints=[
            "__init__: `self_attn` and `cross_attn` (two MultiHeadAttention(d_model, n_heads)), "
            "`feed_forward` (FeedForward(d_model, d_ff, dropout)), `norm1`, `norm2`, `norm3` "
            "(LayerNorm(d_model)) and `self.dropout = nn.Dropout(dropout)`.",
            "Three sublayers in this order: masked self-attention `self_attn(h, h, h, self_mask)`, "
            "cross-attention `cross_attn(h, memory, memory, memory_mask)`, feed-forward.",
            "Post-LN: `x = norm(x + sublayer(x))`; pre-LN: `x = x + sublayer(norm(x))`, with "
            "norm1, norm2, norm3 for the three sublayers in order.",
        ],
    )
)


# ---------------------------------------------------------------------------
# decoder.family_masks (not a transcription: which mask each model family needs)
# ---------------------------------------------------------------------------

#: The three families, as the exercise names them.
FAMILIES = ("encoder-only", "decoder-only", "encoder-decoder")


def family_masks(family: str, keep: torch.Tensor, src_keep: torch.Tensor | None = None):
    """The masks (True = may attend) of a model family's attention sublayers.

    Returns ``(encoder_mask, decoder_mask, cross_mask)``: each broadcastable to
    its sublayer's ``(B, H, Lq, Lk)`` scores, or None where the family has no
    such sublayer.
    """
    L = keep.size(1)
    if family == "encoder-only":  # BERT: every token sees every real token
        return combine_masks(keep), None, None
    if family == "decoder-only":  # GPT: the past (and itself), real tokens only
        return None, combine_masks(keep, causal_mask(L, keep.device)), None
    if family == "encoder-decoder":  # T5, the paper: the source both ways, the target causally
        source = combine_masks(src_keep)  # (B, 1, 1, Ls)
        return source, combine_masks(keep, causal_mask(L, keep.device)), source
    raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")


@dataclasses.dataclass
class FamilyCase(ModuleCase):
    """A case of :func:`family_masks`: its arguments, and the model the check runs the masks in.

    ``args`` is ``(family, keep, src_keep)``; ``init`` the sizes of the check's
    model; ``params`` its weights; ``kwargs`` the embeddings it reads (``x``
    for the stack that reads ``keep``'s sequence, ``src_x`` for the source).
    """

    def describe(self) -> str:
        family, keep, src_keep = self.args
        parts = [f"keep {tuple(keep.shape)} (lengths {keep.sum(1).tolist()})"]
        if src_keep is not None:
            parts.append(f"src_keep {tuple(src_keep.shape)} (lengths {src_keep.sum(1).tolist()})")
        return f"{self.name}: family_masks({family!r}, {', '.join(parts)})"


def _family_model(family: str, init: dict) -> nn.ModuleDict:
    """The check's model: an Encoder and/or a Decoder of the package, as the family has them."""
    d, h, n, f = init["d_model"], init["n_heads"], init["n_layers"], init["d_ff"]
    parts = {}
    if family in ("encoder-only", "encoder-decoder"):
        parts["encoder"] = Encoder(d, h, n, f)
    if family in ("decoder-only", "encoder-decoder"):
        parts["decoder"] = dec.Decoder(d, h, n, f, cross_attention=family == "encoder-decoder")
    return nn.ModuleDict(parts)


def family_cases(seed: int) -> list[FamilyCase]:
    g = torch.Generator().manual_seed(seed)
    init = {"d_model": 8, "n_heads": 2, "n_layers": 2, "d_ff": 16}

    def case(name, family, lengths, L, src_lengths=None, Ls=None):
        B = len(lengths)
        keep = padding_mask(torch.tensor(lengths), L)
        src_keep = None if src_lengths is None else padding_mask(torch.tensor(src_lengths), Ls)
        kwargs = {"x": randn(g, B, L, init["d_model"], scale=2.0)}
        if src_keep is not None:
            kwargs["src_x"] = randn(g, B, Ls, init["d_model"], scale=2.0)
        params = reference_params(lambda **_: _family_model(family, init), {}, g)
        for name_, value in params.items():
            if ".norm" in name_ and name_.endswith("weight"):
                params[name_] = value + 1.0
        return FamilyCase(name, args=(family, keep, src_keep), kwargs=kwargs, init=dict(init),
                          params=params, tags=frozenset({family}))

    return [
        case("encoder-only, B=2, L=5, one sequence padded", "encoder-only", [5, 3], 5),
        case("encoder-only, B=3, L=4, no padding", "encoder-only", [4, 4, 4], 4),
        case("decoder-only, B=2, L=6, one sequence padded", "decoder-only", [6, 4], 6),
        case("decoder-only, B=1, L=3, no padding", "decoder-only", [3], 3),
        case("encoder-decoder, B=2, Ls=5, Lt=4", "encoder-decoder", [4, 3], 4, [5, 2], 5),
        case("encoder-decoder, B=3, Ls=3, Lt=6", "encoder-decoder", [6, 6, 2], 6, [3, 1, 2], 3),
        case("encoder-decoder, B=2, Ls=6, Lt=6", "encoder-decoder", [5, 6], 6, [6, 4], 6),
    ]


def _check_mask(mask, what: str, B: int, Lq: int, Lk: int):
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"{what} must be a bool tensor (True = may attend) or None; got "
                        f"{type(mask).__name__ if not isinstance(mask, torch.Tensor) else mask.dtype}")
    if not 2 <= mask.dim() <= 4:
        raise ValueError(f"{what} has shape {tuple(mask.shape)}: give it 2 to 4 dimensions, "
                         f"e.g. (B, 1, 1, Lk) for a padding mask")
    head = as_head_mask(mask)  # (Lq, Lk) shared; (B, Lq, Lk) per sequence; 4-D as it is
    try:
        shape = torch.broadcast_shapes(head.shape, (B, 1, Lq, Lk))
    except RuntimeError:
        shape = None
    if shape != (B, head.shape[1], Lq, Lk):
        raise ValueError(
            f"{what} has shape {tuple(mask.shape)}, which does not broadcast to the scores "
            f"(B={B}, H, Lq={Lq}, Lk={Lk}): a (B, Lk) padding mask must become (B, 1, 1, Lk) "
            f"(`keep[:, None, None, :]`)"
        )
    return mask


def run_family_masks(fn: object, case: FamilyCase) -> torch.Tensor:
    """``Exercise.call`` for :func:`family_masks`: run the family's model with the learner's masks.

    Returns the model's output at the real tokens of ``keep``'s sequence
    (zeros at its padding, where nothing is used), ``(B, L, d_model)``.
    """
    family, keep, src_keep = case.args
    masks = fn(family, keep, src_keep)
    if not isinstance(masks, tuple) or len(masks) != 3:
        raise TypeError("family_masks must return a tuple of three: (encoder_mask, decoder_mask, "
                        "cross_mask), None for a sublayer the family does not have")
    encoder_mask, decoder_mask, cross_mask = masks
    has = {"encoder_mask": family != "decoder-only", "decoder_mask": family != "encoder-only",
           "cross_mask": family == "encoder-decoder"}
    for what, mask in zip(has, masks, strict=True):
        if mask is not None and not has[what]:
            raise ValueError(f"an {family} model has no sublayer for {what}: return None for it")
    model = _family_model(family, case.init)
    load_params(model, case.params)
    model.eval()
    B, L = keep.shape
    x = case.kwargs["x"]
    with torch.no_grad():
        if family == "encoder-only":
            out = model["encoder"](x, _check_mask(encoder_mask, "encoder_mask", B, L, L))
        elif family == "decoder-only":
            out = model["decoder"](x, self_mask=_check_mask(decoder_mask, "decoder_mask", B, L, L))
        else:
            Ls = src_keep.size(1)
            memory = model["encoder"](case.kwargs["src_x"],
                                      _check_mask(encoder_mask, "encoder_mask", B, Ls, Ls))
            out = model["decoder"](x, memory, _check_mask(decoder_mask, "decoder_mask", B, L, L),
                                   _check_mask(cross_mask, "cross_mask", B, L, Ls))
    return out * keep[..., None]  # (B, L, d_model): the real tokens only


def _with(encoder=None, decoder=None, cross=None):
    """family_masks with some masks built another way: each override maps
    ``(family, keep, src_keep, reference masks)`` to that mask."""

    def masks(family, keep, src_keep=None):
        ref = family_masks(family, keep, src_keep)
        out = list(ref)
        for i, change in enumerate((encoder, decoder, cross)):
            if change is not None and ref[i] is not None:
                out[i] = change(family, keep, src_keep, ref[i])
        return tuple(out)

    return masks


def _padding_only(family, keep, src_keep, mask):
    return combine_masks(keep)  # no causal mask


def _causal_encoder(family, keep, src_keep, mask):
    k = keep if family == "encoder-only" else src_keep
    return combine_masks(k, causal_mask(k.size(1)))


def _causal_cross(family, keep, src_keep, mask):
    return combine_masks(src_keep, torch.ones(keep.size(1), src_keep.size(1), dtype=torch.bool).tril())


def _none(family, keep, src_keep, mask):
    return None


def _inverted(family, keep, src_keep, mask):
    return ~mask


register(
    Exercise(
        id="decoder.family_masks",
        title="Three families, three sets of masks",
        target="family_masks",
        chapter=CHAPTER,
        reference=family_masks,
        make_cases=family_cases,
        call=run_family_masks,
        points=3,
        notes={
            "exception": "The cases differ in the family, the batch size and the lengths. Return "
                         "(encoder_mask, decoder_mask, cross_mask), None for a sublayer the family "
                         "does not have; each mask bool, broadcastable to its sublayer's "
                         "(B, H, Lq, Lk) scores.",
        },
        mistakes=[
            Mistake(
                "decoder-not-causal",
                "Your decoder's self-attention mask hides only the padding, so every target "
                "position sees the tokens after it: the model would learn to copy the next "
                "token. A decoder (decoder-only, and the decoder of an encoder-decoder) needs the "
                "causal mask, combined with the padding mask.",
                _with(decoder=_padding_only),
            ),
            Mistake(
                "causal-everywhere",
                "You give the encoder a causal mask too. An encoder reads the whole input at once "
                "(BERT is bidirectional; the paper's encoder sees the whole source): only the "
                "padding is hidden from it, `keep[:, None, None, :]`.",
                _with(encoder=_causal_encoder),
            ),
            Mistake(
                "cross-attention-causal",
                "Your cross-attention mask is causal: target position i then sees only the "
                "first i + 1 source tokens. The source is complete before decoding starts, so "
                "every target position may attend to every real source token: the source's "
                "padding mask only.",
                _with(cross=_causal_cross),
            ),
            Mistake(
                "source-padding-not-hidden-from-the-decoder",
                "Your cross-attention attends to the source's padding: its mask must hide the "
                "padded source tokens, `src_keep[:, None, None, :]`.",
                _with(cross=_none),
            ),
            Mistake(
                "encoder-padding-not-hidden",
                "Your encoder attends to padding: its mask must hide the padded tokens as keys, "
                "`keep[:, None, None, :]` ((B, 1, 1, L); a mask over the queries, (B, 1, L, 1), "
                "does not hide them).",
                _with(encoder=_none),
            ),
            Mistake(
                "pytorch-polarity",
                "Your masks are inverted: True marks what is blocked, PyTorch's convention for "
                "nn.Transformer and nn.MultiheadAttention. The course's masks, like "
                "F.scaled_dot_product_attention's, are True where attending is allowed.",
                _with(encoder=_inverted, decoder=_inverted, cross=_inverted),
            ),
        ],
        hints=[
            "Which attention sublayers does each family have? Encoder-only: self-attention in the "
            "encoder. Decoder-only: masked self-attention. Encoder-decoder: both, plus "
            "cross-attention from the decoder to the encoder's output.",
            "Only a decoder's self-attention is causal: it must not see the tokens it predicts. "
            "Every sublayer hides padded keys.",
            "A padding mask `keep` (B, L) becomes `keep[:, None, None, :]`, (B, 1, 1, L); "
            "combined with the causal `(L, L)` lower triangle by `&`: (B, 1, L, L).",
        ],
    )
)
