"""Chapter 7: attention that costs less than ``L^2``, in small runnable versions.

Full attention compares every query with every key: ``O(L^2 d)`` time and an
``(L, L)`` weight matrix per head. Two families of cheaper attention, each
written here so that it never builds that matrix:

- **Sliding-window attention** (Longformer, Beltagy et al., 2020; the local
  layers of Mistral-style decoders): each query sees only the keys less than
  ``window`` positions away. :func:`sliding_window_attention` works block
  by block (Longformer's chunks), so it costs ``O(L w d)`` time and
  ``O(L w + L d)`` memory; its result *equals* full attention under
  :func:`~transformer_workbook.masks.sliding_window_mask` (tested). It is not
  an approximation of full attention but another model: whatever lies
  outside the window is not seen (in one layer; stacked layers widen it).
- **Linear attention** (Katharopoulos et al., 2020): with a feature map
  ``phi`` in place of ``exp(q . k)``, the weighted sum regroups,

  .. math::

      \\text{out}_i = \\frac{\\phi(q_i)^\\top \\sum_j \\phi(k_j) v_j^\\top}
                            {\\phi(q_i)^\\top \\sum_j \\phi(k_j)},

  so the sums over the keys are computed once, in ``O(L m d)`` for ``m``
  features (:func:`linear_attention`; with ``causal=True`` they are prefix
  sums). With ``phi(x) = elu(x) + 1`` (the default) it is a different model;
  with **positive random features** (Performer's FAVOR+, Choromanski et al.,
  2021; :func:`performer_features`, :func:`performer_attention`) it is an
  unbiased estimate of softmax attention itself, whose error shrinks like
  ``1 / sqrt(m)``.

Shapes follow Chapter 1: any leading dimensions, ``q`` ``(..., Lq, d_k)``,
``k`` ``(..., Lk, d_k)``, ``v`` ``(..., Lk, d_v)``; sliding windows and
causal linear attention need ``Lq == Lk`` (self-attention).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .attention import softmax

__all__ = [
    "sliding_window_attention",
    "linear_attention",
    "elu_feature_map",
    "random_projection",
    "performer_features",
    "performer_attention",
]


# ---------------------------------------------------------------------------
# Sliding-window attention
# ---------------------------------------------------------------------------


def sliding_window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, causal: bool = True
) -> torch.Tensor:
    """Attention where query ``i`` sees only keys ``j`` with ``|i - j| < window`` (and ``j <= i`` if causal).

    Equals ``scaled_dot_product_attention(q, k, v, sliding_window_mask(L, window, causal))[0]``
    without the ``(L, L)`` scores, the way Longformer computes it: the
    sequence is cut into blocks of ``window`` positions, and each block of
    queries attends to its own block of keys and the one before (and, when
    not causal, the one after), since every key a query may see lies there.
    The scores are ``(..., L / w, w, 2w)`` (or ``3w``), then masked to the
    exact window. Time and memory grow like ``L * w``, not ``L^2``.

    Args:
        q, k: ``(..., L, d_k)``; v: ``(..., L, d_v)`` (self-attention: one length).
        window: how far a query sees: keys less than ``window`` positions away.
        causal: only the current and earlier positions (the default).

    Returns:
        ``(..., L, d_v)``.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    L = q.size(-2)
    if k.size(-2) != L or v.size(-2) != L:
        raise ValueError("sliding-window attention needs as many keys as queries (self-attention)")
    w = min(window, max(L, 1))  # a window wider than the sequence is one block
    n_blocks = -(-L // w)  # ceil(L / w)
    tail = n_blocks * w - L  # padding that completes the last block
    lead = q.shape[:-2]
    q_blocks = F.pad(q, (0, 0, 0, tail)).reshape(*lead, n_blocks, w, q.size(-1))  # (..., nb, w, d_k)
    after = 0 if causal else 1  # blocks of keys after the query's own
    k_pad = F.pad(k, (0, 0, w, tail + after * w))  # (..., (nb + 1 + after) * w, d_k): a block before
    v_pad = F.pad(v, (0, 0, w, tail + after * w))  # (..., (nb + 1 + after) * w, d_v)
    k_pad = k_pad.reshape(*lead, n_blocks + 1 + after, w, k.size(-1))  # (..., nb + 1 + after, w, d_k)
    v_pad = v_pad.reshape(*lead, n_blocks + 1 + after, w, v.size(-1))  # (..., nb + 1 + after, w, d_v)
    span = 2 + after  # blocks of keys per block of queries: previous, own (, next)
    # for block b: the keys (values) of blocks b - 1, b (and b + 1), side by side; sw = span * w
    k_near = torch.cat([k_pad[..., i : i + n_blocks, :, :] for i in range(span)], -2)  # (..., nb, sw, d_k)
    v_near = torch.cat([v_pad[..., i : i + n_blocks, :, :] for i in range(span)], -2)  # (..., nb, sw, d_v)
    scores = q_blocks @ k_near.transpose(-2, -1) / math.sqrt(q.size(-1))  # (..., nb, w, span*w)
    q_pos = torch.arange(n_blocks * w, device=q.device).reshape(n_blocks, w, 1)  # (nb, w, 1)
    block_start = torch.arange(n_blocks, device=q.device).reshape(n_blocks, 1, 1) * w - w  # (nb, 1, 1)
    k_pos = block_start + torch.arange(span * w, device=q.device)  # (nb, 1, span*w): position of each key
    allowed = (k_pos >= 0) & (k_pos < L) & ((q_pos - k_pos).abs() < window)  # (nb, w, span*w)
    if causal:
        allowed = allowed & (k_pos <= q_pos)
    weights = softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)  # (..., nb, w, span*w)
    out = weights @ v_near  # (..., nb, w, d_v)
    return out.reshape(*lead, n_blocks * w, v.size(-1))[..., :L, :]  # (..., L, d_v)


# ---------------------------------------------------------------------------
# Linear attention
# ---------------------------------------------------------------------------


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """``elu(x) + 1``: the positive feature map of Katharopoulos et al. (2020); ``(..., d) -> (..., d)``."""
    return F.elu(x) + 1


def _kernel_attention(
    phi_q: torch.Tensor, phi_k: torch.Tensor, v: torch.Tensor, causal: bool
) -> torch.Tensor:
    """``out_i = phi_q_i . S_i / phi_q_i . z_i`` with the key sums ``S = sum phi_k v^T``, ``z = sum phi_k``.

    Over all keys, or (causal) over keys ``0..i`` by prefix sums.
    """
    if causal:
        if phi_q.size(-2) != phi_k.size(-2):
            raise ValueError("causal linear attention needs as many keys as queries (self-attention)")
        kv = (phi_k.unsqueeze(-1) * v.unsqueeze(-2)).cumsum(dim=-3)  # (..., L, m, d_v): sum over j <= i
        z = phi_k.cumsum(dim=-2)  # (..., L, m)
        numerator = (phi_q.unsqueeze(-2) @ kv).squeeze(-2)  # (..., L, d_v)
        denominator = (phi_q * z).sum(dim=-1, keepdim=True)  # (..., L, 1)
    else:
        kv = phi_k.transpose(-2, -1) @ v  # (..., m, d_v): once for all queries
        z = phi_k.sum(dim=-2)  # (..., m)
        numerator = phi_q @ kv  # (..., Lq, d_v)
        denominator = phi_q @ z.unsqueeze(-1)  # (..., Lq, 1)
    return numerator / denominator  # (..., Lq, d_v)


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    feature_map: Callable[[torch.Tensor], torch.Tensor] = elu_feature_map,
) -> torch.Tensor:
    """Linear attention: ``phi(Q) (phi(K)^T V)``, normalized, without an ``(Lq, Lk)`` matrix.

    It equals attention whose weights are ``phi(q_i) . phi(k_j)`` normalized
    over the keys (tested), computed right to left: ``O(L m d_v)`` time and
    ``O(m d_v)`` for the key sums (``O(L m d_v)`` with ``causal``, whose prefix
    sums keep one per position). ``feature_map`` must give positive features
    (default :func:`elu_feature_map`).

    Returns:
        ``(..., Lq, d_v)``.
    """
    return _kernel_attention(feature_map(q), feature_map(k), v, causal)  # (..., Lq, d_v)


def random_projection(
    n_features: int,
    d: int,
    generator: torch.Generator | None = None,
    orthogonal: bool = True,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The ``(n_features, d)`` random matrix ``W`` of Performer's features: rows ``w ~ N(0, I_d)``.

    With ``orthogonal`` (Performer's default), the rows come in blocks of
    ``d`` orthogonal directions, each row rescaled to the length of a
    Gaussian vector, so every row is still ``N(0, I)`` but the estimate has a
    lower variance.
    """
    if orthogonal:
        blocks = []
        for start in range(0, n_features, d):
            gaussian = torch.randn(d, d, generator=generator, dtype=torch.float64)
            basis, _ = torch.linalg.qr(gaussian)  # (d, d), orthonormal columns
            blocks.append(basis.T[: n_features - start])  # rows: orthonormal directions
        directions = torch.cat(blocks)  # (m, d)
        lengths = torch.randn(n_features, d, generator=generator, dtype=torch.float64).norm(dim=-1)  # (m,)
        w = directions * lengths[:, None]  # (m, d)
    else:
        w = torch.randn(n_features, d, generator=generator, dtype=torch.float64)  # (m, d)
    return w.to(dtype)


def performer_features(x: torch.Tensor, projection: torch.Tensor, is_query: bool) -> torch.Tensor:
    """Positive random features ``phi(x) = exp(W x' - |x'|^2 / 2) / sqrt(m)``, ``x' = x / d^(1/4)``.

    For rows ``w ~ N(0, I)`` of ``projection`` (``(m, d)``),
    ``E[phi(q) . phi(k)] = exp(q . k / sqrt(d))``: the unnormalized weight of
    softmax attention (FAVOR+, Choromanski et al., 2021). Each feature is
    positive, so the estimated weights are too. For numerical safety the
    largest exponent is subtracted, per query (``is_query``) or once for all
    the keys; linear attention's ratio cancels those factors exactly.

    Returns:
        ``(..., L, m)``.
    """
    d = x.size(-1)
    x = x / d**0.25  # so that x' . y' = x . y / sqrt(d)
    projected = x @ projection.T.to(x.dtype)  # (..., L, m)
    exponent = projected - (x * x).sum(dim=-1, keepdim=True) / 2  # (..., L, m)
    if is_query:
        shift = exponent.amax(dim=-1, keepdim=True)  # (..., L, 1): one factor per query, cancels
    else:
        shift = exponent.amax(dim=(-2, -1), keepdim=True)  # (..., 1, 1): one factor for all keys
    return torch.exp(exponent - shift) / math.sqrt(projection.size(0))  # (..., L, m)


def performer_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projection: torch.Tensor, causal: bool = False
) -> torch.Tensor:
    """Softmax attention estimated with ``m`` positive random features (Performer), in linear time.

    ``projection``: ``(m, d_k)`` from :func:`random_projection`; more features,
    smaller error (about ``1 / sqrt(m)``). The estimate is of
    ``softmax(Q K^T / sqrt(d_k)) V``, with the causal mask when ``causal``.

    Returns:
        ``(..., Lq, d_v)``.
    """
    phi_q = performer_features(q, projection, is_query=True)  # (..., Lq, m)
    phi_k = performer_features(k, projection, is_query=False)  # (..., Lk, m)
    return _kernel_attention(phi_q, phi_k, v, causal)  # (..., Lq, d_v)
