"""Chapter 1: scaled dot-product attention, from first principles.

Shapes are batch-first everywhere in the course. These functions accept any
number of leading dimensions: ``q`` is ``(..., Lq, d_k)``, ``k`` is
``(..., Lk, d_k)`` and ``v`` is ``(..., Lk, d_v)``.

Masks are boolean and **True means "this query may attend to this key"**, the
convention of :func:`torch.nn.functional.scaled_dot_product_attention`.
(``nn.MultiheadAttention`` and ``nn.Transformer`` use the opposite polarity;
the course converts explicitly wherever it meets them.)

Besides attention itself: :func:`hard_attention`, its limit as the
temperature goes to 0 (a dictionary lookup), and :func:`fit`, the tiny,
deterministic training loop the chapters use to *learn* projections on toy
tasks instead of hand-picking them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

__all__ = ["softmax", "scaled_dot_product_attention", "attention_entropy", "hard_attention", "fit"]


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


def hard_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The limit of attention as the temperature goes to 0: a hard dictionary lookup.

    ``softmax(scores / T)`` tends, as ``T -> 0``, to equal weights on the keys
    with the **largest** score and 0 elsewhere: each query gets the value of its
    best-matching key (the mean of the values when several keys tie), like a
    dictionary lookup that finds the closest key instead of an exact one.
    Same arguments and shapes as :func:`scaled_dot_product_attention`, and
    returns ``(output, weights)``; a query that may attend to nothing gets
    zeros. (The scale ``1/sqrt(d_k)`` does not change which key wins.)
    """
    if mask is not None and mask.dtype != torch.bool:
        raise TypeError(
            f"mask must be a bool tensor (True = may attend), got dtype {mask.dtype}"
        )
    scores = q @ k.transpose(-2, -1)  # (..., Lq, Lk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # (..., Lq, Lk)
    best = scores.amax(dim=-1, keepdim=True)  # (..., Lq, 1)
    winners = (scores == best) & torch.isfinite(scores)  # (..., Lq, Lk): the tied maxima
    counts = winners.sum(dim=-1, keepdim=True).clamp(min=1)  # (..., Lq, 1)
    weights = winners.to(v.dtype) / counts  # (..., Lq, Lk), one-hot unless keys tie
    return weights @ v, weights  # (..., Lq, d_v), (..., Lq, Lk)


def fit(
    parameters: Iterable[torch.nn.Parameter] | Iterable[torch.Tensor],
    loss_fn: Callable[[], torch.Tensor],
    steps: int,
    lr: float = 0.05,
    threads: int = 1,
) -> list[float]:
    """Minimise ``loss_fn()`` over ``parameters`` with Adam, for exactly ``steps`` steps.

    The chapters' toy tasks (a W_Q learned in seconds, one head against
    several, an encoding trained on short sequences) use it: a fixed number of
    steps, never a time budget, so with seeded data the result is the same on
    every run. ``loss_fn`` is called once per step (draw a fresh batch from a
    seeded ``torch.Generator`` inside it) and must return a scalar tensor.

    The loop runs on ``threads`` CPU threads (1 by default): the toy models are
    so small that more threads only add synchronisation, which on a busy
    machine costs more CPU time than the arithmetic itself. The previous
    setting is restored afterwards.

    Returns:
        The loss at every step, as Python floats.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    parameters = list(parameters)
    if not parameters:
        raise ValueError("fit needs at least one parameter to train")
    optimizer = torch.optim.Adam(parameters, lr=lr)
    losses: list[float] = []
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for _ in range(steps):
            loss = loss_fn()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    finally:
        torch.set_num_threads(previous_threads)
    return losses
