"""Chapter 3: positional encoding.

Attention by itself is permutation-equivariant: shuffle the tokens and the
outputs shuffle the same way, so without help a Transformer cannot tell
"dog bites man" from "man bites dog". This module holds the course's pieces
that give it a sense of order:

- :func:`sinusoidal_encoding`: the fixed table of "Attention Is All You Need"
  (Vaswani et al., 2017, section 3.5);
- :class:`PositionalEncoding`: a module that adds that table to embeddings;
- :class:`LearnedPositionalEmbedding`: a trained table (BERT, GPT-2), which has
  nothing to offer past ``max_len``;
- :func:`shift_matrix`: the fixed linear map taking PE(pos) to PE(pos + k);
- :func:`apply_rope`: rotary position embeddings (RoPE, Su et al., 2021), under
  which a query-key score depends only on the two positions' offset; it pairs
  adjacent features, like the paper;
- :func:`apply_rope_half` and :func:`rotate_half`: the same rotation in the
  layout of Hugging Face's Llama code, which pairs feature ``i`` with
  ``i + d/2``; :func:`interleaved_to_halves` is the permutation between the two;
- :func:`alibi_slopes` and :func:`alibi_bias`: ALiBi (Press et al., 2022), no
  encoding at all but a penalty on the scores proportional to the distance,
  with a different slope for every head.

Shapes are batch-first, as everywhere in the course: embeddings are
``(batch, seq_len, d_model)``; the modules accept any number of leading
dimensions before ``(seq_len, d_model)``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "sinusoidal_encoding",
    "shift_matrix",
    "PositionalEncoding",
    "LearnedPositionalEmbedding",
    "apply_rope",
    "rotate_half",
    "apply_rope_half",
    "interleaved_to_halves",
    "alibi_slopes",
    "alibi_bias",
]


def sinusoidal_encoding(seq_len: int, d_model: int) -> torch.Tensor:
    """The sinusoidal positional-encoding table of "Attention Is All You Need".

    .. math::

        PE_{(pos, 2i)} = \\sin\\left(pos / 10000^{2i / d_{model}}\\right), \\qquad
        PE_{(pos, 2i+1)} = \\cos\\left(pos / 10000^{2i / d_{model}}\\right)

    Column ``2i`` (even) holds a sine and column ``2i + 1`` (odd) a cosine of
    the *same* frequency ``1 / 10000^(2i / d_model)``: ``i`` counts pairs of
    columns, not columns. Positions start at 0, so row 0 is
    ``[0, 1, 0, 1, ...]``. When ``d_model`` is odd the last column is a sine
    whose cosine partner would fall past the end.

    The wavelengths form a geometric progression from ``2 pi`` (pair 0) to
    almost ``10000 * 2 pi`` (the last pair).

    Args:
        seq_len: number of positions (rows), ``>= 0``.
        d_model: encoding size (columns), ``>= 1``.

    Returns:
        A float32 tensor of shape ``(seq_len, d_model)`` with entries in [-1, 1].
        (Computed in float64, then rounded once to float32.)
    """
    if seq_len < 0 or d_model < 1:
        raise ValueError(f"need seq_len >= 0 and d_model >= 1, got {seq_len} and {d_model}")
    pos = torch.arange(seq_len, dtype=torch.float64)[:, None]  # (L, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (ceil(d/2),): 0, 2, 4, ...
    inv_freq = 10000.0 ** (-two_i / d_model)  # (ceil(d/2),): 1 / 10000^(2i/d)
    angles = pos * inv_freq  # (L, ceil(d/2))
    pe = torch.zeros(seq_len, d_model, dtype=torch.float64)  # (L, d)
    pe[:, 0::2] = torch.sin(angles)  # (L, ceil(d/2)) even columns
    pe[:, 1::2] = torch.cos(angles[:, : d_model // 2])  # (L, floor(d/2)) odd columns
    return pe.to(torch.float32)


def shift_matrix(offset: float, d_model: int) -> torch.Tensor:
    """The matrix ``M`` with ``PE(pos + offset) = M @ PE(pos)`` for every ``pos``.

    Pair ``i`` of the encoding is the point ``(sin(w_i pos), cos(w_i pos))`` on
    the unit circle, with ``w_i = 1 / 10000^(2i / d_model)``. Moving ``offset``
    positions turns it by the angle ``w_i * offset``:

    .. math::

        \\begin{pmatrix} \\sin w(p+k) \\\\ \\cos w(p+k) \\end{pmatrix} =
        \\begin{pmatrix} \\cos wk & \\sin wk \\\\ -\\sin wk & \\cos wk \\end{pmatrix}
        \\begin{pmatrix} \\sin wp \\\\ \\cos wp \\end{pmatrix}

    so ``M`` is block diagonal with one 2x2 rotation per pair. It depends on
    the offset only, never on ``pos``: a fixed linear function, which a linear
    layer can learn once for every position. For a table of rows,
    ``PE[k:] == PE[:-k] @ M.T``.

    Args:
        offset: the shift ``k`` (any real number; negative shifts go back).
        d_model: the encoding size; must be even (an odd table's last sine has
            no cosine partner, so no linear map exists for it).

    Returns:
        A float32 ``(d_model, d_model)`` matrix, orthogonal (a rotation).
    """
    if d_model < 2 or d_model % 2:
        raise ValueError(
            f"shift_matrix needs an even d_model (sin/cos pairs), got {d_model}: "
            "the last sine of an odd-sized table has no cosine partner"
        )
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (d/2,)
    angle = float(offset) * 10000.0 ** (-two_i / d_model)  # (d/2,): w_i * k
    c, s = torch.cos(angle), torch.sin(angle)  # (d/2,) each
    m = torch.zeros(d_model, d_model, dtype=torch.float64)  # (d, d)
    idx = torch.arange(0, d_model, 2)  # the sine row/column of each pair
    m[idx, idx] = c  # sin' =  cos(wk) sin + sin(wk) cos
    m[idx, idx + 1] = s
    m[idx + 1, idx] = -s  # cos' = -sin(wk) sin + cos(wk) cos
    m[idx + 1, idx + 1] = c
    return m.to(torch.float32)


def _check_input(module: nn.Module, x: torch.Tensor, past_max_len: str) -> int:
    """Validate ``x`` (..., seq_len, d_model) for a position module; returns seq_len.

    ``past_max_len`` explains the limit, with ``{last}`` and ``{seq_len}`` fields.
    """
    seq_len, d = x.shape[-2], x.shape[-1]
    name = type(module).__name__
    if d != module.d_model:
        raise ValueError(
            f"{name} was built for d_model={module.d_model}, but the input's last dimension "
            f"is {d}; inputs are (..., seq_len, d_model)"
        )
    if seq_len > module.max_len:
        raise ValueError(
            f"sequence length {seq_len} is longer than max_len={module.max_len}: "
            + past_max_len.format(last=module.max_len - 1, seq_len=seq_len)
        )
    return seq_len


class PositionalEncoding(nn.Module):
    """Adds the sinusoidal table to embeddings: ``x + PE[:seq_len]``, then dropout.

    ``PE`` is :func:`sinusoidal_encoding` (``max_len, d_model``), precomputed
    once and registered as a *non-persistent* buffer: it follows the module
    to another device or dtype with ``.to()``, but it is not a parameter (it
    is never trained) and it is not stored in ``state_dict()`` (it can always
    be recomputed from the formula).

    The paper also multiplies the token embeddings by ``sqrt(d_model)`` before
    this sum; that belongs to the embedding layer, not here.

    Args:
        d_model: embedding size.
        max_len: the longest sequence the precomputed table covers. The
            formula is defined at any position: build the module with a
            larger ``max_len`` to go further. (Defined is not learned: a
            model trained on shorter sequences usually degrades past its
            training length, Press et al., 2022.)
        dropout: dropout probability applied to the sum (the paper uses 0.1).

    Shape:
        ``x``: ``(..., seq_len, d_model)``, usually ``(batch, seq_len, d_model)``;
        the output has the same shape.
    """

    pe: torch.Tensor

    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.0) -> None:
        super().__init__()
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, got {max_len}")
        self.d_model = d_model
        self.max_len = max_len
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("pe", sinusoidal_encoding(max_len, d_model), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq_len = _check_input(
            self, x,
            "the precomputed table has rows for positions 0..{last} only. Build "
            "PositionalEncoding(d_model, max_len={seq_len}) or larger (the formula is defined at "
            "any position).",
        )
        return self.dropout(x + self.pe[:seq_len])  # (..., L, d) + (L, d) -> (..., L, d)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}"


class LearnedPositionalEmbedding(nn.Module):
    """Adds a trained position table to embeddings: ``x + P[:seq_len]``.

    ``P`` is an ``nn.Embedding(max_len, d_model)`` whose rows are learned
    with the rest of the model (as in BERT and GPT-2), initialised from
    N(0, 0.02^2). Position ``pos`` uses row ``pos``, so the module has no
    answer for positions ``>= max_len``: there is no row to look up, and
    rows for positions rarely seen in training stay close to their random
    start. It raises a ``ValueError`` past ``max_len``.

    Args:
        max_len: number of positions that have a row (the longest sequence).
        d_model: embedding size.

    Shape:
        ``x``: ``(..., seq_len, d_model)``; the output has the same shape.
    """

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, got {max_len}")
        self.max_len = max_len
        self.d_model = d_model
        self.embedding = nn.Embedding(max_len, d_model)  # (max_len, d_model) table
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq_len = _check_input(
            self, x,
            "a learned position table has rows for positions 0..{last} only, and nothing was "
            "learned for later positions. Truncate the input, or train with a larger max_len.",
        )
        positions = torch.arange(seq_len, device=x.device)  # (L,)
        return x + self.embedding(positions)  # (..., L, d) + (L, d) -> (..., L, d)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, d_model={self.d_model}"


def apply_rope(
    x: torch.Tensor,
    positions: torch.Tensor | None = None,
    base: float = 10000.0,
) -> torch.Tensor:
    """Rotary position embedding (RoPE): rotate each pair of features by ``pos * theta_i``.

    For a vector ``x`` at position ``m``, the pair ``(x_{2i}, x_{2i+1})`` is
    turned by the angle ``m * theta_i`` with ``theta_i = base^(-2i / d)``
    (the sinusoidal encoding's frequencies; RoFormer, Su et al., 2021, eq. 34):

    .. math::

        \\begin{pmatrix} x'_{2i} \\\\ x'_{2i+1} \\end{pmatrix} =
        \\begin{pmatrix} \\cos m\\theta_i & -\\sin m\\theta_i \\\\
                         \\sin m\\theta_i & \\cos m\\theta_i \\end{pmatrix}
        \\begin{pmatrix} x_{2i} \\\\ x_{2i+1} \\end{pmatrix}

    Applied to queries and keys (not values), it makes the score depend on
    the offset only: ``R_m q . R_n k = q . R_{n-m} k``, because rotations
    compose and ``R_m^T = R_{-m}``. Nothing is added to the embeddings.

    This pairs *adjacent* features (2i, 2i+1), like the paper; some libraries
    (e.g. Hugging Face's Llama) pair feature ``i`` with ``i + d/2`` instead,
    which is the same idea with the features permuted.

    Args:
        x: ``(..., L, d)`` with ``d`` even (queries or keys, e.g.
            ``(batch, n_heads, L, d_head)``).
        positions: the position of each of the ``L`` rows, a tensor (or
            sequence) broadcastable to ``x.shape[:-1]``, e.g. ``(L,)``;
            default ``0, 1, ..., L - 1``. Need not be integers.
        base: the frequency base (10000 in RoFormer and Llama 1/2).

    Returns:
        A tensor shaped and typed like ``x``; each pair keeps its length.
    """
    d = x.shape[-1]
    if d % 2:
        raise ValueError(f"apply_rope needs an even feature size (pairs), got {d}")
    if positions is None:
        positions = torch.arange(x.shape[-2], dtype=torch.float64, device=x.device)  # (L,)
    else:
        positions = torch.as_tensor(positions, device=x.device).to(torch.float64)
    two_i = torch.arange(0, d, 2, dtype=torch.float64, device=x.device)  # (d/2,)
    theta = base ** (-two_i / d)  # (d/2,)
    angle = positions[..., None] * theta  # (..., L, d/2)
    cos, sin = torch.cos(angle).to(x.dtype), torch.sin(angle).to(x.dtype)  # (..., L, d/2)
    x_even, x_odd = x[..., 0::2], x[..., 1::2]  # (..., L, d/2) each
    out_even = x_even * cos - x_odd * sin  # (..., L, d/2)
    out_odd = x_even * sin + x_odd * cos  # (..., L, d/2)
    return torch.stack([out_even, out_odd], dim=-1).flatten(-2)  # (..., L, d/2, 2) -> (..., L, d)


def _rope_angles(
    x: torch.Tensor, positions: torch.Tensor | None, base: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and ``sin`` of ``pos * theta_i``, shape ``(..., L, d/2)``, in ``x``'s dtype."""
    d = x.shape[-1]
    if d % 2:
        raise ValueError(f"RoPE needs an even feature size (pairs), got {d}")
    if positions is None:
        positions = torch.arange(x.shape[-2], dtype=torch.float64, device=x.device)  # (L,)
    else:
        positions = torch.as_tensor(positions, device=x.device).to(torch.float64)
    two_i = torch.arange(0, d, 2, dtype=torch.float64, device=x.device)  # (d/2,)
    angle = positions[..., None] * base ** (-two_i / d)  # (..., L, d/2)
    return torch.cos(angle).to(x.dtype), torch.sin(angle).to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[x1, x2] -> [-x2, x1]`` on the last dimension's two halves (Hugging Face's helper).

    In the halves layout, feature ``i`` and feature ``i + d/2`` form pair
    ``i``; this turns every pair by 90 degrees, so that
    ``x * cos + rotate_half(x) * sin`` turns pair ``i`` by the angle whose
    cosine and sine are given.
    """
    x1, x2 = x.chunk(2, dim=-1)  # (..., d/2) each
    return torch.cat([-x2, x1], dim=-1)  # (..., d)


def apply_rope_half(
    x: torch.Tensor,
    positions: torch.Tensor | None = None,
    base: float = 10000.0,
) -> torch.Tensor:
    """RoPE in the *halves* layout (Hugging Face's Llama): pair ``i`` is ``(x_i, x_{i + d/2})``.

    ``x * cos + rotate_half(x) * sin`` with ``cos`` and ``sin`` of
    ``pos * theta_i`` repeated for both halves, ``theta_i = base^(-2i/d)``.
    It is :func:`apply_rope` with the features permuted:
    ``apply_rope_half(x[..., P]) == apply_rope(x)[..., P]`` for
    ``P = interleaved_to_halves(d)``, so query-key scores are the same.
    (Hugging Face's conversion of Meta's Llama checkpoints permutes the rows
    of W_Q and W_K this way, so that the halves code reproduces the original
    model.) Same arguments and result as :func:`apply_rope`.
    """
    cos, sin = _rope_angles(x, positions, base)  # (..., L, d/2) each
    cos = torch.cat([cos, cos], dim=-1)  # (..., L, d): pair i at features i and i + d/2
    sin = torch.cat([sin, sin], dim=-1)  # (..., L, d)
    return x * cos + rotate_half(x) * sin  # (..., L, d)


def interleaved_to_halves(d: int) -> torch.Tensor:
    """The permutation ``P`` that turns the adjacent-pairs layout into the halves layout.

    ``x[..., P]`` puts features ``0, 2, 4, ...`` (each pair's first) in the
    first half and ``1, 3, 5, ...`` (each pair's second) in the second, so
    pair ``i`` moves from features ``(2i, 2i + 1)`` to ``(i, i + d/2)``.
    """
    if d < 2 or d % 2:
        raise ValueError(f"d must be even and positive, got {d}")
    return torch.cat([torch.arange(0, d, 2), torch.arange(1, d, 2)])  # (d,)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """ALiBi's slopes, one per head (Press et al., 2022, section 3): shape ``(n_heads,)``.

    For ``n_heads`` a power of two, the geometric sequence
    ``m_h = 2^(-8h / n_heads)``, ``h = 1, ..., n_heads`` (``1/2, 1/4, ...,
    1/256`` for 8 heads). Otherwise, as in the paper's code: the slopes of the
    largest power of two below ``n_heads``, then every other slope of twice
    that power, until there are ``n_heads``.
    """
    if n_heads < 1:
        raise ValueError(f"n_heads must be at least 1, got {n_heads}")

    def power_of_two(n: int) -> list[float]:
        return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]

    closest = 1 << (n_heads.bit_length() - 1)  # the largest power of two <= n_heads
    slopes = power_of_two(closest)
    if closest < n_heads:
        slopes += power_of_two(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)  # (H,)


def alibi_bias(seq_len: int, n_heads: int) -> torch.Tensor:
    """ALiBi's bias, added to the attention scores: ``-m_h * |i - j|``, shape ``(H, L, L)``.

    Query ``i`` and key ``j`` of head ``h`` get ``-m_h * |i - j|`` added to
    their score before the softmax (:func:`alibi_slopes` gives ``m_h``): the
    farther the key, the lower its score, steeply in heads with a large slope
    (they look near), gently in the others (they look far). Nothing is added to
    the embeddings, and the bias exists for every length. With a causal mask
    this is the paper's bias, ``-m_h * (i - j)`` for ``j <= i``; the absolute
    distance also serves attention without a mask. It broadcasts over a batch
    as ``(B, H, L, L)`` scores' bias.
    """
    if seq_len < 0:
        raise ValueError(f"seq_len must be >= 0, got {seq_len}")
    pos = torch.arange(seq_len)  # (L,)
    distance = (pos[:, None] - pos[None, :]).abs().to(torch.float32)  # (L, L): |i - j|
    return -alibi_slopes(n_heads)[:, None, None] * distance  # (H, 1, 1) * (L, L) -> (H, L, L)
