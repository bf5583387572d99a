"""Chapter 5: the decoder.

A decoder layer (Vaswani et al., 2017, section 3.1) has three sublayers, each
with a residual connection and a normalization, placed as in the encoder
(post-LN by default, pre-LN with ``norm_first=True``):

1. **masked self-attention** over the target sequence: the causal mask
   (Chapter 6) lets position ``i`` see positions ``0..i`` only, so the
   prediction for position ``i + 1`` cannot peek at it;
2. **cross-attention** (encoder-decoder attention): queries from the decoder,
   keys and values from the encoder's output, the *memory*; this is where the
   translation looks at the source;
3. the position-wise **feed-forward** network.

Without the cross-attention sublayer (``cross_attention=False``), the layer is
the block of a decoder-only language model (GPT): masked self-attention and a
feed-forward network.

**Incremental decoding.** When generating one token at a time, the keys and
values of earlier positions never change (causality), so they are stored in a
:class:`~transformer_workbook.multihead.KVCache` per attention module and only
the new position is projected. :class:`DecoderCache` holds those caches for a
whole stack: pass it to :meth:`Decoder.forward` with the new tokens only, and a
self-attention mask for ``n_new`` queries against ``len(cache) + n_new`` keys
(:func:`~transformer_workbook.masks.causal_mask_with_cache`).

Shapes are batch-first: target ``(B, Lt, d_model)``, memory ``(B, Ls, d_model)``.
Masks are bool, **True = may attend**: ``self_mask`` broadcastable to
``(B, H, Lt, Lt)``, ``memory_mask`` to ``(B, H, Lt, Ls)``.
"""

from __future__ import annotations

import torch
from torch import nn

from .encoder import (
    FeedForward,
    FeedForwardFactory,
    LayerNorm,
    NormFactory,
    _copy_feed_forward,
    _copy_layer_norm,
    _copy_norms,
    _torch_feed_forward_factory,
)
from .multihead import KVCache, MultiHeadAttention

__all__ = ["DecoderLayer", "Decoder", "DecoderCache"]


class DecoderLayer(nn.Module):
    """One decoder layer: masked self-attention, cross-attention, feed-forward.

    Post-LN (``norm_first=False``, the paper and ``nn.TransformerDecoderLayer``'s default)::

        x = norm1(x + dropout(self_attn(x, x, x, self_mask)))
        x = norm2(x + dropout(cross_attn(x, memory, memory, memory_mask)))
        x = norm3(x + dropout(feed_forward(x)))

    Pre-LN (``norm_first=True``): ``x = x + dropout(sublayer(norm(x)))`` for
    each of the three.

    Args:
        d_model, n_heads, d_ff, dropout, norm_first, norm, feed_forward: as for
            :class:`~transformer_workbook.encoder.EncoderLayer`.
        cross_attention: False for a decoder-only model (no memory): then the
            layer has no ``cross_attn`` and no ``norm3``; ``norm2`` goes with
            the feed-forward.

    Attention weights: with ``keep_attention`` True (see
    :func:`~transformer_workbook.encoder.record_attention`) the layer stores
    ``attention_weights["self_attn"]`` ``(B, H, Lt, Lt)`` and
    ``attention_weights["cross_attn"]`` ``(B, H, Lt, Ls)``.
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
        cross_attention: bool = True,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.norm1 = norm(d_model)
        if cross_attention:
            self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
            self.norm2 = norm(d_model)
            self.norm3 = norm(d_model)
        else:
            self.cross_attn = None
            self.norm2 = norm(d_model)
        self.feed_forward = feed_forward(d_model, d_ff, dropout)
        self.dropout = nn.Dropout(dropout)
        self.keep_attention = False  # True: store the attention weights (slower path)
        self.attention_weights: dict[str, torch.Tensor] = {}

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        self_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        self_cache: KVCache | None = None,
        cross_cache: KVCache | None = None,
    ) -> torch.Tensor:
        """``x`` ``(B, Lt, d_model)``, ``memory`` ``(B, Ls, d_model)`` -> ``(B, Lt, d_model)``.

        Args:
            self_mask: bool, broadcastable to ``(B, H, Lt, Lt)`` (usually
                causal); with a cache, to ``(B, H, Lt, len(self_cache) + Lt)``.
            memory_mask: bool, broadcastable to ``(B, H, Lt, Ls)`` (usually the
                source padding mask as ``(B, 1, 1, Ls)``).
            self_cache, cross_cache: optional KV caches for incremental
                decoding (``cross_cache`` must be ``KVCache(static=True)``);
                see :class:`DecoderCache`.
        """
        if (memory is None) != (self.cross_attn is None):
            raise ValueError(
                "this layer has cross-attention: pass memory" if memory is None
                else "this layer has no cross-attention (decoder-only): memory must be None"
            )
        if self.cross_attn is None:  # decoder-only: two sublayers
            if self.norm_first:
                x = x + self._self_attention(self.norm1(x), self_mask, self_cache)  # (B, Lt, d_model)
                x = x + self._feed_forward(self.norm2(x))  # (B, Lt, d_model)
            else:
                x = self.norm1(x + self._self_attention(x, self_mask, self_cache))  # (B, Lt, d_model)
                x = self.norm2(x + self._feed_forward(x))  # (B, Lt, d_model)
            return x
        if self.norm_first:
            x = x + self._self_attention(self.norm1(x), self_mask, self_cache)  # (B, Lt, d_model)
            x = x + self._cross_attention(self.norm2(x), memory, memory_mask, cross_cache)  # (B, Lt, d_model)
            x = x + self._feed_forward(self.norm3(x))  # (B, Lt, d_model)
        else:
            x = self.norm1(x + self._self_attention(x, self_mask, self_cache))  # (B, Lt, d_model)
            x = self.norm2(x + self._cross_attention(x, memory, memory_mask, cross_cache))  # (B, Lt, d_model)
            x = self.norm3(x + self._feed_forward(x))  # (B, Lt, d_model)
        return x

    def _self_attention(
        self, x: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None
    ) -> torch.Tensor:
        out, weights = self.self_attn(
            x, x, x, mask, need_weights=self.keep_attention, cache=cache
        )  # (B, Lt, d_model)
        if weights is not None:
            self.attention_weights["self_attn"] = weights  # (B, H, Lt, Lt)
        return self.dropout(out)

    def _cross_attention(
        self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None
    ) -> torch.Tensor:
        out, weights = self.cross_attn(
            x, memory, memory, mask, need_weights=self.keep_attention, cache=cache
        )  # (B, Lt, d_model)
        if weights is not None:
            self.attention_weights["cross_attn"] = weights  # (B, H, Lt, Ls)
        return self.dropout(out)

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.feed_forward(x))  # (B, Lt, d_model)

    @classmethod
    def from_torch(cls, layer: nn.TransformerDecoderLayer) -> DecoderLayer:
        """A copy of ``layer`` whose outputs equal ``layer``'s (batch-first, course masks).

        ``nn.TransformerDecoderLayer``'s ``multihead_attn`` becomes ``cross_attn``.
        """
        self_attn = MultiHeadAttention.from_torch(layer.self_attn)
        new = cls(
            self_attn.d_model, self_attn.n_heads, layer.linear1.out_features,
            dropout=layer.dropout.p, norm_first=layer.norm_first,
            feed_forward=_torch_feed_forward_factory(layer),
        )
        new.self_attn = self_attn
        new.cross_attn = MultiHeadAttention.from_torch(layer.multihead_attn)
        _copy_feed_forward(new.feed_forward, layer)
        _copy_norms(new, layer, ("norm1", "norm2", "norm3"))  # copies, with the layer's eps
        new.train(layer.training)
        return new.to(layer.linear1.weight.dtype)


class DecoderCache:
    """The KV caches of a decoder stack, for generating one token at a time.

    For each layer: ``self_attn[i]``, a :class:`~transformer_workbook.multihead.KVCache`
    that grows by the new positions at every step, and (unless
    ``cross_attention=False``) ``cross_attn[i]``, a static one holding the
    memory's keys and values, projected once at the first step.

    ``len(cache)`` is the number of target positions already cached: the
    position of the next token fed in.
    """

    def __init__(self, n_layers: int, cross_attention: bool = True) -> None:
        self.self_attn = [KVCache() for _ in range(n_layers)]
        self.cross_attn = [KVCache(static=True) for _ in range(n_layers)] if cross_attention else None

    def __len__(self) -> int:
        return len(self.self_attn[0]) if self.self_attn else 0

    def __repr__(self) -> str:
        return f"DecoderCache(n_layers={len(self.self_attn)}, cached={len(self)})"


class Decoder(nn.Module):
    """A stack of ``n_layers`` :class:`DecoderLayer` s, with an optional final normalization.

    Args:
        d_model, n_heads, n_layers, d_ff, dropout, norm_first, final_norm,
            norm, feed_forward: as for :class:`~transformer_workbook.encoder.Encoder`.
        cross_attention: False for a decoder-only model (no memory).

    Shape: ``x`` ``(B, Lt, d_model)``, ``memory`` ``(B, Ls, d_model)`` -> ``(B, Lt, d_model)``.
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
        cross_attention: bool = True,
    ) -> None:
        super().__init__()
        self.cross_attention = cross_attention
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, n_heads, d_ff, dropout, norm_first, norm, feed_forward, cross_attention)
            for _ in range(n_layers)
        )
        if final_norm is None:
            final_norm = norm_first
        self.norm = norm(d_model) if final_norm else None

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        self_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> torch.Tensor:
        """Run the stack; with ``cache``, ``x`` holds only the new positions (see :class:`DecoderCache`)."""
        for i, layer in enumerate(self.layers):
            self_cache = None if cache is None else cache.self_attn[i]
            cross_cache = None if cache is None or cache.cross_attn is None else cache.cross_attn[i]
            x = layer(x, memory, self_mask, memory_mask, self_cache, cross_cache)  # (B, Lt, d_model)
        return x if self.norm is None else self.norm(x)  # (B, Lt, d_model)

    def new_cache(self) -> DecoderCache:
        """An empty :class:`DecoderCache` for this stack."""
        return DecoderCache(len(self.layers), self.cross_attention)

    @classmethod
    def from_torch(cls, decoder: nn.TransformerDecoder) -> Decoder:
        """A copy of ``decoder`` (its layers and its final ``norm``, if any)."""
        layers = [DecoderLayer.from_torch(layer) for layer in decoder.layers]
        first = layers[0]
        new = cls(
            first.self_attn.d_model, first.self_attn.n_heads, len(layers),
            decoder.layers[0].linear1.out_features, norm_first=first.norm_first,
            final_norm=decoder.norm is not None,
        )
        new.layers = nn.ModuleList(layers)  # the copies replace the freshly built layers
        if decoder.norm is not None:
            new.norm = _copy_layer_norm(decoder.norm)
        new.train(decoder.training)
        return new
