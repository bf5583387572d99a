"""Shared matplotlib helpers for the chapters' figures.

Every function takes an optional ``ax`` (it draws into a new figure when
``ax`` is None) and returns what it drew on (the Axes, or the Figure for a
grid), so the same function serves a static figure, a small-multiples grid and
an ipywidgets callback. Nothing here needs ipywidgets, and nothing calls
``plt.show()``: the notebook cell or the widget callback does.

Organised by chapter: a later chapter appends its own section at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .attention import attention_entropy

__all__ = [
    "attention_heatmap",
    "attention_distribution",
    "entropy_of",
    "small_multiples",
]


def _as_tensor(x: Any) -> torch.Tensor:
    """A detached float64 CPU tensor (accepts tensors, NumPy arrays, lists)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64)
    return torch.as_tensor(x, dtype=torch.float64)


def _new_ax(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


# ---------------------------------------------------------------------------
# Chapter 1: attention
# ---------------------------------------------------------------------------


def entropy_of(weights_row: Any) -> float:
    """Shannon entropy (nats) of one attention distribution; zero weights count 0."""
    return float(attention_entropy(_as_tensor(weights_row).flatten()))


def attention_heatmap(
    weights: Any,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    *,
    annotate: bool | None = None,
    colorbar: bool = True,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    cmap: str = "viridis",
    fmt: str = ".2f",
    xlabel: str = "key (attended to)",
    ylabel: str = "query (attending)",
) -> Axes:
    """Draw a ``(Lq, Lk)`` matrix of attention weights: one row per query.

    Args:
        weights: ``(Lq, Lk)`` tensor or array (a leading batch/head of size 1 is squeezed).
        x_labels, y_labels: token labels for the keys (columns) and queries (rows).
        ax: Axes to draw into; a new figure when None.
        title: optional title.
        annotate: write each value in its cell; default: only when the matrix
            has at most 12 x 12 entries.
        colorbar: add a colour bar.
        vmin, vmax: colour range; defaults suit weights in [0, 1]. Pass None
            for the data's own range (e.g. raw scores).
        cmap: matplotlib colour map.
        fmt: format of the annotations (``".2f"``; ``".0f"`` for integers).
        xlabel, ylabel: axis labels.

    Returns:
        The Axes.
    """
    w = _as_tensor(weights)
    while w.dim() > 2 and w.size(0) == 1:
        w = w[0]
    if w.dim() != 2:
        raise ValueError(f"attention_heatmap expects a (Lq, Lk) matrix, got shape {tuple(w.shape)}")
    n_q, n_k = w.shape
    ax = _new_ax(ax, (0.6 * n_k + 2.2, 0.5 * n_q + 1.2))
    image = ax.imshow(w.numpy(), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(n_k))
    ax.set_yticks(range(n_q))
    if x_labels is not None:
        ax.set_xticklabels(list(x_labels), rotation=45, ha="right", rotation_mode="anchor")
    else:
        ax.set_xticklabels([str(j) for j in range(n_k)])
    ax.set_yticklabels(list(y_labels) if y_labels is not None else [str(i) for i in range(n_q)])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if annotate is None:
        annotate = n_q <= 12 and n_k <= 12
    if annotate:
        lo = float(w.min()) if vmin is None else vmin
        hi = float(w.max()) if vmax is None else vmax
        mid = (lo + hi) / 2
        for i in range(n_q):
            for j in range(n_k):
                value = float(w[i, j])
                ax.text(j, i, format(value, fmt), ha="center", va="center", fontsize=8,
                        color="black" if value > mid else "white")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title)
    return ax


def attention_distribution(
    weights_row: Any,
    labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    *,
    color: str = "C0",
    show_entropy: bool = True,
) -> Axes:
    """Bar chart of one query's attention weights over the keys, entropy in the title.

    The title's last line reads ``entropy H = 1.23 nats (max 2.30)``: 0 means
    all weight on one key, the maximum ``log(Lk)`` means uniform. The largest
    weight's bar is drawn darker.

    Args:
        weights_row: ``(Lk,)`` weights of one query (a row of the weights matrix).
        labels: key labels (tokens); default 0, 1, 2, ...
        ax: Axes to draw into; a new figure when None.
        title: first line of the title.
        color: bar colour.
        show_entropy: add the entropy line to the title.

    Returns:
        The Axes (one bar patch per key).
    """
    w = _as_tensor(weights_row).flatten()
    n = w.numel()
    ax = _new_ax(ax, (max(3.0, 0.45 * n + 1.5), 2.6))
    positions = list(range(n))
    bars = ax.bar(positions, w.numpy(), color=color, alpha=0.55)
    if n:
        bars[int(w.argmax())].set_alpha(1.0)
    ax.set_ylim(0, 1.05)
    ax.set_xticks(positions)
    if labels is not None:
        if n > 8:
            ax.set_xticklabels(list(labels), rotation=45, ha="right", rotation_mode="anchor")
        else:
            ax.set_xticklabels(list(labels))
    else:
        ax.set_xticklabels([str(i) for i in positions])
    ax.set_ylabel("weight")
    lines = [title] if title else []
    if show_entropy:
        h_max = math.log(n) if n else 0.0
        lines.append(f"entropy H = {entropy_of(w):.2f} nats (max {h_max:.2f})")
    if lines:
        ax.set_title("\n".join(lines), fontsize=9)
    return ax


def small_multiples(
    draw_fn: Callable[[Axes, Any, Any], Any],
    rows: Sequence[Any],
    cols: Sequence[Any],
    *,
    row_label: Callable[[Any], str] | str | None = None,
    col_label: Callable[[Any], str] | str | None = None,
    panel_size: tuple[float, float] = (2.3, 1.9),
    suptitle: str | None = None,
    sharey: bool = True,
) -> Figure:
    """Draw ``draw_fn(ax, row_value, col_value)`` on a ``len(rows) x len(cols)`` grid.

    The static twin of a widget: pass the same drawing function the widget's
    callback uses, and a grid of the slider values worth seeing.

    Args:
        draw_fn: called once per panel as ``draw_fn(ax, row_value, col_value)``.
        rows, cols: parameter values for the grid's rows and columns.
        row_label, col_label: format string (``"T = {}"``) or function giving the
            label written left of each row / above each column; None for none.
        panel_size: (width, height) of one panel in inches.
        suptitle: title of the whole figure.
        sharey: share the y-axis across panels.

    Returns:
        The Figure; its axes are ``fig.axes`` in row-major order.
    """
    n_r, n_c = len(rows), len(cols)
    if n_r == 0 or n_c == 0:
        raise ValueError("small_multiples needs at least one row value and one column value")
    fig, axes = plt.subplots(
        n_r, n_c, figsize=(panel_size[0] * n_c + 0.6, panel_size[1] * n_r + 0.6),
        sharey=sharey, squeeze=False, layout="constrained",
    )

    def fmt(label, value):
        if label is None:
            return None
        return label(value) if callable(label) else label.format(value)

    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            draw_fn(axes[i][j], r, c)
            if sharey and j > 0:
                axes[i][j].set_ylabel("")  # the first column's label serves the row
    for j, c in enumerate(cols):
        text = fmt(col_label, c)
        if text:
            axes[0][j].annotate(text, xy=(0.5, 1.0), xycoords="axes fraction",
                                xytext=(0, 24), textcoords="offset points",
                                ha="center", va="bottom", fontsize=10, fontweight="bold")
    for i, r in enumerate(rows):
        text = fmt(row_label, r)
        if text:
            axes[i][0].annotate(text, xy=(0.0, 0.5), xycoords="axes fraction",
                                xytext=(-40, 0), textcoords="offset points",
                                ha="right", va="center", rotation=90,
                                fontsize=10, fontweight="bold")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


# ---------------------------------------------------------------------------
# --- Chapter 3: positional encoding
# ---------------------------------------------------------------------------

__all__ += [
    "positional_heatmap",
    "positional_encoding_row",
    "positional_encoding_column",
    "positional_similarity",
]


def positional_heatmap(
    pe: Any,
    ax: Axes | None = None,
    title: str | None = None,
    *,
    colorbar: bool = True,
    cmap: str = "RdBu_r",
    vmin: float | None = -1.0,
    vmax: float | None = 1.0,
    xlabel: str = "dimension",
    ylabel: str = "position",
) -> Axes:
    """Draw a ``(seq_len, d_model)`` positional-encoding table: one row per position.

    Args:
        pe: ``(seq_len, d_model)`` tensor or array.
        ax: Axes to draw into; a new figure when None.
        title: optional title.
        colorbar: add a colour bar.
        cmap: a diverging colour map (values are in [-1, 1] for the sinusoidal table).
        vmin, vmax: colour range; None for the data's own range (e.g. learned embeddings).
        xlabel, ylabel: axis labels.

    Returns:
        The Axes.
    """
    table = _as_tensor(pe)
    if table.dim() != 2:
        raise ValueError(f"positional_heatmap expects a (seq_len, d_model) table, got {tuple(table.shape)}")
    ax = _new_ax(ax, (6.0, 3.6))
    image = ax.imshow(table.numpy(), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                      interpolation="nearest")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def positional_encoding_row(
    pe: Any, position: int, ax: Axes | None = None, title: str | None = None, *, dim: int | None = None
) -> Axes:
    """Bar chart of one position's encoding ``pe[position]`` over the dimensions.

    Even dimensions (sines) are drawn in one colour and odd ones (cosines) in
    another; ``dim``, if given, is outlined.
    """
    table = _as_tensor(pe)
    row = table[position]  # (d_model,)
    d = row.numel()
    ax = _new_ax(ax, (4.0, 2.6))
    colors = ["C0" if j % 2 == 0 else "C1" for j in range(d)]
    bars = ax.bar(range(d), row.numpy(), color=colors, width=0.9)
    if dim is not None and 0 <= dim < d:
        bars[dim].set_edgecolor("black")
        bars[dim].set_linewidth(1.5)
    ax.set_ylim(-1.1, 1.1)
    ax.set_xlabel("dimension (blue: sin, orange: cos)")
    ax.set_ylabel("PE")
    ax.set_title(title or f"encoding of position {position}", fontsize=9)
    return ax


def positional_encoding_column(
    pe: Any, dim: int, ax: Axes | None = None, title: str | None = None, *, position: int | None = None
) -> Axes:
    """One dimension across positions, ``pe[:, dim]``: a wave; ``position``, if given, is marked."""
    table = _as_tensor(pe)
    col = table[:, dim]  # (seq_len,)
    ax = _new_ax(ax, (4.0, 2.6))
    ax.plot(range(col.numel()), col.numpy(), color="C0" if dim % 2 == 0 else "C1", lw=1.2)
    if position is not None and 0 <= position < col.numel():
        ax.plot([position], [float(col[position])], "ko", ms=4)
    ax.set_ylim(-1.1, 1.1)
    ax.set_xlabel("position")
    ax.set_ylabel("PE")
    if title is None:
        d_model = table.shape[1]
        wavelength = 2 * math.pi * 10000 ** (2 * (dim // 2) / d_model)
        kind = "sin" if dim % 2 == 0 else "cos"
        title = f"dimension {dim} ({kind}), wavelength {wavelength:.3g}"
    ax.set_title(title, fontsize=9)
    return ax


def positional_similarity(
    pe: Any, position: int, ax: Axes | None = None, title: str | None = None
) -> Axes:
    """Cosine similarity of position ``position``'s encoding with every position's."""
    table = _as_tensor(pe)
    norms = table.norm(dim=-1).clamp_min(1e-12)  # (seq_len,)
    sim = table @ table[position] / (norms * norms[position])  # (seq_len,)
    ax = _new_ax(ax, (4.0, 2.6))
    ax.plot(range(sim.numel()), sim.numpy(), color="C2", lw=1.2)
    ax.axvline(position, color="k", lw=0.8, ls="--")
    ax.set_ylim(-0.3, 1.05)
    ax.set_xlabel("other position")
    ax.set_ylabel("cosine similarity")
    ax.set_title(title or f"similarity of position {position} to all", fontsize=9)
    return ax
