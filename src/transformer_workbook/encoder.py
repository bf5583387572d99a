"""Chapter 4: the encoder.

An encoder layer (Vaswani et al., 2017, section 3.1) is two sublayers, each
wrapped in a residual connection and a layer normalization:

1. multi-head self-attention (Chapter 2's :class:`MultiHeadAttention`): every
   position gathers information from every other;
2. a position-wise feed-forward network (:class:`FeedForward`): the same
   two-layer MLP applied to every position separately.

Where the normalization goes is a choice:

- **post-LN** (the paper, ``norm_first=False``): ``x = LayerNorm(x + Sublayer(x))``;
- **pre-LN** (GPT-2 and most models since, ``norm_first=True``):
  ``x = x + Sublayer(LayerNorm(x))``. The residual stream is then never
  normalized inside the stack, so the stack needs a final LayerNorm
  (:class:`Encoder` adds one by default when ``norm_first=True``).

The parts are interchangeable: ``EncoderLayer(..., norm=RMSNorm,
feed_forward=SwiGLU, norm_first=True)`` is the block of LLaMA-style models,
built from the same class.

Also here: :class:`InputEmbedding` (token embedding times ``sqrt(d_model)``
plus Chapter 3's positional encoding) and :func:`record_attention`, which
collects every layer's attention weights for heatmaps.

Shapes are batch-first: ``(B, L, d_model)``. Masks are bool, **True = may
attend**, broadcastable to ``(B, H, L, L)`` (Chapter 6: :mod:`transformer_workbook.masks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .multihead import MultiHeadAttention
from .positional import sinusoidal_encoding

__all__ = [
    "LayerNorm",
    "RMSNorm",
    "FeedForward",
    "SwiGLU",
    "InputEmbedding",
    "EncoderLayer",
    "Encoder",
    "record_attention",
]

# What the layers accept as their normalization and feed-forward parts: a class
# (or any callable) building the module, e.g. LayerNorm / RMSNorm, FeedForward / SwiGLU.
NormFactory = Callable[[int], nn.Module]  # d_model -> module
FeedForwardFactory = Callable[[int, int, float], nn.Module]  # (d_model, d_ff, dropout) -> module


# ---------------------------------------------------------------------------
# Normalization
# ---------------------------------------------------------------------------


class LayerNorm(nn.Module):
    """Layer normalization (Ba et al., 2016), over the last dimension.

    .. math::

        \\mathrm{LayerNorm}(x) = \\gamma \\odot \\frac{x - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} + \\beta,
        \\qquad \\mu = \\frac{1}{d}\\sum_i x_i, \\quad \\sigma^2 = \\frac{1}{d}\\sum_i (x_i - \\mu)^2

    Each position's vector is normalized on its own (no statistics across
    the batch or the sequence, unlike batch norm), to mean 0 and variance 1,
    then scaled by a learned gain ``weight`` (gamma, initially 1) and shifted
    by a learned ``bias`` (beta, initially 0).

    Two details decide whether it equals ``nn.LayerNorm``: the variance is
    the *biased* one (divide by ``d``, not ``d - 1``), and ``eps`` is added
    *inside* the square root. With the unbiased variance, ``[1, 0, 0, 0]``
    becomes ``[1.5, -0.5, -0.5, -0.5]`` instead of ``[1.732, -0.577, ...]``.

    Written with tensor operations, the formula reads::

        mean = x.mean(dim=-1, keepdim=True)                   # (..., 1)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)    # (..., 1), biased
        y = (x - mean) / torch.sqrt(var + eps) * weight + bias

    (Chapter 4 builds it that way and checks it equals this module.) The
    module computes exactly that with ``F.layer_norm``, PyTorch's fused
    kernel: on a CPU the operations above take about ten times as long,
    forward and backward (8 ms against 0.7 ms for a ``(128, 30, 64)`` batch),
    because the backward pass of each broadcast ``(..., 1)`` operation is
    slow, and a model calls LayerNorm a dozen times per step.

    Args:
        d_model: size of the last dimension.
        eps: added to the variance, so a constant vector does not divide by 0.

    Shape: ``(..., d_model)`` in and out.
    """

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.d_model = d_model
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))  # gain gamma, (d_model,)
        self.bias = nn.Parameter(torch.zeros(d_model))  # shift beta, (d_model,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (x - mean) / sqrt(biased var + eps) * weight + bias, over the last dimension, fused
        return F.layer_norm(x, (self.d_model,), self.weight, self.bias, self.eps)  # (..., d_model)

    def extra_repr(self) -> str:
        return f"{self.d_model}, eps={self.eps}"


class RMSNorm(nn.Module):
    """Root-mean-square normalization (Zhang and Sennrich, 2019), as in LLaMA.

    .. math::

        \\mathrm{RMSNorm}(x) = \\gamma \\odot \\frac{x}{\\sqrt{\\frac{1}{d}\\sum_i x_i^2 + \\epsilon}}

    LayerNorm without the mean: no centring and no bias, only a rescaling to
    root-mean-square 1 and a learned gain ``weight`` (initially 1). Cheaper,
    and in practice as good. (Unlike :class:`LayerNorm`, the formula written
    out is not slower on a CPU than PyTorch's ``F.rms_norm``, so it stays.)

    Args:
        d_model: size of the last dimension.
        eps: added to the mean square. ``None`` (the default, like
            ``torch.nn.RMSNorm``) uses ``torch.finfo(x.dtype).eps``; LLaMA
            uses 1e-6 or 1e-5.

    Shape: ``(..., d_model)`` in and out. Equals ``torch.nn.RMSNorm(d_model, eps)``.
    """

    def __init__(self, d_model: int, eps: float | None = None) -> None:
        super().__init__()
        self.d_model = d_model
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))  # gain gamma, (d_model,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = torch.finfo(x.dtype).eps if self.eps is None else self.eps
        mean_square = x.pow(2).mean(dim=-1, keepdim=True)  # (..., 1)
        return x * torch.rsqrt(mean_square + eps) * self.weight  # (..., d_model)

    def extra_repr(self) -> str:
        return f"{self.d_model}, eps={self.eps}"


# ---------------------------------------------------------------------------
# Feed-forward networks
# ---------------------------------------------------------------------------


class FeedForward(nn.Module):
    """The position-wise feed-forward network (section 3.3): ``FFN(x) = max(0, x W1 + b1) W2 + b2``.

    Two linear layers with a ReLU between, applied to every position on its
    own: ``d_model -> d_ff -> d_model`` (the paper: 512 -> 2048 -> 512).
    Dropout (as in ``nn.TransformerEncoderLayer``) acts on the hidden
    activations, in training mode only.

    Args:
        d_model: input and output size.
        d_ff: hidden size.
        dropout: dropout on the hidden activations.
        activation: ``"relu"`` (the paper) or ``"gelu"`` (BERT, GPT).

    Shape: ``(..., d_model)`` in and out.
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "relu") -> None:
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {activation!r}")
        self.activation = activation
        self.linear1 = nn.Linear(d_model, d_ff)  # W1, b1
        self.linear2 = nn.Linear(d_ff, d_model)  # W2, b2
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear1(x)  # (..., d_ff)
        h = F.relu(h) if self.activation == "relu" else F.gelu(h)  # (..., d_ff)
        return self.linear2(self.dropout(h))  # (..., d_model)


class SwiGLU(nn.Module):
    """The gated feed-forward network of LLaMA-style models (Shazeer, 2020).

    .. math::

        \\mathrm{SwiGLU}(x) = \\big(\\mathrm{SiLU}(x W_{gate}) \\odot x W_{up}\\big) W_{down},
        \\qquad \\mathrm{SiLU}(z) = z\\,\\sigma(z)

    Three matrices instead of two: a *gate* branch through SiLU multiplies,
    element by element, a linear *up* branch, and the product is projected
    back *down*. No biases (as in LLaMA). With ``d_ff = 8/3 d_model`` it has
    the parameters of a ReLU FFN with ``d_ff = 4 d_model``.

    Args:
        d_model: input and output size.
        d_ff: hidden size (of each of the two branches).
        dropout: dropout on the gated hidden activations (LLaMA uses none).
        bias: whether the three projections have biases.

    Shape: ``(..., d_model)`` in and out.
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, bias: bool = False) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(d_model, d_ff, bias=bias)  # W_gate (LLaMA's w1)
        self.up_proj = nn.Linear(d_model, d_ff, bias=bias)  # W_up (w3)
        self.down_proj = nn.Linear(d_ff, d_model, bias=bias)  # W_down (w2)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.gate_proj(x)) * self.up_proj(x)  # (..., d_ff)
        return self.down_proj(self.dropout(h))  # (..., d_model)


# ---------------------------------------------------------------------------
# Embedding
# ---------------------------------------------------------------------------


class InputEmbedding(nn.Module):
    """Token ids -> the vectors a Transformer stack reads (sections 3.4 and 3.5).

    ``x = Embedding(tokens) * sqrt(d_model) + PE[offset : offset + L]``, then
    dropout. The token table is multiplied by ``sqrt(d_model)``, as in the
    paper; it is initialized from N(0, 1/d_model), so the scaled embeddings
    have about unit variance, like the positional encoding they are added to.
    ``PE`` is Chapter 3's sinusoidal table
    (:func:`~transformer_workbook.positional.sinusoidal_encoding`), a
    non-persistent buffer.

    ``offset`` is the position of the first token: 0 for a whole sequence,
    and the number of positions already cached when a decoder is fed one new
    token at a time.

    Args:
        vocab_size: number of token ids.
        d_model: embedding size.
        max_len: the longest sequence (the positional table's rows).
        dropout: dropout on the sum (the paper: 0.1).

    Attributes:
        token: the ``nn.Embedding(vocab_size, d_model)``; its ``weight`` is the
            matrix a model may share with its output projection.

    Shape: ``(B, L)`` int64 ids -> ``(B, L, d_model)``.
    """

    pe: torch.Tensor

    def __init__(self, vocab_size: int, d_model: int, max_len: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        self.d_model = d_model
        self.max_len = max_len
        self.token = nn.Embedding(vocab_size, d_model)  # (vocab_size, d_model) table
        nn.init.normal_(self.token.weight, std=d_model**-0.5)
        self.register_buffer("pe", sinusoidal_encoding(max_len, d_model), persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        L = tokens.size(-1)
        if offset + L > self.max_len:
            raise ValueError(
                f"positions {offset}..{offset + L - 1} go past max_len={self.max_len}: build the "
                f"model with a larger max_len"
            )
        x = self.token(tokens) * math.sqrt(self.d_model)  # (B, L, d_model)
        x = x + self.pe[offset : offset + L]  # (B, L, d_model) + (L, d_model)
        return self.dropout(x)  # (B, L, d_model)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}"


# ---------------------------------------------------------------------------
# Encoder layer and stack
# ---------------------------------------------------------------------------


class EncoderLayer(nn.Module):
    """One encoder layer: self-attention and a feed-forward network, each with residual + norm.

    Post-LN (``norm_first=False``, the paper and ``nn.TransformerEncoderLayer``'s default)::

        x = norm1(x + dropout(self_attn(x, x, x, mask)))
        x = norm2(x + dropout(feed_forward(x)))

    Pre-LN (``norm_first=True``)::

        x = x + dropout(self_attn(norm1(x), ...))
        x = x + dropout(feed_forward(norm2(x)))

    The dropouts (all with the same ``dropout``) are the paper's "residual
    dropout" on each sublayer's output, plus PyTorch's dropout on the attention
    weights and on the feed-forward hidden layer.

    Args:
        d_model, n_heads, d_ff: sizes (the paper: 512, 8, 2048).
        dropout: dropout probability, training mode only.
        norm_first: pre-LN when True, post-LN when False.
        norm: builds each normalization from ``d_model`` (:class:`LayerNorm`,
            :class:`RMSNorm`, ``functools.partial(LayerNorm, eps=1e-6)``, ...).
        feed_forward: builds the feed-forward sublayer from
            ``(d_model, d_ff, dropout)`` (:class:`FeedForward`, :class:`SwiGLU`).
        residual: keep the residual connections (always, in a real model).
            ``residual=False`` drops the ``x +`` of both sublayers, so that
            Chapter 4 can measure what the residual connections do for a
            deep stack (:mod:`transformer_workbook.figures.encoder`).

    Attention weights: the layer uses the fused kernel and keeps no weights,
    unless ``keep_attention`` is True (see :func:`record_attention`); it then
    stores them in ``attention_weights["self_attn"]``, ``(B, H, L, L)``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        norm_first: bool = False,
        norm: NormFactory = LayerNorm,
        feed_forward: FeedForwardFactory = FeedForward,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.residual = residual
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.feed_forward = feed_forward(d_model, d_ff, dropout)
        self.norm1 = norm(d_model)
        self.norm2 = norm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.keep_attention = False  # True: store the attention weights (slower path)
        self.attention_weights: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``(B, L, d_model)`` -> ``(B, L, d_model)``.

        ``mask``: bool, True = may attend, broadcastable to ``(B, H, L, L)``.
        """
        if self.norm_first:
            x = self._add(x, self._self_attention(self.norm1(x), mask))  # x + SelfAttn(LN(x))
            x = self._add(x, self._feed_forward(self.norm2(x)))  # x + FFN(LN(x))
        else:
            x = self.norm1(self._add(x, self._self_attention(x, mask)))  # LN(x + SelfAttn(x))
            x = self.norm2(self._add(x, self._feed_forward(x)))  # LN(x + FFN(x))
        return x  # (B, L, d_model)

    def _add(self, x: torch.Tensor, sublayer_out: torch.Tensor) -> torch.Tensor:
        """The residual connection: ``x + sublayer_out`` (only ``sublayer_out`` when ``residual=False``)."""
        return x + sublayer_out if self.residual else sublayer_out

    def _self_attention(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        out, weights = self.self_attn(x, x, x, mask, need_weights=self.keep_attention)  # (B, L, d_model)
        if weights is not None:
            self.attention_weights["self_attn"] = weights  # (B, H, L, L)
        return self.dropout(out)

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.feed_forward(x))  # (B, L, d_model)

    @classmethod
    def from_torch(cls, layer: nn.TransformerEncoderLayer) -> EncoderLayer:
        """A copy of ``layer`` whose outputs equal ``layer``'s (batch-first, course masks).

        Supports the layers ``nn.TransformerEncoderLayer`` builds with its
        defaults (ReLU or GELU, biases, LayerNorm); the copy is batch-first
        whatever ``layer.self_attn.batch_first`` says.
        """
        self_attn = MultiHeadAttention.from_torch(layer.self_attn)
        d_model, n_heads = self_attn.d_model, self_attn.n_heads
        new = cls(
            d_model, n_heads, layer.linear1.out_features, dropout=layer.dropout.p,
            norm_first=layer.norm_first, feed_forward=_torch_feed_forward_factory(layer),
        )
        new.self_attn = self_attn
        _copy_feed_forward(new.feed_forward, layer)
        _copy_norms(new, layer, ("norm1", "norm2"))  # copies, with the layer's eps
        new.train(layer.training)
        return new.to(layer.linear1.weight.dtype)


class Encoder(nn.Module):
    """A stack of ``n_layers`` :class:`EncoderLayer` s, with an optional final normalization.

    Args:
        d_model, n_heads, n_layers, d_ff, dropout, norm_first, norm,
            feed_forward: as for :class:`EncoderLayer` (every layer the same).
        final_norm: whether to normalize the stack's output; the default,
            None, means ``norm_first`` (a pre-LN stack needs it, a post-LN
            stack already ends with one). ``nn.TransformerEncoder`` built by
            ``nn.Transformer`` has one in both cases.
        residual: passed to every layer (False only to show what the
            residual connections do).

    Shape: ``(B, L, d_model)`` in and out; ``mask`` as for :class:`EncoderLayer`.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_layers: int,
        d_ff: int,
        dropout: float = 0.0,
        norm_first: bool = False,
        final_norm: bool | None = None,
        norm: NormFactory = LayerNorm,
        feed_forward: FeedForwardFactory = FeedForward,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, n_heads, d_ff, dropout, norm_first, norm, feed_forward, residual)
            for _ in range(n_layers)
        )
        if final_norm is None:
            final_norm = norm_first
        self.norm = norm(d_model) if final_norm else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)  # (B, L, d_model)
        return x if self.norm is None else self.norm(x)  # (B, L, d_model)

    @classmethod
    def from_torch(cls, encoder: nn.TransformerEncoder) -> Encoder:
        """A copy of ``encoder`` (its layers and its final ``norm``, if any)."""
        layers = [EncoderLayer.from_torch(layer) for layer in encoder.layers]
        first = layers[0]
        new = cls(
            first.self_attn.d_model, first.self_attn.n_heads, len(layers),
            encoder.layers[0].linear1.out_features, norm_first=first.norm_first,
            final_norm=encoder.norm is not None,
        )
        new.layers = nn.ModuleList(layers)  # the copies replace the freshly built layers
        if encoder.norm is not None:
            new.norm = _copy_layer_norm(encoder.norm)
        new.train(encoder.training)
        return new


# ---------------------------------------------------------------------------
# Attention weights for heatmaps
# ---------------------------------------------------------------------------


@contextmanager
def record_attention(model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Collect every layer's attention weights during the forward passes inside the block.

    The layers normally use the fused kernel, which never builds the weights.
    Inside ``with record_attention(model) as maps:`` every layer of ``model``
    (encoder and decoder layers: any module with a ``keep_attention``
    attribute) computes them with Chapter 1's attention instead; when the block
    ends, ``maps`` holds, for the last forward pass, one ``(B, H, Lq, Lk)``
    tensor per attention module, named by its path in the model::

        with record_attention(model) as maps:
            model(src, tgt)
        maps["decoder.layers.0.cross_attn"]  # (B, H, Lt, Ls)

    The layers are put back to the fused path afterwards.
    """
    layers = [(name, m) for name, m in model.named_modules() if hasattr(m, "keep_attention")]
    maps: dict[str, torch.Tensor] = {}
    for _, layer in layers:
        layer.keep_attention = True
        layer.attention_weights = {}
    try:
        yield maps
    finally:
        for name, layer in layers:
            prefix = f"{name}." if name else ""
            for key, weights in layer.attention_weights.items():
                maps[prefix + key] = weights
            layer.keep_attention = False
            layer.attention_weights = {}


# ---------------------------------------------------------------------------
# Copying PyTorch's layers (shared with decoder.py)
# ---------------------------------------------------------------------------


def _torch_feed_forward_factory(layer: nn.Module) -> FeedForwardFactory:
    """The FeedForward matching a ``nn.Transformer{Encoder,Decoder}Layer``'s activation."""
    kind = getattr(layer, "activation_relu_or_gelu", 0)  # 1: ReLU, 2: GELU, 0: anything else
    if kind == 0:
        act = layer.activation
        if act is F.relu or isinstance(act, nn.ReLU):
            kind = 1
        elif act is F.gelu or (isinstance(act, nn.GELU) and act.approximate == "none"):
            kind = 2
        else:
            raise ValueError(f"only ReLU and GELU activations are supported, got {act}")
    activation = "relu" if kind == 1 else "gelu"
    if layer.linear1.bias is None:
        raise ValueError("layers without biases (bias=False) are not supported")
    return lambda d_model, d_ff, dropout: FeedForward(d_model, d_ff, dropout, activation)


def _copy_feed_forward(ff: FeedForward, layer: nn.Module) -> None:
    with torch.no_grad():
        for ours, theirs in ((ff.linear1, layer.linear1), (ff.linear2, layer.linear2)):
            ours.weight.copy_(theirs.weight)
            ours.bias.copy_(theirs.bias)


def _copy_layer_norm(norm: nn.LayerNorm) -> LayerNorm:
    if norm.weight is None or norm.bias is None or len(norm.normalized_shape) != 1:
        raise ValueError("only LayerNorm over the last dimension, with gain and bias, is supported")
    new = LayerNorm(norm.normalized_shape[0], eps=norm.eps)
    with torch.no_grad():
        new.weight.copy_(norm.weight)
        new.bias.copy_(norm.bias)
    return new.to(norm.weight.dtype)


def _copy_norms(new: nn.Module, layer: nn.Module, names: tuple[str, ...]) -> None:
    for name in names:
        setattr(new, name, _copy_layer_norm(getattr(layer, name)))
