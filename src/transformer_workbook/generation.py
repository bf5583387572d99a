"""Chapters 8 and 9: turning a trained model's next-token scores into text.

Decoding strategies, for an encoder-decoder (:class:`~transformer_workbook.model.Transformer`,
given a source) and for a decoder-only language model
(:class:`~transformer_workbook.model.DecoderOnlyLM`, given a prompt):

- greedy decoding, always the most likely next token, is
  :func:`~transformer_workbook.model.greedy_decode` (encoder-decoder) and
  :func:`~transformer_workbook.model.generate` (decoder-only), in Chapter 5's
  :mod:`~transformer_workbook.model`; ``sample(..., temperature=0)`` too;
- :func:`beam_search`: keep the ``beam_size`` most likely partial outputs;
  ``beam_size=1`` is greedy decoding;
- :func:`sample`: draw each next token from the model's distribution,
  reshaped by a temperature (:func:`apply_temperature`), top-k
  (:func:`top_k_filter`) and nucleus / top-p (:func:`top_p_filter`, Holtzman
  et al., 2020, "The Curious Case of Neural Text Degeneration") filters.

Two measures of generated text (Chapter 9): :func:`distinct_n`, the diversity
of a set of samples, and :func:`repeated_ngram_share`, how much each sample
repeats itself.

The filters work on logits ``(..., V)`` and set the removed tokens' logits to
``-inf`` (probability 0 after the softmax); the transformations are applied
in the order temperature, top-k, top-p (:func:`transform_logits`).

A decoder-only model decodes with its KV cache by default (``use_cache=True``):
each step feeds only the new token; ``use_cache=False`` recomputes the whole
prefix every step, giving the same tokens, slower. So does an
encoder-decoder: its decoder caches its self-attention keys and values, and
the projections of the memory for cross-attention.

Both kinds of input are right-padded token ids: a source ``(B, S)`` padded
with ``pad_id``, or a prompt ``(B, L0)`` (every row the same length, usually
just ``<bos>``). Outputs are the generated ids without the start token or the
prompt, ``(B, T)``; a row that produced ``<eos>`` keeps it, followed by
``pad_id`` (``CharTokenizer.decode`` stops at ``<eos>``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "apply_temperature",
    "top_k_filter",
    "top_p_filter",
    "transform_logits",
    "sample_with_temperature",
    "seq2seq_forward",
    "lm_forward",
    "beam_search",
    "sample",
    "distinct_n",
    "repeated_ngram_share",
]


# ---------------------------------------------------------------------------
# Reshaping a next-token distribution
# ---------------------------------------------------------------------------


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``logits / temperature``: below 1 sharpens the distribution, above 1 flattens it.

    ``softmax(logits / T)``: as ``T -> 0`` all the probability goes to the
    most likely token (greedy decoding); ``T = 1`` is the model's own
    distribution; as ``T -> inf`` it becomes uniform. ``T = 0`` itself is a
    division by zero and raises ``ValueError`` (decode greedily instead, or
    pass ``temperature=0`` to :func:`sample`, which does exactly that).
    """
    if not temperature > 0:
        raise ValueError(
            f"temperature must be > 0, got {temperature}: dividing the logits by 0 is undefined. "
            "The limit T -> 0 is greedy decoding: use model.greedy_decode, or sample(..., temperature=0)."
        )
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row (last dimension); set the others to ``-inf``.

    Exactly ``k`` tokens survive (ties at the k-th value are broken by
    :func:`torch.topk`); ``k >= V`` keeps everything. Returns a new tensor.
    """
    if k < 1:
        raise ValueError(f"top-k needs k >= 1, got {k}")
    V = logits.size(-1)
    if k >= V:
        return logits.clone()
    idx = logits.topk(k, dim=-1).indices  # (..., k)
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, idx, True)  # (..., V)
    return logits.masked_fill(~keep, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability reaches ``p``.

    Sort the tokens by probability, most likely first, and keep them up to
    and including the one where the running total first reaches ``p`` (the
    token that crosses ``p`` is kept, so the kept mass is always ``>= p``, and
    the most likely token is always kept); set the others' logits to
    ``-inf``. ``p = 1`` keeps everything. Ties are ordered by
    :func:`torch.sort` (stable: lower id first). Returns a new tensor.
    """
    if not 0 < p <= 1:
        raise ValueError(f"top-p needs 0 < p <= 1, got {p}")
    if p == 1:
        return logits.clone()
    probs = F.softmax(logits.float(), dim=-1)  # (..., V)
    sorted_probs, order = probs.sort(dim=-1, descending=True, stable=True)  # (..., V)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs  # (..., V): mass of the more likely tokens
    keep_sorted = before < p  # (..., V): the total had not reached p before this token
    keep_sorted[..., 0] = True  # the most likely token, always
    keep = torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)  # (..., V) back to token order
    return logits.masked_fill(~keep, float("-inf"))


def transform_logits(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """Temperature, then top-k, then top-p: the logits :func:`sample` draws from.

    ``None`` skips a filter. (Top-p after the temperature: the nucleus is
    measured on the tempered distribution.)
    """
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return logits


def sample_with_temperature(
    logits: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw one token per row from ``softmax(logits / temperature)``; ``(..., V) -> (...)``.

    ``temperature`` must be > 0 (see :func:`apply_temperature`).
    """
    probs = F.softmax(apply_temperature(logits, temperature).float(), dim=-1)  # (..., V)
    flat = probs.reshape(-1, probs.size(-1))  # (N, V)
    draws = torch.multinomial(flat, 1, generator=generator)  # (N, 1)
    return draws.reshape(probs.shape[:-1])  # (...)


# ---------------------------------------------------------------------------
# One call to the model
# ---------------------------------------------------------------------------


def _is_seq2seq(model: nn.Module) -> bool:
    return hasattr(model, "encode") and hasattr(model, "decode")


def seq2seq_forward(
    model: nn.Module, src: torch.Tensor, tgt_in: torch.Tensor, pad_id: int = 0
) -> torch.Tensor:
    """Teacher-forced logits ``(B, T, V)`` of an encoder-decoder, with its masks.

    ``src`` ``(B, S)`` and ``tgt_in`` ``(B, T)`` are right-padded with
    ``pad_id``. The source padding mask (True at real tokens) stops every
    query from attending to source padding; the decoder's causal mask (built
    by the model) stops each target position from seeing later ones, so the
    target padding, which comes after every real token, is never seen by a
    real position and needs no mask (its positions are left out of the loss).
    """
    src_mask = src != pad_id  # (B, S): True at real tokens
    return model(src, tgt_in, src_mask)  # (B, T, V)


def lm_forward(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Logits ``(B, L, V)`` of a decoder-only model.

    Causal masking is the model's; right padding comes after every real
    token, so no real position attends to it and it needs no mask.
    """
    return model(inputs)  # (B, L, V)


def _reorder_cache(cache, index: torch.Tensor) -> None:
    """Keep rows ``index`` of every key and value of a :class:`~transformer_workbook.decoder.DecoderCache`."""
    for kv in list(cache.self_attn) + list(cache.cross_attn or []):
        if kv.k is not None:
            kv.k, kv.v = kv.k[index], kv.v[index]  # (B', H, L, d_head)


class _Seq2SeqStepper:
    """Next-token logits of an encoder-decoder, one decoding step at a time."""

    def __init__(self, model, src, bos_id, pad_id, use_cache):
        self.model = model
        self.src_mask = src != pad_id  # (B, S): True at real tokens
        self.memory = model.encode(src, self.src_mask)  # (B, S, d_model)
        self.tokens = torch.full((src.size(0), 1), bos_id, dtype=torch.long, device=src.device)  # (B, 1)
        self.cache = model.decoder.new_cache() if use_cache else None

    def logits(self) -> torch.Tensor:
        """``(B, V)``: scores for the next token."""
        new = self.tokens[:, -1:] if self.cache is not None else self.tokens  # (B, 1) or (B, t)
        out = self.model.decode(new, self.memory, self.src_mask, cache=self.cache)  # (B, 1 or t, V)
        return out[:, -1]  # (B, V)

    def append(self, token: torch.Tensor) -> None:
        self.tokens = torch.cat([self.tokens, token[:, None]], dim=1)  # (B, t + 1)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (beam search: each new hypothesis's parent)."""
        self.tokens = self.tokens[index]
        self.memory = self.memory[index]
        self.src_mask = self.src_mask[index]
        if self.cache is not None:
            _reorder_cache(self.cache, index)


class _LMStepper:
    """Next-token logits of a decoder-only model, with or without its KV cache."""

    def __init__(self, model, prompt, use_cache):
        if prompt.size(1) < 1:
            raise ValueError("a decoder-only model needs a prompt of at least one token (e.g. <bos>)")
        self.model = model
        self.tokens = prompt  # (B, L0)
        self.cache = model.decoder.new_cache() if use_cache else None
        self._fed = 0  # how many tokens of self.tokens the cache holds

    def logits(self) -> torch.Tensor:
        """``(B, V)``: scores for the next token."""
        if self.cache is None:
            return self.model(self.tokens)[:, -1]  # (B, V): the whole prefix again
        new = self.tokens[:, self._fed :]  # (B, n_new): the prompt at first, then one token
        self._fed = self.tokens.size(1)
        return self.model(new, cache=self.cache)[:, -1]  # (B, V)

    def append(self, token: torch.Tensor) -> None:
        self.tokens = torch.cat([self.tokens, token[:, None]], dim=1)  # (B, t + 1)

    def reorder(self, index: torch.Tensor) -> None:
        self.tokens = self.tokens[index]
        if self.cache is not None:
            _reorder_cache(self.cache, index)


def _stepper(model, inputs, bos_id, pad_id, use_cache):
    if _is_seq2seq(model):
        return _Seq2SeqStepper(model, inputs, bos_id, pad_id, use_cache)
    return _LMStepper(model, inputs, use_cache)


def _start(inputs: torch.Tensor, model: nn.Module) -> int:
    """How many leading tokens of a stepper's ``tokens`` are not generated output."""
    return 1 if _is_seq2seq(model) else inputs.size(1)


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------


def _finish(tokens: torch.Tensor, eos_id: int | None, pad_id: int) -> torch.Tensor:
    """Replace everything after each row's first ``<eos>`` with padding."""
    if eos_id is None:
        return tokens
    after = (tokens == eos_id).long().cumsum(dim=1) - (tokens == eos_id).long()  # (B, L): eos seen before
    return tokens.masked_fill(after > 0, pad_id)


@torch.no_grad()
def sample(
    model: nn.Module,
    inputs: torch.Tensor,
    max_len: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    bos_id: int = 1,
    eos_id: int | None = 2,
    pad_id: int = 0,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Sample up to ``max_len`` tokens, each from the model's reshaped next-token distribution.

    Each step the next-token logits go through :func:`transform_logits`
    (temperature, then top-k, then top-p) and one token is drawn per row with
    ``torch.multinomial`` from ``generator`` (pass a seeded
    ``torch.Generator`` for reproducible samples). ``temperature=0`` means
    greedy decoding (the limit of ``T -> 0``): the most likely token is taken
    and the filters are irrelevant; a warning says so. ``top_k=1`` is greedy
    decoding too.

    Args:
        model: an encoder-decoder (it has ``encode``/``decode``) or a decoder-only model.
        inputs: the source ``(B, S)`` (decoding starts from ``<bos>``), or the
            prompt ``(B, L0)`` of a decoder-only model.
        max_len: the most tokens to generate (a decoder-only model's prompt
            plus output must fit its ``max_len``).
        eos_id: a row stops at ``<eos>``; ``None``: always generate ``max_len`` tokens.
        use_cache: use the decoder's KV cache (same tokens, faster).

    Returns:
        ``(B, <= max_len)`` generated ids (see the module's docstring).
    """
    if temperature < 0 or math.isnan(temperature):
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        warnings.warn("temperature=0: decoding greedily (argmax), the limit of T -> 0", stacklevel=2)
    was_training = model.training
    model.eval()
    try:
        stepper = _stepper(model, inputs, bos_id, pad_id, use_cache)
        done = torch.zeros(inputs.size(0), dtype=torch.bool, device=inputs.device)  # (B,)
        for _ in range(max_len):
            logits = stepper.logits()  # (B, V)
            if temperature == 0:
                token = logits.argmax(dim=-1)  # (B,)
            else:
                logits = transform_logits(logits, temperature, top_k, top_p)  # (B, V)
                probs = F.softmax(logits.float(), dim=-1)  # (B, V)
                token = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)
            token = token.masked_fill(done, pad_id)  # a finished row only gets padding
            if eos_id is not None:
                done = done | (token == eos_id)
            stepper.append(token)
            if bool(done.all()):
                break
    finally:
        model.train(was_training)
    return _finish(stepper.tokens[:, _start(inputs, model) :], eos_id, pad_id)


@torch.no_grad()
def beam_search(
    model: nn.Module,
    inputs: torch.Tensor,
    beam_size: int,
    max_len: int,
    bos_id: int = 1,
    eos_id: int = 2,
    pad_id: int = 0,
    length_penalty: float = 0.0,
    return_beams: bool = False,
    use_cache: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Beam search: keep the ``beam_size`` most likely partial outputs of each input.

    At every step each of the ``K = beam_size`` hypotheses of an input is
    extended by every token, and the ``K`` extensions with the highest total
    log-probability ``log p(y_1..y_t)`` survive. A hypothesis that has
    produced ``<eos>`` is finished: it stays in the beam with its score
    unchanged (extended only by padding, at no cost). The search stops when
    every hypothesis is finished or after ``max_len`` tokens.

    **Length normalization.** Total log-probabilities favour short outputs
    (every token adds a negative term). The final choice among the ``K``
    hypotheses is by ``log p(y) / len(y) ** length_penalty``, ``len(y)``
    counting the tokens up to and including ``<eos>``: ``length_penalty=0``
    (the default) compares total log-probabilities, ``1`` the average per
    token. (During the search hypotheses compete on total log-probability.)

    With ``beam_size=1`` this is exactly greedy decoding.

    Args:
        inputs: as in :func:`sample` (a source, or a prompt).
        return_beams: also return every hypothesis.

    Returns:
        The best output of each input ``(B, <= max_len)``, padded after
        ``<eos>`` as in :func:`sample`; with ``return_beams``,
        ``(beams (B, K, <= max_len), scores (B, K))``, sorted best first by
        the normalized score.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    was_training = model.training
    model.eval()
    B, K = inputs.size(0), beam_size
    device = inputs.device
    try:
        rows = torch.arange(B, device=device).repeat_interleave(K)  # (B*K,): each input K times
        stepper = _stepper(model, inputs[rows], bos_id, pad_id, use_cache)
        scores = torch.zeros(B, K, device=device)  # (B, K): total log-probability
        scores[:, 1:] = float("-inf")  # at first the K copies are identical: expand only one
        finished = torch.zeros(B * K, dtype=torch.bool, device=device)  # (B*K,)
        lengths = torch.zeros(B * K, dtype=torch.long, device=device)  # (B*K,): tokens up to <eos>
        for _ in range(max_len):
            logp = F.log_softmax(stepper.logits().float(), dim=-1)  # (B*K, V)
            V = logp.size(-1)
            # A finished hypothesis can only be extended by padding, at no cost.
            frozen = torch.full_like(logp, float("-inf"))  # (B*K, V)
            frozen[:, pad_id] = 0.0
            logp = torch.where(finished[:, None], frozen, logp)  # (B*K, V)
            cand = (scores.reshape(B * K, 1) + logp).reshape(B, K * V)  # (B, K*V): every extension
            scores, idx = cand.topk(K, dim=-1)  # (B, K): the K best extensions of each input
            parent = (torch.arange(B, device=device)[:, None] * K + idx // V).reshape(-1)  # (B*K,)
            token = (idx % V).reshape(-1)  # (B*K,)
            stepper.reorder(parent)
            lengths = lengths[parent] + (~finished[parent]).long()  # (B*K,)
            finished = finished[parent] | (token == eos_id)  # (B*K,)
            stepper.append(token)
            if bool(finished.all()):
                break
    finally:
        model.train(was_training)
    start = _start(inputs, model)
    beams = _finish(stepper.tokens[:, start:], eos_id, pad_id).reshape(B, K, -1)  # (B, K, L)
    norm = scores / lengths.reshape(B, K).clamp(min=1).float() ** length_penalty  # (B, K)
    norm = norm.masked_fill(torch.isnan(norm), float("-inf"))
    order = norm.argsort(dim=-1, descending=True, stable=True)  # (B, K)
    beams = beams.gather(1, order[:, :, None].expand_as(beams))  # (B, K, L)
    norm = norm.gather(1, order)  # (B, K)
    if return_beams:
        return beams, norm
    return beams[:, 0]  # (B, L)


# ---------------------------------------------------------------------------
# Measuring generated text
# ---------------------------------------------------------------------------


def _ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct-n (Li et al., 2016): different word n-grams over all word n-grams of ``texts``.

    Words are separated by spaces (``"."`` counts as a word). 1.0: no n-gram
    occurs twice in the whole set (very diverse); near 0: the samples keep
    saying the same things. ``n`` >= 1; texts shorter than ``n`` words add no
    n-gram. Returns 0.0 when there is no n-gram at all.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = [g for t in texts for g in _ngrams(t.split(), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_ngram_share(text: str, n: int = 3) -> float:
    """Share of the word n-grams of ``text`` that already occurred earlier in the same text.

    0.0: the text never repeats an n-gram; close to 1: it loops (the
    degenerate repetition of greedy decoding, Holtzman et al., 2020).
    Returns 0.0 for a text with no n-gram.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = _ngrams(text.split(), n)
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams) if grams else 0.0
