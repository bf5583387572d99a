"""Chapter 5: whole models, built from the same parts.

The three families of Transformer models are configurations of the layers in
:mod:`~transformer_workbook.encoder` and :mod:`~transformer_workbook.decoder`:

- **encoder-decoder** (the paper, T5): :class:`Transformer`. The encoder reads
  the whole source; the decoder generates the target, attending to its own
  past (causal self-attention) and to the source (cross-attention);
- **decoder-only** (GPT): :class:`DecoderOnlyLM`, decoder layers without
  cross-attention, trained to predict the next token;
- **encoder-only** (BERT): :class:`~transformer_workbook.encoder.InputEmbedding`
  followed by an :class:`~transformer_workbook.encoder.Encoder`, no mask but
  padding, every position seeing every other.

Training uses **teacher forcing**: the decoder reads the target shifted right
by one position (:func:`shift_right`, a start token first) and predicts the
target itself, all positions at once; the causal mask stops position ``i``
from seeing the token it must predict. Generation feeds the model's own
predictions back, one token at a time (:func:`greedy_decode`,
:func:`generate`), with a KV cache so that each step costs one position.

**Weight tying** (section 3.4): with ``tie_embeddings=True`` the target
embedding and the output projection (pre-softmax linear layer) are *one*
parameter, the same storage, and when the two vocabularies have the same size
the source embedding shares it too. ``model.parameters()`` then lists it once;
``state_dict()`` lists it under each name.

Shapes are batch-first; token ids are ``(B, L)`` int64; logits ``(B, L, V)``.
Padding masks are ``(B, L)`` bool, **True at real tokens**
(:func:`~transformer_workbook.masks.padding_mask`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .decoder import Decoder, DecoderCache
from .encoder import Encoder, InputEmbedding, record_attention
from .masks import causal_mask_with_cache, combine_masks

__all__ = [
    "Transformer",
    "DecoderOnlyLM",
    "shift_right",
    "greedy_decode",
    "generate",
    "greedy",
    "record_attention",
    "beam_search",
    "sample",
]


def shift_right(tgt: torch.Tensor, start_id: int) -> torch.Tensor:
    """The decoder's input for teacher forcing: ``start_id`` then ``tgt`` without its last token.

    ``tgt`` ``(B, L)`` -> ``(B, L)``. Position ``i`` of the result holds
    ``tgt[:, i - 1]``, so the decoder, reading up to position ``i`` (causal
    mask), predicts ``tgt[:, i]``: the next token. ``[a, b, c, <end>]``
    becomes ``[<start>, a, b, c]``.
    """
    start = torch.full_like(tgt[:, :1], start_id)  # (B, 1)
    return torch.cat([start, tgt[:, :-1]], dim=1)  # (B, L)


def _init_weights(model: nn.Module) -> None:
    """Xavier-uniform for every linear layer's weight (as ``nn.Transformer`` does), zero biases.

    Embeddings keep :class:`InputEmbedding`'s N(0, 1/d_model); normalization
    layers keep gain 1 and bias 0.
    """
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class Transformer(nn.Module):
    """The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al., 2017).

    ``src`` ``(B, Ls)`` -> :class:`InputEmbedding` -> :class:`Encoder` -> memory;
    ``tgt`` ``(B, Lt)`` -> :class:`InputEmbedding` -> :class:`Decoder` (causal
    self-attention, cross-attention to the memory) -> ``out_proj`` -> logits
    ``(B, Lt, tgt_vocab_size)``. The paper's base model is
    ``Transformer(37000, 37000, 512, 8, 6, 2048, dropout=0.1)`` (about 63M
    parameters; see :mod:`~transformer_workbook.complexity`).

    Args:
        src_vocab_size, tgt_vocab_size: vocabulary sizes.
        d_model, n_heads, n_layers, d_ff: sizes; ``n_layers`` encoder layers
            and ``n_layers`` decoder layers.
        max_len: the longest source or target sequence (positional table).
        dropout: dropout everywhere (embeddings, residuals, attention, FFN).
        norm_first: pre-LN (with a final LayerNorm after each stack) when
            True; post-LN, the paper's, when False.
        tie_embeddings: share one matrix between the target embedding and the
            output projection, and with the source embedding when the
            vocabularies have the same size. When False, the three are
            separate.

    Attributes:
        src_embed, tgt_embed: :class:`InputEmbedding` s.
        encoder, decoder: the two stacks.
        out_proj: ``nn.Linear(d_model, tgt_vocab_size, bias=False)``.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        d_model: int,
        n_heads: int,
        n_layers: int,
        d_ff: int,
        max_len: int = 512,
        dropout: float = 0.0,
        norm_first: bool = False,
        tie_embeddings: bool = True,
    ) -> None:
        super().__init__()
        self.src_embed = InputEmbedding(src_vocab_size, d_model, max_len, dropout)
        self.tgt_embed = InputEmbedding(tgt_vocab_size, d_model, max_len, dropout)
        self.encoder = Encoder(d_model, n_heads, n_layers, d_ff, dropout, norm_first)
        self.decoder = Decoder(d_model, n_heads, n_layers, d_ff, dropout, norm_first)
        self.out_proj = nn.Linear(d_model, tgt_vocab_size, bias=False)  # logits = h @ W^T
        _init_weights(self)
        if tie_embeddings:
            self.out_proj.weight = self.tgt_embed.token.weight  # one Parameter, two uses
            if src_vocab_size == tgt_vocab_size:
                self.src_embed.token.weight = self.tgt_embed.token.weight
        else:
            nn.init.normal_(self.out_proj.weight, std=d_model**-0.5)

    def encode(self, src: torch.Tensor, src_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``src`` ``(B, Ls)`` -> memory ``(B, Ls, d_model)``.

        ``src_padding_mask``: ``(B, Ls)`` bool, True at real tokens.
        """
        mask = combine_masks(padding=src_padding_mask)  # (B, 1, 1, Ls) or None
        return self.encoder(self.src_embed(src), mask)  # (B, Ls, d_model)

    def decode(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        src_padding_mask: torch.Tensor | None = None,
        tgt_padding_mask: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> torch.Tensor:
        """Decoder input ``tgt`` ``(B, Lt)`` and ``memory`` -> logits ``(B, Lt, tgt_vocab_size)``.

        The causal mask is built here. With ``cache`` (from
        ``model.decoder.new_cache()``), ``tgt`` holds only the new tokens,
        which sit at positions ``len(cache)`` onwards, and
        ``tgt_padding_mask`` (if any) must cover all ``len(cache) + Lt`` keys.
        """
        n_cached = 0 if cache is None else len(cache)
        Lt = tgt.size(1)
        x = self.tgt_embed(tgt, offset=n_cached)  # (B, Lt, d_model)
        causal = causal_mask_with_cache(Lt, n_cached, device=tgt.device)  # (Lt, n_cached + Lt)
        self_mask = combine_masks(tgt_padding_mask, causal)  # (B|1, 1, Lt, n_cached + Lt)
        memory_mask = combine_masks(padding=src_padding_mask)  # (B, 1, 1, Ls) or None
        h = self.decoder(x, memory, self_mask, memory_mask, cache)  # (B, Lt, d_model)
        return self.out_proj(h)  # (B, Lt, tgt_vocab_size)

    def forward(
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        src_padding_mask: torch.Tensor | None = None,
        tgt_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``src`` ``(B, Ls)``, decoder input ``tgt`` ``(B, Lt)`` -> logits ``(B, Lt, tgt_vocab_size)``.

        For training, ``tgt`` is the target shifted right (:func:`shift_right`)
        and the logits are compared with the target itself. With right-padded
        targets, ``tgt_padding_mask`` is not needed: the causal mask already
        keeps real positions from seeing the padding after them (exclude the
        padding from the loss instead, e.g. ``ignore_index``).
        """
        memory = self.encode(src, src_padding_mask)  # (B, Ls, d_model)
        return self.decode(tgt, memory, src_padding_mask, tgt_padding_mask)  # (B, Lt, V)


class DecoderOnlyLM(nn.Module):
    """A decoder-only language model (GPT-style): predicts every next token of ``tokens``.

    :class:`InputEmbedding` -> :class:`Decoder` without cross-attention
    (causal self-attention + feed-forward in each layer) -> ``out_proj`` ->
    logits ``(B, L, vocab_size)``; ``logits[:, i]`` scores the token at
    position ``i + 1``, having seen positions ``0..i`` only.

    Args:
        vocab_size: number of token ids.
        d_model, n_heads, n_layers, d_ff: sizes.
        max_len: the context length (positional table).
        dropout: dropout everywhere.
        norm_first: pre-LN with a final LayerNorm (GPT-2) when True; post-LN
            when False.
        tie_embeddings: share the embedding matrix with the output projection.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        n_heads: int,
        n_layers: int,
        d_ff: int,
        max_len: int = 512,
        dropout: float = 0.0,
        norm_first: bool = False,
        tie_embeddings: bool = True,
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.embed = InputEmbedding(vocab_size, d_model, max_len, dropout)
        self.decoder = Decoder(d_model, n_heads, n_layers, d_ff, dropout, norm_first, cross_attention=False)
        self.out_proj = nn.Linear(d_model, vocab_size, bias=False)
        _init_weights(self)
        if tie_embeddings:
            self.out_proj.weight = self.embed.token.weight  # one Parameter, two uses
        else:
            nn.init.normal_(self.out_proj.weight, std=d_model**-0.5)

    def forward(
        self,
        tokens: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> torch.Tensor:
        """``tokens`` ``(B, L)`` -> next-token logits ``(B, L, vocab_size)``.

        With ``cache`` (from ``model.decoder.new_cache()``), ``tokens`` holds
        only the new tokens, at positions ``len(cache)`` onwards; the cache is
        updated in place. ``padding_mask`` ``(B, len(cache) + L)``, True at
        real tokens, masks padded keys.
        """
        n_cached = 0 if cache is None else len(cache)
        L = tokens.size(1)
        x = self.embed(tokens, offset=n_cached)  # (B, L, d_model)
        causal = causal_mask_with_cache(L, n_cached, device=tokens.device)  # (L, n_cached + L)
        mask = combine_masks(padding_mask, causal)  # (B|1, 1, L, n_cached + L)
        h = self.decoder(x, self_mask=mask, cache=cache)  # (B, L, d_model)
        return self.out_proj(h)  # (B, L, vocab_size)


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """Greedy choice: the most likely token, ``(B, V)`` logits -> ``(B,)`` ids."""
    return logits.argmax(dim=-1)  # (B,)


@torch.no_grad()
def greedy_decode(
    model: Transformer,
    src: torch.Tensor,
    max_new_tokens: int,
    start_id: int,
    end_id: int | None = None,
    src_padding_mask: torch.Tensor | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Translate ``src`` ``(B, Ls)`` with an encoder-decoder model, one most-likely token at a time.

    Encodes the source once, then starts every target with ``start_id`` and
    appends the argmax of the next-token logits, up to ``max_new_tokens``
    times. Once a sequence has produced ``end_id`` it is finished: its later
    positions are filled with ``end_id``, and decoding stops early when every
    sequence is finished. With ``use_cache`` (the default) each step feeds
    only the newest token through the decoder (a KV cache); the result is the
    same without it, only slower. The model is run in eval mode (no dropout)
    and put back in its previous mode.

    Returns:
        The generated tokens ``(B, T)``, ``T <= max_new_tokens``, without the
        start token.
    """
    was_training = model.training
    model.eval()
    try:
        memory = model.encode(src, src_padding_mask)  # (B, Ls, d_model)
        B = src.size(0)
        tokens = torch.full((B, 1), start_id, dtype=torch.long, device=src.device)  # (B, 1)
        finished = torch.zeros(B, dtype=torch.bool, device=src.device)  # (B,)
        cache = model.decoder.new_cache() if use_cache else None
        for _ in range(max_new_tokens):
            new = tokens[:, -1:] if use_cache else tokens  # (B, 1) or (B, t)
            logits = model.decode(new, memory, src_padding_mask, cache=cache)  # (B, 1 or t, V)
            next_token = greedy(logits[:, -1])  # (B,)
            if end_id is not None:
                next_token = next_token.masked_fill(finished, end_id)  # (B,)
                finished = finished | (next_token == end_id)
            tokens = torch.cat([tokens, next_token[:, None]], dim=1)  # (B, t + 1)
            if end_id is not None and bool(finished.all()):
                break
        return tokens[:, 1:]  # (B, T): drop the start token
    finally:
        model.train(was_training)


@torch.no_grad()
def generate(
    model: DecoderOnlyLM,
    prompt: torch.Tensor,
    max_new_tokens: int,
    pick: Callable[[torch.Tensor], torch.Tensor] = greedy,
    use_cache: bool = True,
) -> torch.Tensor:
    """Continue ``prompt`` ``(B, Lp)`` with a decoder-only model, one token at a time.

    At each step the model scores the next token from the context, ``pick``
    chooses it from the last position's logits ``(B, V)`` (default
    :func:`greedy`; pass a sampler for sampling), and it is appended. The
    context is the last ``model.max_len`` tokens (the model has no positions
    beyond). With ``use_cache`` each step feeds only the newest token; once
    the context is full, the window slides and every position shifts, so the
    cache is rebuilt from the window at each step (as slow as no cache, the
    price of absolute positions). The results equal those without a cache.
    The model runs in eval mode and is put back in its previous mode.

    Returns:
        ``(B, Lp + max_new_tokens)``: the prompt followed by the new tokens.
    """
    was_training = model.training
    model.eval()
    try:
        tokens = prompt  # (B, Lp)
        cache = None
        for _ in range(max_new_tokens):
            if use_cache and cache is not None and len(cache) < model.max_len:
                logits = model(tokens[:, -1:], cache=cache)  # (B, 1, V): the newest token only
            else:  # first step, no cache, or a full context window: run the whole window
                cache = model.decoder.new_cache() if use_cache else None
                logits = model(tokens[:, -model.max_len :], cache=cache)  # (B, min(t, max_len), V)
            next_token = pick(logits[:, -1])  # (B,)
            tokens = torch.cat([tokens, next_token[:, None]], dim=1)  # (B, t + 1)
        return tokens
    finally:
        model.train(was_training)


# Chapter 9's decoding strategies live in generation.py (with the logit filters);
# the model's module offers them too, beside greedy decoding.
from .generation import beam_search, sample  # noqa: E402
