"""Chapter 2: multi-head attention.

Shapes are batch-first everywhere in the course: inputs are
``(B, L, d_model)``; inside the module every head is a batch dimension,
``(B, H, L, d_head)`` with ``d_head = d_model // H``. Head ``h`` owns the
channels ``h * d_head : (h + 1) * d_head`` of each projection, the layout of
:class:`torch.nn.MultiheadAttention`, so weights copy across unchanged.

Masks are boolean and **True means "this query may attend to this key"**, as
in Chapter 1 and :func:`torch.nn.functional.scaled_dot_product_attention`.
:class:`torch.nn.MultiheadAttention` uses the opposite polarity (True =
blocked): :func:`to_torch_attn_mask` converts, explicitly.

:func:`neighbour_task` is the toy task on which the chapter trains one head
against several at the same parameter count: each position must report both
its previous and its next token, two relations that one softmax cannot follow
at once.

:class:`KVCache` (used from Chapter 5 on) stores the keys and values an
attention module has already computed, so that a decoder generating one token
at a time projects only the new token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import scaled_dot_product_attention
from .masks import as_head_mask, to_torch_attn_mask

# The name this helper had when it lived here; Chapter 2's checks
# (exercises/multihead.py) still call it.
_head_mask = as_head_mask

# to_torch_attn_mask lives in masks.py (Chapter 6, all the mask conventions); it is
# re-exported here, where Chapter 2 first uses it.
__all__ = [
    "split_heads",
    "combine_heads",
    "MultiHeadAttention",
    "KVCache",
    "to_torch_attn_mask",
    "neighbour_task",
]


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``(B, L, d_model) -> (B, H, L, d_head)``: give every head its own slice of channels.

    Head ``h`` takes channels ``h * d_head : (h + 1) * d_head`` (contiguous
    blocks, PyTorch's layout), and the heads become a batch dimension so that
    attention runs for all of them at once. Raises ``ValueError`` when
    ``d_model`` is not a multiple of ``n_heads``.
    """
    if x.dim() != 3:
        raise ValueError(f"split_heads expects (B, L, d_model), got shape {tuple(x.shape)}")
    B, L, d_model = x.shape
    if n_heads < 1 or d_model % n_heads != 0:
        raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
    d_head = d_model // n_heads
    x = x.reshape(B, L, n_heads, d_head)  # (B, L, H, d_head): cut the channels into H blocks
    return x.transpose(1, 2)  # (B, H, L, d_head): heads next to the batch


def combine_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, L, d_head) -> (B, L, H * d_head)``: the inverse of :func:`split_heads`.

    Concatenates the heads' outputs along the channels, head 0 first.
    """
    if x.dim() != 4:
        raise ValueError(f"combine_heads expects (B, H, L, d_head), got shape {tuple(x.shape)}")
    B, H, L, d_head = x.shape
    x = x.transpose(1, 2)  # (B, L, H, d_head): positions back next to the batch
    return x.reshape(B, L, H * d_head)  # (B, L, d_model): heads side by side


class KVCache:
    """The keys and values one attention module has computed so far, for incremental decoding.

    A decoder generates one token at a time, and at every step its
    self-attention needs the keys and values of *all* the positions so far.
    They do not change once computed (position ``j`` only ever sees positions
    ``<= j``), so instead of recomputing them every step, the module keeps
    them here and projects only the new position (a KV cache).

    - ``static=False`` (self-attention): every call appends the new positions'
      keys and values, ``(B, H, L_new, d_head)``, to the stored ones.
    - ``static=True`` (cross-attention): the keys and values come from the
      encoder's output, the same at every step; they are computed at the
      first call and reused afterwards (the ``key``/``value`` arguments are
      then ignored).

    Pass one cache per attention module as ``MultiHeadAttention(..., cache=...)``;
    with a cache, the mask must cover ``len(cache) + L_new`` keys (for
    self-attention see :func:`transformer_workbook.masks.causal_mask_with_cache`).

    Attributes:
        k, v: the stored keys and values, ``(B, H, L_cached, d_head)``, or None.
    """

    def __init__(self, static: bool = False) -> None:
        self.static = static
        self.k: torch.Tensor | None = None  # (B, H, L_cached, d_head)
        self.v: torch.Tensor | None = None  # (B, H, L_cached, d_head)

    def __len__(self) -> int:
        """The number of positions cached, ``L_cached``."""
        return 0 if self.k is None else self.k.size(-2)

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new positions' ``k``, ``v`` ``(B, H, L_new, d_head)``; return all the keys and values."""
        if self.k is not None and not self.static:
            k = torch.cat([self.k, k], dim=-2)  # (B, H, L_cached + L_new, d_head)
            v = torch.cat([self.v, v], dim=-2)  # (B, H, L_cached + L_new, d_head)
        self.k, self.v = k, v
        return k, v

    def __repr__(self) -> str:
        return f"KVCache(static={self.static}, cached={len(self)})"


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al., 2017, section 3.2.2), batch-first.

    ``MultiHead(Q, K, V) = Concat(head_1, ..., head_H) W_O`` with
    ``head_h = Attention(Q W_Q^h, K W_K^h, V W_V^h)``. The H per-head
    projections are stored as one ``nn.Linear(d_model, d_model)`` each for
    queries, keys and values (``q_proj``, ``k_proj``, ``v_proj``), cut into
    heads by :func:`split_heads`; ``out_proj`` is ``W_O``. The parameter count,
    ``4 * d_model**2`` (+ ``4 * d_model`` biases), does not depend on
    ``n_heads``.

    Args:
        d_model: model width; must be divisible by ``n_heads``.
        n_heads: number of heads H; each works in ``d_head = d_model // H`` dimensions.
        bias: whether the four projections have biases.
        dropout: dropout on the attention weights, in training mode only.
    """

    def __init__(self, d_model: int, n_heads: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if n_heads < 1 or d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model = d_model
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)  # W_Q for all heads, side by side
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)  # W_K
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)  # W_V
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W_O

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None = None,
        need_weights: bool = True,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``query`` ``(B, Lq, d_model)`` to ``key``/``value`` ``(B, Lk, d_model)``.

        Args:
            mask: optional bool mask, **True = may attend**: ``(Lq, Lk)``,
                ``(B, Lq, Lk)``, or 4-D broadcastable to ``(B, H, Lq, Lk)``
                (e.g. a ``(B, 1, 1, Lk)`` padding mask).
            need_weights: when False, use the fused kernel
                (``F.scaled_dot_product_attention``), which never builds the
                weights, and return ``None`` for them.
            cache: optional :class:`KVCache` (incremental decoding): the new
                keys and values are appended to it (``static=False``), or
                taken from it after the first call (``static=True``); the
                attention then runs over all ``len(cache)`` keys, and ``Lk``
                below means that number.

        Returns:
            ``output`` ``(B, Lq, d_model)`` and the per-head ``weights``
            ``(B, H, Lq, Lk)`` (before dropout), or ``None``.
        """
        H = self.n_heads
        q = split_heads(self.q_proj(query), H)  # (B, H, Lq, d_head)
        if cache is not None and cache.static and cache.k is not None:
            k, v = cache.k, cache.v  # (B, H, Lk, d_head): cross-attention, projected at the first step
        else:
            k = split_heads(self.k_proj(key), H)  # (B, H, Lk, d_head)
            v = split_heads(self.v_proj(value), H)  # (B, H, Lk, d_head)
            if cache is not None:
                k, v = cache.update(k, v)  # (B, H, L_cached + Lk, d_head): earlier positions too
        head_mask = None if mask is None else as_head_mask(mask)  # (B|1, H|1, Lq, Lk)
        p = self.dropout if self.training else 0.0
        if need_weights:
            # Chapter 1's attention, one head per batch slice; it scales by sqrt(d_head).
            out, weights = scaled_dot_product_attention(q, k, v, head_mask)  # (B, H, Lq, d_head)
            if p > 0:
                out = F.dropout(weights, p) @ v  # (B, H, Lq, d_head)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=head_mask, dropout_p=p)
            weights = None  # the fused kernel never materializes (B, H, Lq, Lk)
        out = combine_heads(out)  # (B, Lq, d_model): concatenate the heads
        return self.out_proj(out), weights  # (B, Lq, d_model)

    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention) -> MultiHeadAttention:
        """A copy of ``module`` whose outputs equal ``module``'s.

        ``nn.MultiheadAttention`` stores W_Q, W_K and W_V stacked in one
        ``in_proj_weight`` of shape ``(3 * d_model, d_model)`` (or separately
        when ``kdim``/``vdim`` are given). The copy is batch-first whatever
        ``module.batch_first`` says, and takes masks with True = may attend.
        Options this class does not have (``add_bias_kv``, ``add_zero_attn``,
        ``kdim``/``vdim`` other than ``embed_dim``) raise ``ValueError``.
        """
        if module.bias_k is not None or module.add_zero_attn:
            raise ValueError("add_bias_kv and add_zero_attn are not supported")
        if module.kdim != module.embed_dim or module.vdim != module.embed_dim:
            raise ValueError("kdim and vdim must equal embed_dim")
        d_model = module.embed_dim
        bias = module.in_proj_bias is not None
        new = cls(d_model, module.num_heads, bias=bias, dropout=module.dropout)
        if module.in_proj_weight is not None:
            w_q, w_k, w_v = module.in_proj_weight.chunk(3, dim=0)  # 3 x (d_model, d_model)
        else:
            w_q, w_k, w_v = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
        b_q = b_k = b_v = None
        if bias:
            b_q, b_k, b_v = module.in_proj_bias.chunk(3)  # 3 x (d_model,)
        with torch.no_grad():
            for layer, w, b in (
                (new.q_proj, w_q, b_q),
                (new.k_proj, w_k, b_k),
                (new.v_proj, w_v, b_v),
                (new.out_proj, module.out_proj.weight, module.out_proj.bias),
            ):
                layer.weight.copy_(w)
                if b is not None:
                    layer.bias.copy_(b)
        new.train(module.training)
        return new.to(module.out_proj.weight.dtype)


def neighbour_task(
    batch: int, seq_len: int, vocab: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of the "previous and next token" task: inputs and targets.

    Each sequence holds ``seq_len`` random tokens from ``vocab``. Position
    ``p``'s input is ``[one_hot(token_p) | one_hot(p)]``, ``d_model = vocab +
    seq_len`` (its position is written in, so attention can find its
    neighbours); its targets are the token at ``p - 1`` and the token at
    ``p + 1``, cyclically (position 0's previous token is the last one). A
    single attention head gives each query **one** distribution over the
    keys, so it can fetch one neighbour cleanly, or a blend of both in which
    "which was before and which after" is lost; two heads can fetch one each.

    Returns:
        ``x`` of shape ``(batch, seq_len, vocab + seq_len)`` (float32) and
        ``targets`` of shape ``(batch, seq_len, 2)`` (int64): previous token,
        next token.
    """
    if batch < 1 or seq_len < 2 or vocab < 2:
        raise ValueError("need batch >= 1, seq_len >= 2 and vocab >= 2")
    tokens = torch.randint(vocab, (batch, seq_len), generator=generator)  # (B, L)
    token_part = F.one_hot(tokens, vocab).float()  # (B, L, vocab)
    position_part = torch.eye(seq_len).expand(batch, seq_len, seq_len)  # (B, L, L)
    x = torch.cat([token_part, position_part], dim=-1)  # (B, L, vocab + L)
    previous = tokens.roll(1, dims=1)  # (B, L): previous[p] = tokens[p - 1]
    following = tokens.roll(-1, dims=1)  # (B, L): following[p] = tokens[p + 1]
    return x, torch.stack([previous, following], dim=-1)  # (B, L, 2)
