"""Chapter 1: scaled dot-product attention, from first principles.

Shapes are batch-first everywhere in the course. These functions accept any
number of leading dimensions: ``q`` is ``(..., Lq, d_k)``, ``k`` is
``(..., Lk, d_k)`` and ``v`` is ``(..., Lk, d_v)``.

Masks are boolean and **True means "this query may attend to this key"**, the
convention of :func:`torch.nn.functional.scaled_dot_product_attention`.
(``nn.MultiheadAttention`` and ``nn.Transformer`` use the opposite polarity;
the course converts explicitly wherever it meets them.)
"""

from __future__ import annotations

import math

import torch

__all__ = ["softmax", "scaled_dot_product_attention", "attention_entropy"]


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Numerically stable softmax along ``dim``.

    Subtracting the maximum along ``dim`` does not change the result
    (``exp(x - c) / sum(exp(x - c)) == exp(x) / sum(exp(x))``) but keeps every
    exponent at most 0, so ``exp`` never overflows, even for inputs of
    magnitude 1e4. Entries equal to ``-inf`` get probability exactly 0; a slice
    that is ``-inf`` everywhere (nothing to attend to) gets all zeros instead
    of NaN.
    """
    x_max = x.amax(dim=dim, keepdim=True)  # (..., 1, ...) same rank as x
    # A slice that is -inf everywhere has max -inf; -inf - (-inf) is NaN, so
    # shift such slices by 0 instead (their exponentials are all 0 anyway).
    x_max = torch.where(torch.isfinite(x_max), x_max, torch.zeros_like(x_max))
    e = torch.exp(x - x_max)  # same shape as x, every entry in [0, 1]
    total = e.sum(dim=dim, keepdim=True)  # (..., 1, ...)
    # total is 0 only for an all -inf slice; divide by 1 there to get zeros.
    return e / torch.where(total > 0, total, torch.ones_like(total))


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V, returning ``(output, weights)``.

    Args:
        q: queries, ``(..., Lq, d_k)``.
        k: keys, ``(..., Lk, d_k)``.
        v: values, ``(..., Lk, d_v)``.
        mask: optional bool tensor broadcastable to ``(..., Lq, Lk)``;
            **True = may attend**. Masked positions get weight exactly 0. A
            query that may attend to nothing gets all-zero weights and a zero
            output (as ``F.scaled_dot_product_attention`` does), not NaN.

    Returns:
        ``output`` of shape ``(..., Lq, d_v)`` and ``weights`` of shape
        ``(..., Lq, Lk)``; each row of ``weights`` sums to 1 (or is all 0).
    """
    if mask is not None and mask.dtype != torch.bool:
        raise TypeError(
            f"mask must be a bool tensor (True = may attend), got dtype {mask.dtype}"
        )
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., Lq, Lk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # (..., Lq, Lk)
    weights = softmax(scores, dim=-1)  # (..., Lq, Lk)
    output = weights @ v  # (..., Lq, d_v)
    return output, weights


def attention_entropy(weights: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shannon entropy (in nats) of attention distributions along ``dim``.

    0 means all weight on one key; ``log(Lk)`` means uniform over ``Lk`` keys.
    Zero weights contribute 0 (the limit of ``p log p``).
    """
    logs = torch.where(weights > 0, weights.log(), torch.zeros_like(weights))
    return -(weights * logs).sum(dim=dim)
