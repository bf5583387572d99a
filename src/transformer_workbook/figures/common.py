"""Drawing helpers shared by every chapter's figures.

Every function takes an optional ``ax`` (it draws into a new figure when
``ax`` is None) and returns what it drew on (the Axes, or the Figure for a
grid), so the same function serves a static figure, a small-multiples grid and
an explorer's frame. Nothing here needs ipywidgets, and nothing calls
``plt.show()``: the notebook cell or the widget callback does.

Chapter-specific drawings live in the chapter's own module of this package
(``figures/attention.py`` for Chapter 1, ...), not here.

Sizes: figures are saved at :data:`DPI` and an image at most :data:`COLUMN_PX`
pixels wide is shown at the size it is drawn in the book's content column
(sphinx-book-theme, measured in the built book: 688 px with a 1280 px wide
window, 757 px at 1366, 790 px from 1440 on; the narrowest desktop layout,
exactly 1200 px, has 624 px, where it is shown at 92%). Wider images are scaled
down, and their text with them. The inline backend saves a figure with 0.1 in
of padding on each side (``bbox_inches="tight"``), so a figure at most
:data:`COLUMN_IN` inches wide gives at most :data:`COLUMN_PX` pixels. At this
size a 10 pt label is 14 px on the page, and the smallest text the figures use,
8 pt, is 11 px.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..attention import attention_entropy

__all__ = [
    "COLUMN_IN",
    "COLUMN_PX",
    "DPI",
    "attention_distribution",
    "attention_heatmap",
    "entropy_of",
    "overflow_px",
    "small_multiples",
]

#: The widest image the book shows unscaled, in pixels (its column is 688 px at a 1280 px window).
COLUMN_PX = 680
#: Resolution of the stored figures (matplotlib's and the inline backend's default).
DPI = 100
#: The widest figure, in inches, whose saved image (with the inline backend's padding) fits COLUMN_PX.
COLUMN_IN = 6.6


def as_tensor(x: Any) -> torch.Tensor:
    """A detached float64 CPU tensor (accepts tensors, NumPy arrays, lists)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64)
    return torch.as_tensor(x, dtype=torch.float64)


def new_ax(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    """``ax``, or the Axes of a new figure of ``figsize`` inches when ``ax`` is None."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def overflow_px(fig: Figure) -> float:
    """How many pixels the drawn content sticks out of ``fig`` (0 when nothing is cut off).

    Saved at its own size (as an explorer's frames are), anything beyond the
    figure's edge is lost; the inline backend instead widens the image
    (``bbox_inches="tight"``), which the book then scales down.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    content = fig.get_tightbbox(canvas.get_renderer())  # inches
    page = fig.bbox_inches
    beyond = max(page.x0 - content.x0, page.y0 - content.y0, content.x1 - page.x1, content.y1 - page.y1)
    return max(0.0, beyond * fig.dpi)


def entropy_of(weights_row: Any) -> float:
    """Shannon entropy (nats) of one attention distribution; zero weights count 0."""
    return float(attention_entropy(as_tensor(weights_row).flatten()))


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
    w = as_tensor(weights)
    while w.dim() > 2 and w.size(0) == 1:
        w = w[0]
    if w.dim() != 2:
        raise ValueError(f"attention_heatmap expects a (Lq, Lk) matrix, got shape {tuple(w.shape)}")
    n_q, n_k = w.shape
    ax = new_ax(ax, (0.6 * n_k + 2.2, 0.5 * n_q + 1.2))
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
        ax.set_title(title, fontsize=10)
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
    w = as_tensor(weights_row).flatten()
    n = w.numel()
    ax = new_ax(ax, (max(3.0, 0.45 * n + 1.5), 2.6))
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
    width: float | None = None,
    suptitle: str | None = None,
    sharey: bool = True,
) -> Figure:
    """Draw ``draw_fn(ax, row_value, col_value)`` on a ``len(rows) x len(cols)`` grid.

    The static twin of an explorer: pass the same drawing function the
    explorer uses, and a grid of the slider values worth seeing. The figure is
    at most ``width`` inches wide (default :data:`COLUMN_IN`, the book's
    column), so it is shown at the size it is drawn: the panels narrow to fit.

    Args:
        draw_fn: called once per panel as ``draw_fn(ax, row_value, col_value)``.
        rows, cols: parameter values for the grid's rows and columns.
        row_label, col_label: format string (``"T = {}"``) or function giving the
            label written left of each row (left of its y label) / above each column
            (above its title); None for none.
        panel_size: (width, height) of one panel in inches; the width shrinks
            when the grid would be wider than ``width``.
        width: the widest the figure may be, in inches (default: the book's column).
        suptitle: title of the whole figure.
        sharey: share the y-axis across panels.

    Returns:
        The Figure; its axes are ``fig.axes`` in row-major order.
    """
    n_r, n_c = len(rows), len(cols)
    if n_r == 0 or n_c == 0:
        raise ValueError("small_multiples needs at least one row value and one column value")
    fig_w = min(panel_size[0] * n_c + 0.6, COLUMN_IN if width is None else width)
    fig, axes = plt.subplots(
        n_r, n_c, figsize=(fig_w, panel_size[1] * n_r + 0.6),
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
    # Labels placed relative to the title / y label they sit beside, so they never
    # overlap tick labels; constrained layout makes room for them.
    for j, c in enumerate(cols):
        text = fmt(col_label, c)
        if text:
            axes[0][j].annotate(text, xy=(0.5, 1.0), xycoords=axes[0][j].title,
                                xytext=(0, 3), textcoords="offset points",
                                ha="center", va="bottom", fontsize=10, fontweight="bold")
    for i, r in enumerate(rows):
        text = fmt(row_label, r)
        if text:
            axes[i][0].annotate(text, xy=(0.0, 0.5), xycoords=axes[i][0].yaxis.label,
                                xytext=(-3, 0), textcoords="offset points",
                                ha="right", va="center", rotation=90,
                                fontsize=10, fontweight="bold")
    if suptitle:
        fig.suptitle(suptitle)
    return fig
