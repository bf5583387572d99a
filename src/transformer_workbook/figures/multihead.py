"""Chapter 2's figures: the heads explorer (number of heads, which head).

Three layers: :func:`heads_weights` (pure computation),
:func:`draw_heads_explorer` (one heatmap into an Axes), and
:data:`HEADS_EXPLORER` / :func:`heads_explorer` (the explorer, declared with the
shared :class:`~transformer_workbook.figures.explorer.Explorer`).
"""

from __future__ import annotations

import functools
import math

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes

from .common import attention_heatmap
from .explorer import Choice, Explorer, Slider

__all__ = [
    "HEADS_CHOICES",
    "HEADS_D_MODEL",
    "HEADS_EXPLORER",
    "HEADS_TOKENS",
    "draw_heads_explorer",
    "heads_explorer",
    "heads_weights",
]

#: The sentence of the Chapter 2 explorer.
HEADS_TOKENS: tuple[str, ...] = ("the", "cat", "sat", "on", "the", "mat")
#: The explorer's model width, and the numbers of heads it offers (divisors of it).
HEADS_D_MODEL = 24
HEADS_CHOICES: tuple[int, ...] = (1, 2, 3, 4, 6, 8)


def heads_weights(
    n_heads: int = 2,
    seed: int = 0,
    d_model: int = HEADS_D_MODEL,
    gain: float = 1.5,
) -> torch.Tensor:
    """Every head's attention weights ``(H, L, L)`` on :data:`HEADS_TOKENS`, random weights.

    A :class:`~transformer_workbook.multihead.MultiHeadAttention` with random
    projections (entries N(0, gain^2 / d_model), so queries and keys have
    entries of variance about gain^2) attends over random word embeddings
    (one per distinct word). Everything is drawn from a generator seeded with
    ``seed`` and does not depend on ``n_heads``: changing the number of heads
    cuts the *same* projections into more, narrower heads.
    """
    if n_heads < 1 or d_model % n_heads:
        raise ValueError(f"n_heads must divide d_model={d_model}, got {n_heads}")
    return _heads_weights(n_heads, int(seed), d_model, float(gain)).clone()


@functools.lru_cache(maxsize=64)
def _heads_weights(n_heads: int, seed: int, d_model: int, gain: float) -> torch.Tensor:
    # Cached: the explorer's frames draw each head of the same weights.
    from ..multihead import MultiHeadAttention

    g = torch.Generator().manual_seed(seed)
    vocab = sorted(set(HEADS_TOKENS))
    table = torch.randn(len(vocab), d_model, generator=g)  # (V, d_model)
    x = table[[vocab.index(t) for t in HEADS_TOKENS]][None]  # (1, L, d_model)
    mha = MultiHeadAttention(d_model, n_heads, bias=False)
    with torch.no_grad():
        for layer in (mha.q_proj, mha.k_proj, mha.v_proj, mha.out_proj):
            layer.weight.copy_(torch.randn(d_model, d_model, generator=g) * gain / math.sqrt(d_model))
        _, weights = mha(x, x, x)  # (1, H, L, L)
    return weights[0]  # (H, L, L)


def draw_heads_explorer(
    n_heads: int = 2,
    head: int = 0,
    seed: int = 0,
    ax: Axes | None = None,
    *,
    annotate: bool | None = None,
    colorbar: bool = True,
) -> Axes:
    """Heatmap of one head's weights from :func:`heads_weights`; returns the Axes.

    When ``head >= n_heads`` (a grid's empty cell) the Axes is left blank.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(4.4, 3.4))
    if not 0 <= head < n_heads:
        ax.axis("off")
        return ax
    weights = heads_weights(n_heads, seed)  # (H, L, L)
    d_head = HEADS_D_MODEL // n_heads
    return attention_heatmap(
        weights[head], HEADS_TOKENS, HEADS_TOKENS, ax=ax, annotate=annotate, colorbar=colorbar,
        title=f"head {head} of {n_heads} (d_head = {d_head})",
    )


def _frame(ax: Axes, n_heads: int, head: int, seed: int) -> None:
    draw_heads_explorer(n_heads, min(head, n_heads - 1), seed, ax=ax)


#: The explorer's declaration: the head slider's maximum follows the number of heads.
HEADS_EXPLORER = Explorer(
    "heads_explorer",
    controls=(
        Choice("n_heads", "number of heads", HEADS_CHOICES, default=2),
        Slider("head", "head", 0, max(HEADS_CHOICES) - 1, default=0,
               max_from=("n_heads", lambda n: n - 1)),
        Slider("seed", "random example", 0, 20, default=0, book=(0,)),
    ),
    draw=_frame,
    figsize=(4.8, 3.6),
    rows=(("n_heads", "head"), ("seed",)),
    colors=64,  # the colour bar's gradient
)


def heads_explorer(n_heads: int = 2, head: int = 0, seed: int = 0):
    """A dropdown for the number of heads, sliders for the head and the example; returns the widget.

    Shows the chosen head's heatmap (:func:`draw_heads_explorer`). The head
    slider's range follows the number of heads. Display it by making it the
    last expression of a cell.
    """
    if n_heads not in HEADS_CHOICES:
        raise ValueError(f"n_heads must be one of {HEADS_CHOICES}, got {n_heads}")
    if not 0 <= head < n_heads:
        raise ValueError(f"head must be in [0, {n_heads}), got {head}")
    return HEADS_EXPLORER.widget(n_heads=n_heads, head=head, seed=seed)
