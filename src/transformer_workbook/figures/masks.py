"""Chapter 6's figures: masks as grids, and the mask explorer (padding, causal, lengths).

Three layers, so each can be tested without a display:

1. :func:`explorer_attention`: the pure computation: one sequence's combined
   mask and the attention weights it leaves (the course's attention, on seeded
   random queries and keys);
2. :func:`draw_mask` (any bool mask as a grid) and
   :func:`draw_mask_explorer` (the mask and its attention heatmap, side by
   side);
3. :data:`MASK_EXPLORER`, declared once with the shared
   :class:`~transformer_workbook.figures.explorer.Explorer`, and
   :func:`mask_explorer`, which builds the live widget (and, displayed, the
   precomputed figure for pages without a kernel).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap

from ..attention import scaled_dot_product_attention
from ..masks import causal_mask, padding_mask
from .common import as_tensor, attention_heatmap, new_ax
from .explorer import Choice, Explorer, Slider

__all__ = [
    "MASK_EXPLORER",
    "MASK_TOKENS",
    "PADDING_SIDES",
    "ExplorerAttention",
    "draw_mask",
    "draw_mask_explorer",
    "explorer_attention",
    "mask_explorer",
]

#: The explorer's sentence: the first ``real`` words are the real tokens.
MASK_TOKENS: tuple[str, ...] = ("the", "cat", "sat", "on", "the", "mat", "and", "slept", "all", "day",
                                "long", ".")
#: Where the padding goes: drop-down value -> label.
PADDING_SIDES: dict[str, str] = {"right": "at the end", "left": "at the start", "none": "none"}
PAD = "<pad>"

#: Blocked cells light, allowed cells dark blue.
_MASK_COLORS = ListedColormap(["#f2f2f2", "#2b5d9b"])


@dataclasses.dataclass
class ExplorerAttention:
    """One setting of the explorer, computed.

    Attributes:
        tokens: the ``L`` tokens, ``"<pad>"`` at padded positions.
        keep: ``(L,)`` bool, True at real tokens (the padding mask).
        mask: ``(L, L)`` bool, the combined mask (True = may attend).
        weights: ``(L, L)`` attention weights under ``mask``; a row whose
            query may attend to nothing is all zeros.
        empty_rows: the queries that may attend to nothing.
    """

    tokens: list[str]
    keep: torch.Tensor
    mask: torch.Tensor
    weights: torch.Tensor
    empty_rows: list[int]


def explorer_attention(
    length: int = 8, real: int = 5, padding: str = "right", causal: bool = True, seed: int = 0
) -> ExplorerAttention:
    """The mask and attention weights of one sequence of ``length`` positions, ``real`` of them tokens.

    ``padding`` puts the ``length - real`` padding positions at the end
    (``"right"``), at the start (``"left"``), or nowhere (``"none"``: every
    position is a token, ``real`` is ignored). The padding mask hides the
    padded *keys* (columns) from every query; ``causal`` adds the causal
    mask; the two are combined with ``&`` (:func:`~transformer_workbook.masks.combine_masks`).
    The weights come from the course's attention on queries and keys drawn
    from a generator seeded with ``seed`` (``d_k = 8``).
    """
    if padding not in PADDING_SIDES:
        raise ValueError(f"padding must be one of {sorted(PADDING_SIDES)}, got {padding!r}")
    if not 1 <= length <= len(MASK_TOKENS):
        raise ValueError(f"length must be in [1, {len(MASK_TOKENS)}], got {length}")
    if padding == "none":
        real = length
    if not 1 <= real <= length:
        raise ValueError(f"real must be in [1, length={length}], got {real}")
    keep = padding_mask(torch.tensor([real]), length)[0]  # (L,): real tokens first
    if padding == "left":
        keep = keep.flip(0)  # (L,): padding first, then the tokens
    words = iter(MASK_TOKENS)
    tokens = [next(words) if k else PAD for k in keep.tolist()]
    mask = keep[None, :].expand(length, length)  # (Lq, Lk): padded keys hidden from every query
    if causal:
        mask = mask & causal_mask(length)  # (Lq, Lk)
    g = torch.Generator().manual_seed(int(seed))
    q = torch.randn(length, 8, generator=g)  # (L, d_k)
    k = torch.randn(length, 8, generator=g)  # (L, d_k)
    _, weights = scaled_dot_product_attention(q, k, k, mask)  # (L, L)
    empty = [i for i in range(length) if not bool(mask[i].any())]
    return ExplorerAttention(tokens, keep, mask, weights, empty)


def draw_mask(
    mask: Any,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    *,
    annotate: bool | None = None,
    xlabel: str = "key",
    ylabel: str = "query",
) -> Axes:
    """Draw a bool mask ``(Lq, Lk)`` as a grid: dark = True (may attend), light = False (blocked).

    ``annotate`` writes 1 or 0 in each cell (default: for masks up to 10 x 10).
    A ``(Lk,)`` mask (a padding mask for one sequence) is drawn as one row.
    Returns the Axes.
    """
    m = as_tensor(mask)
    if m.dim() == 1:
        m = m[None]
    while m.dim() > 2 and m.size(0) == 1:
        m = m[0]
    if m.dim() != 2:
        raise ValueError(f"draw_mask expects an (Lq, Lk) mask, got shape {tuple(m.shape)}")
    n_q, n_k = m.shape
    ax = new_ax(ax, (0.4 * n_k + 1.5, 0.4 * n_q + 1.0))
    ax.imshow(m.numpy(), cmap=_MASK_COLORS, vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(n_k))
    ax.set_yticks(range(n_q))
    ax.set_xticklabels(list(x_labels) if x_labels is not None else [str(j) for j in range(n_k)],
                       rotation=45 if x_labels is not None else 0, ha="right" if x_labels is not None
                       else "center", rotation_mode="anchor", fontsize=8)
    ax.set_yticklabels(list(y_labels) if y_labels is not None else [str(i) for i in range(n_q)],
                       fontsize=8)
    ax.set_xticks([j - 0.5 for j in range(1, n_k)], minor=True)
    ax.set_yticks([i - 0.5 for i in range(1, n_q)], minor=True)
    ax.grid(which="minor", color="white", linewidth=1)
    ax.tick_params(which="minor", length=0)
    if annotate is None:
        annotate = n_q <= 10 and n_k <= 10
    if annotate:
        for i in range(n_q):
            for j in range(n_k):
                on = bool(m[i, j])
                ax.text(j, i, "1" if on else "0", ha="center", va="center", fontsize=8,
                        color="white" if on else "#888888")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def draw_mask_explorer(
    length: int = 8,
    real: int = 5,
    padding: str = "right",
    causal: bool = True,
    seed: int = 0,
    axes: tuple[Axes, Axes] | None = None,
    *,
    annotate: bool = False,
) -> tuple[Axes, Axes]:
    """Two panels: the combined mask, and the attention weights it leaves (:func:`explorer_attention`).

    The weights panel has the mask's rows and columns (its labels are left
    out). A query that may attend to nothing (left padding under a causal
    mask) has its row label in red and all-zero weights: the course's attention gives
    zeros there, a naive softmax NaN. ``annotate`` writes the values in the
    cells (slower to draw; the explorer's frames leave it off).
    """
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, 2, figsize=(6.6, 3.2), layout="constrained")
    a = explorer_attention(length, real, padding, causal, seed)
    parts = []
    if padding != "none":
        parts.append(f"padding {PADDING_SIDES[padding]}")
    if causal:
        parts.append("causal")
    title = " & ".join(parts) if parts else "no mask"
    draw_mask(a.mask, a.tokens, a.tokens, ax=axes[0], title=f"mask: {title}", annotate=annotate)
    for i, label in enumerate(axes[0].get_yticklabels()):
        if i in a.empty_rows:
            label.set_color("#c62828")
    attention_heatmap(a.weights, ax=axes[1], colorbar=False, annotate=annotate,
                      xlabel="key (same order)", ylabel="", title="attention weights")
    axes[1].set_xticks([])  # the same rows and columns as the mask: its labels serve both
    axes[1].set_yticks([])
    if a.empty_rows:
        axes[1].set_title(f"attention weights: {len(a.empty_rows)} row(s)\nwith nothing to attend, all 0",
                          fontsize=9, color="#c62828")
    return axes[0], axes[1]


def _frame(axes: tuple[Axes, Axes], length: int, real: int, padding: str, causal: bool) -> None:
    draw_mask_explorer(length, min(real, length), padding, causal, axes=axes)


#: The explorer's declaration: the real-token slider's maximum follows the length.
MASK_EXPLORER = Explorer(
    "mask_explorer",
    controls=(
        Slider("length", "sequence length L", 2, len(MASK_TOKENS), default=8, book=(4, 8)),
        Slider("real", "real tokens", 1, len(MASK_TOKENS), default=5, book=(2, 5),
               max_from=("length", lambda n: n)),
        Choice("padding", "padding", PADDING_SIDES, default="right"),
        Choice("causal", "causal mask", {True: "on", False: "off"}, default=True),
    ),
    draw=_frame,
    figsize=(6.6, 3.3),
    panels=2,
    rows=(("length", "real"), ("padding", "causal")),
    colors=48,
)


def mask_explorer(length: int = 8, real: int = 5, padding: str = "right", causal: bool = True):
    """Sliders for the length and the real tokens, drop-downs for the padding side and the causal mask.

    Shows the combined mask and the attention weights it leaves
    (:func:`draw_mask_explorer`); returns the widget (display it as a cell's
    last expression). Displayed, it also carries the figure precomputed for
    pages without a kernel.
    """
    if padding not in PADDING_SIDES:
        raise ValueError(f"padding must be one of {sorted(PADDING_SIDES)}, got {padding!r}")
    return MASK_EXPLORER.widget(length=length, real=real, padding=padding, causal=bool(causal))
