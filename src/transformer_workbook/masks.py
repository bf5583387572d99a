"""Chapter 6: masks, the course's one convention and PyTorch's others.

The course's masks are boolean and **True means "this query may attend to this
key"**, the convention of :func:`torch.nn.functional.scaled_dot_product_attention`.
A mask for attention scores ``(B, H, Lq, Lk)`` may be any bool tensor that
broadcasts to that shape; the usual ones are

- a **padding mask** ``(B, L)``: True at real tokens, False at padding
  (:func:`padding_mask`); as a key mask it becomes ``(B, 1, 1, Lk)``;
- a **causal mask** ``(L, L)``: True on and below the diagonal, so position
  ``i`` sees positions ``0..i`` only (:func:`causal_mask`);
- their combination ``(B, 1, Lq, Lk)`` (:func:`combine_masks`);
- during incremental decoding with a KV cache, a causal mask for ``n_new``
  queries against ``n_cached + n_new`` keys, whose diagonal is shifted by
  ``n_cached`` (:func:`causal_mask_with_cache`);
- a **sliding-window mask** ``(L, L)`` (:func:`sliding_window_mask`): each
  query sees only the keys less than ``window`` positions away (Longformer's
  local attention; Chapter 7 computes it without the ``L x L`` matrix).

Whether a layer really keeps to its causal mask is a question of behaviour,
not of the mask you meant to pass: :func:`leaks_future` changes the later
positions of an input and checks that no earlier output moves (the leakage
test).

PyTorch's modules use two other conventions, and the course converts
explicitly wherever it meets them:

=============================================  ====================================
``nn.MultiheadAttention``, ``nn.Transformer*``  bool: **True = may NOT attend**
(``attn_mask``, ``key_padding_mask``, ...)      (blocked / padding)
``nn.Transformer.generate_square_subsequent_mask``  float, **added** to the scores:
and any float ``attn_mask``                     ``0`` = may attend, ``-inf`` = blocked
=============================================  ====================================

(:func:`to_torch_attn_mask`, :func:`to_torch_key_padding_mask`,
:func:`to_float_mask` go to those conventions; :func:`from_torch_mask` comes
back.) Passing a course mask to PyTorch unconverted silently inverts it: a
causal mask then lets every position see only the *future*.

**A query that may attend to nothing** (a fully masked row, e.g. a padding
query under a mask that also masks padding queries, or the first positions of
a left-padded sequence under a causal mask): the course's attention gives it
all-zero weights and a zero output, on both of its paths. Chapter 1's
:func:`~transformer_workbook.attention.softmax` returns zeros for an all
``-inf`` row instead of the NaN of ``exp(-inf) / 0``, and PyTorch's fused
``F.scaled_dot_product_attention`` (used when no weights are requested) does
the same with a bool mask. ``nn.MultiheadAttention`` returns NaN for such a
row, and the old ``masked_fill(-1e9)`` trick gives uniform weights over the
masked keys instead. A zero output is harmless: the row's position is padding
whose result is never used, and its gradient is zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = [
    "causal_mask",
    "causal_mask_with_cache",
    "padding_mask",
    "padding_mask_from_tokens",
    "combine_masks",
    "as_head_mask",
    "to_torch_attn_mask",
    "to_torch_key_padding_mask",
    "to_float_mask",
    "from_torch_mask",
    "sliding_window_mask",
    "leaks_future",
]


# ---------------------------------------------------------------------------
# Building masks (True = may attend)
# ---------------------------------------------------------------------------


def causal_mask(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The ``(n, n)`` causal mask: True on and below the diagonal.

    Row ``i`` (the query at position ``i``) may attend to keys ``0..i``: itself
    and the past, never the future. It broadcasts over batch and heads.
    ``nn.Transformer.generate_square_subsequent_mask(n)`` is the same mask in
    PyTorch's float convention (see :func:`to_float_mask`).
    """
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()  # (n, n)


def causal_mask_with_cache(
    n_new: int, n_cached: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """The causal mask for ``n_new`` new queries against ``n_cached + n_new`` keys.

    With a KV cache, the keys of the first ``n_cached`` positions are already
    stored, and only the ``n_new`` new positions are fed in. New query ``i``
    sits at position ``n_cached + i``, so it may attend to keys
    ``0..n_cached + i``: all the cached keys, and the new ones up to itself.
    That is the lower triangle with its diagonal shifted right by
    ``n_cached``; without the shift, the new queries would be treated as
    positions ``0..n_new - 1`` and could not see most of the cache. The last
    ``n_new`` rows of ``causal_mask(n_cached + n_new)`` are the same mask.

    Returns:
        A bool tensor ``(n_new, n_cached + n_new)``; ``causal_mask_with_cache(n, 0)``
        equals ``causal_mask(n)``.
    """
    ones = torch.ones(n_new, n_cached + n_new, dtype=torch.bool, device=device)  # (n_new, n_total)
    return ones.tril(diagonal=n_cached)  # (n_new, n_total): key j allowed iff j <= n_cached + i


def sliding_window_mask(
    n: int, window: int, causal: bool = True, device: torch.device | str | None = None
) -> torch.Tensor:
    """The ``(n, n)`` sliding-window mask: query ``i`` sees the keys less than ``window`` positions away.

    Key ``j`` is allowed when ``|i - j| < window``, and, with ``causal``
    (the default), ``j <= i`` as well: each query then sees itself and the
    ``window - 1`` positions before it (the local attention of Mistral-style
    decoders). Without ``causal`` it sees ``window - 1`` positions on each
    side (Longformer's sliding window, Beltagy et al., 2020). A window at
    least ``n`` wide is the full causal mask (or no mask at all).
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    ones = torch.ones(n, n, dtype=torch.bool, device=device)  # (n, n)
    band = ones.tril(window - 1) & ones.triu(-(window - 1))  # (n, n): |i - j| < window
    return band.tril() if causal else band  # (n, n)


def padding_mask(
    lengths: torch.Tensor | Sequence[int], max_len: int | None = None
) -> torch.Tensor:
    """The ``(B, max_len)`` padding mask of a batch: True at real tokens, False at padding.

    Sequences are padded at the end: sequence ``b`` has ``lengths[b]`` real
    tokens, followed by padding up to ``max_len`` (default: the longest
    length). Used as a *key* mask, ``mask[:, None, None, :]``
    (``(B, 1, 1, L)``), it stops every query from attending to padding.
    """
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D (one length per sequence), got shape {tuple(lengths.shape)}")
    if max_len is None:
        max_len = int(lengths.max()) if lengths.numel() else 0
    if lengths.numel() and (int(lengths.min()) < 0 or int(lengths.max()) > max_len):
        raise ValueError(f"lengths must lie in [0, max_len={max_len}], got {lengths.tolist()}")
    positions = torch.arange(max_len, device=lengths.device)  # (L,)
    return positions[None, :] < lengths[:, None]  # (1, L) < (B, 1) -> (B, L)


def padding_mask_from_tokens(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """``(B, L)`` token ids -> ``(B, L)`` padding mask: True where the token is not ``pad_id``."""
    return tokens != pad_id  # (B, L)


def combine_masks(
    padding: torch.Tensor | None = None, attn: torch.Tensor | None = None
) -> torch.Tensor | None:
    """One mask for ``(B, H, Lq, Lk)`` scores: a key padding mask AND a ``(Lq, Lk)`` mask.

    Args:
        padding: ``(B, Lk)``, True at real tokens (:func:`padding_mask`); it
            masks the *keys* (columns), the same for every query and head.
        attn: ``(Lq, Lk)``, e.g. :func:`causal_mask`, the same for every
            sequence and head.

    Returns:
        ``(B, 1, Lq, Lk)`` when both are given, ``(B, 1, 1, Lk)`` or
        ``(1, 1, Lq, Lk)`` when one is, ``None`` when neither is. A key is
        allowed when *both* masks allow it (logical AND: with True = may
        attend, combining masks is ``&``).
    """
    mask = None
    if padding is not None:
        _check_bool(padding)
        if padding.dim() != 2:
            raise ValueError(f"padding must be (B, Lk), got shape {tuple(padding.shape)}")
        mask = padding[:, None, None, :]  # (B, 1, 1, Lk)
    if attn is not None:
        _check_bool(attn)
        if attn.dim() != 2:
            raise ValueError(f"attn must be (Lq, Lk), got shape {tuple(attn.shape)}")
        attn = attn[None, None]  # (1, 1, Lq, Lk)
        mask = attn if mask is None else mask & attn  # (B, 1, Lq, Lk)
    return mask


def as_head_mask(mask: torch.Tensor) -> torch.Tensor:
    """A mask for ``(B, H, Lq, Lk)`` scores, from the shapes the course's attention accepts.

    ``(Lq, Lk)`` is shared by every sequence and head; ``(B, Lq, Lk)`` is per
    sequence (a head dimension is added, so it is not mistaken for per-head);
    a 4-D mask is used as is (it must broadcast to ``(B, H, Lq, Lk)``).
    Raises ``TypeError`` for a mask that is not bool.
    """
    _check_bool(mask)
    if mask.dim() == 2:
        return mask[None, None]  # (1, 1, Lq, Lk)
    if mask.dim() == 3:
        return mask[:, None]  # (B, 1, Lq, Lk)
    if mask.dim() == 4:
        return mask  # (B or 1, H or 1, Lq, Lk)
    raise ValueError(f"mask must have 2, 3 or 4 dimensions, got shape {tuple(mask.shape)}")


def _check_bool(mask: torch.Tensor) -> None:
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor (True = may attend), got dtype {mask.dtype}")


# ---------------------------------------------------------------------------
# To and from PyTorch's conventions
# ---------------------------------------------------------------------------


def to_torch_attn_mask(
    mask: torch.Tensor, batch_size: int, n_heads: int, q_len: int, k_len: int
) -> torch.Tensor:
    """Convert a course mask (True = may attend) to ``nn.MultiheadAttention``'s ``attn_mask``.

    ``nn.MultiheadAttention`` reads a bool ``attn_mask`` the other way round
    (**True = may not attend**) and wants exactly ``(Lq, Lk)`` or
    ``(B * H, Lq, Lk)``. So the mask is inverted (``~mask``) and expanded: a
    2-D mask to ``(Lq, Lk)``, any other (``(B, Lq, Lk)``, or 4-D broadcastable
    to ``(B, H, Lq, Lk)``) to one slice per (sequence, head), sequence major,
    as PyTorch orders them. (For ``nn.Transformer``'s ``tgt_mask`` /
    ``src_mask`` a 2-D mask is the usual case: ``~mask``, or
    :func:`to_float_mask`.)
    """
    _check_bool(mask)
    blocked = ~mask  # flip the polarity: nn.MultiheadAttention's True means "blocked"
    if mask.dim() == 2:
        return blocked.expand(q_len, k_len)  # (Lq, Lk)
    blocked = as_head_mask(blocked)  # (B|1, H|1, Lq|1, Lk)
    blocked = blocked.expand(batch_size, n_heads, q_len, k_len)  # (B, H, Lq, Lk)
    return blocked.reshape(batch_size * n_heads, q_len, k_len)  # (B*H, Lq, Lk)


def to_torch_key_padding_mask(padding: torch.Tensor) -> torch.Tensor:
    """``(B, L)`` padding mask (True = real token) -> PyTorch's ``key_padding_mask`` (True = padding).

    For ``nn.MultiheadAttention(key_padding_mask=...)`` and
    ``nn.Transformer*``'s ``src_key_padding_mask``, ``tgt_key_padding_mask``
    and ``memory_key_padding_mask``.
    """
    _check_bool(padding)
    return ~padding  # (B, L): True where PyTorch must ignore the key


def to_float_mask(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A bool mask (True = may attend) as an additive float mask: 0 where allowed, -inf where blocked.

    This is the convention of ``nn.Transformer.generate_square_subsequent_mask``:
    the mask is *added* to the scores before the softmax, and ``exp(-inf) = 0``
    removes the blocked keys. ``to_float_mask(causal_mask(n))`` equals
    ``nn.Transformer.generate_square_subsequent_mask(n)``.
    """
    _check_bool(mask)
    zeros = torch.zeros(mask.shape, dtype=dtype, device=mask.device)  # same shape as mask
    return zeros.masked_fill(~mask, float("-inf"))  # same shape: 0 = may attend, -inf = blocked


def from_torch_mask(mask: torch.Tensor) -> torch.Tensor:
    """A PyTorch mask -> the course's bool mask (True = may attend), same shape.

    Accepts both of PyTorch's conventions:

    - bool, **True = blocked** (``attn_mask`` and every ``*key_padding_mask``):
      the result is ``~mask``;
    - float, **additive** (``generate_square_subsequent_mask``): ``0`` = may
      attend, ``-inf`` = blocked. A float mask with any other value adds a
      bias to the scores, which a bool mask cannot express: ``ValueError``.
    """
    if mask.dtype == torch.bool:
        return ~mask  # flip the polarity: True now means "may attend"
    if not mask.is_floating_point():
        raise TypeError(f"expected a bool or float mask, got dtype {mask.dtype}")
    blocked = torch.isneginf(mask)  # same shape: True where -inf
    if not (blocked | (mask == 0)).all():
        raise ValueError(
            "this float mask has values other than 0 and -inf: it adds biases to the scores, "
            "which a bool mask cannot express"
        )
    return ~blocked  # same shape: True where 0 (may attend)


# ---------------------------------------------------------------------------
# The leakage test: does a layer look at the future?
# ---------------------------------------------------------------------------


def leaks_future(
    layer: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> bool:
    """Whether some output position of ``layer`` depends on a *later* input position.

    The test treats the layer as a black box, ``(B, L, d) -> (B, L, d_out)``
    along dimension 1: for every position ``t``, it replaces every input
    position after ``t`` by fresh random values and checks that the outputs
    at positions ``0..t`` do not change (within ``rtol``/``atol``, far below
    any real leak and above nothing: a causal layer computes them from
    exactly the same numbers). Replacing, not shuffling: attention without
    positions is blind to the *order* of the keys it sees, so a layer that
    looks at the whole future is not caught by permuting it. Every position,
    not only the last one: a leak may go from any later position to any
    earlier one.

    Run it on a layer in eval mode (dropout would change the outputs by
    itself) and on an ``x`` with at least two positions. The checks of
    Chapter 6 give it layers that leak in every way they know (no mask, an
    inverted mask, a diagonal shifted by one, a single future position, a
    normalization over the sequence, a mask that only weakens the future).

    Returns:
        True when the layer leaks the future, False when every output depends
        only on its own and earlier positions.
    """
    L = x.size(1)
    g = torch.Generator(device=x.device).manual_seed(0)
    with torch.no_grad():
        before = layer(x)  # (B, L, d_out)
        for t in range(L - 1):
            changed = x.clone()  # (B, L, d)
            future = changed[:, t + 1 :]  # (B, L - t - 1, d): positions after t
            future.copy_(torch.randn(future.shape, generator=g, device=x.device, dtype=x.dtype))
            after = layer(changed)  # (B, L, d_out)
            if not torch.allclose(after[:, : t + 1], before[:, : t + 1], rtol=rtol, atol=atol):
                return True  # an output at or before t moved when only positions after t changed
    return False
