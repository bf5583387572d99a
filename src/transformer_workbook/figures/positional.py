"""Chapter 3's figures: the positional-encoding table, its rows, columns and
similarities, and the position/dimension explorer.

Three layers: :func:`positional_views` (pure computation), the drawing
functions (``positional_...`` and :func:`draw_positional_explorer`, each into an
Axes), and :data:`POSITIONAL_EXPLORER` / :func:`positional_explorer` (the
explorer, declared with the shared
:class:`~transformer_workbook.figures.explorer.Explorer`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import torch
from matplotlib.axes import Axes

from .common import as_tensor, new_ax
from .explorer import Explorer, Slider

__all__ = [
    "POSITIONAL_EXPLORER",
    "POSITIONAL_PANELS",
    "draw_positional_explorer",
    "positional_encoding_column",
    "positional_encoding_row",
    "positional_explorer",
    "positional_heatmap",
    "positional_similarity",
    "positional_views",
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
    table = as_tensor(pe)
    if table.dim() != 2:
        raise ValueError(f"positional_heatmap expects a (seq_len, d_model) table, got {tuple(table.shape)}")
    ax = new_ax(ax, (6.0, 3.6))
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
    table = as_tensor(pe)
    row = table[position]  # (d_model,)
    d = row.numel()
    ax = new_ax(ax, (4.0, 2.6))
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
    table = as_tensor(pe)
    col = table[:, dim]  # (seq_len,)
    ax = new_ax(ax, (4.0, 2.6))
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
    table = as_tensor(pe)
    norms = table.norm(dim=-1).clamp_min(1e-12)  # (seq_len,)
    sim = table @ table[position] / (norms * norms[position])  # (seq_len,)
    ax = new_ax(ax, (4.0, 2.6))
    ax.plot(range(sim.numel()), sim.numpy(), color="C2", lw=1.2)
    ax.axvline(position, color="k", lw=0.8, ls="--")
    ax.set_ylim(-0.3, 1.05)
    ax.set_xlabel("other position")
    ax.set_ylabel("cosine similarity")
    ax.set_title(title or f"similarity to position {position}", fontsize=9)
    return ax


# ---------------------------------------------------------------------------
# The explorer: position and dimension
# ---------------------------------------------------------------------------

#: The three panels of the Chapter 3 explorer, in order.
POSITIONAL_PANELS: tuple[str, ...] = ("encoding", "dimension", "similarity")


@functools.lru_cache(maxsize=8)
def _table(seq_len: int, d_model: int) -> torch.Tensor:
    # Cached: every frame of the explorer reads the same table.
    from ..positional import sinusoidal_encoding

    return sinusoidal_encoding(seq_len, d_model)  # (L, d)


def positional_views(
    position: int, dim: int, seq_len: int = 100, d_model: int = 64
) -> dict[str, torch.Tensor]:
    """What the Chapter 3 explorer shows, as tensors.

    Returns a dict with ``"encoding"``: ``PE[position]`` ``(d_model,)``;
    ``"dimension"``: ``PE[:, dim]`` ``(seq_len,)``; ``"similarity"``: the
    cosine similarity of ``PE[position]`` with every row ``(seq_len,)`` (every
    row has norm ``sqrt(d_model / 2)`` when ``d_model`` is even, so this is the
    dot product divided by ``d_model / 2``).
    """
    if not 0 <= position < seq_len:
        raise ValueError(f"position must be in [0, {seq_len}), got {position}")
    if not 0 <= dim < d_model:
        raise ValueError(f"dim must be in [0, {d_model}), got {dim}")
    pe = _table(seq_len, d_model).clone()  # (L, d)
    norms = pe.norm(dim=-1)  # (L,)
    return {
        "encoding": pe[position],
        "dimension": pe[:, dim],
        "similarity": pe @ pe[position] / (norms * norms[position]),  # (L,)
    }


def draw_positional_explorer(
    position: int,
    dim: int,
    panel: str = "encoding",
    seq_len: int = 100,
    d_model: int = 64,
    ax: Axes | None = None,
) -> Axes:
    """Draw one of the explorer's panels (``"encoding"``, ``"dimension"``, ``"similarity"``)."""
    positional_views(position, dim, seq_len, d_model)  # validates the arguments
    pe = _table(seq_len, d_model)  # (L, d)
    if panel == "encoding":
        return positional_encoding_row(pe, position, ax=ax, dim=dim)
    if panel == "dimension":
        return positional_encoding_column(pe, dim, ax=ax, position=position)
    if panel == "similarity":
        return positional_similarity(pe, position, ax=ax)
    raise ValueError(f"panel must be one of {POSITIONAL_PANELS}, got {panel!r}")


def _frame(axes: tuple[Axes, ...], position: int, dim: int, seq_len: int = 100, d_model: int = 64) -> None:
    for ax, panel in zip(axes, POSITIONAL_PANELS, strict=True):
        draw_positional_explorer(position, dim, panel, seq_len, d_model, ax=ax)


#: The explorer's declaration: three panels per setting.
POSITIONAL_EXPLORER = Explorer(
    "positional_explorer",
    controls=(
        Slider("position", "position", 0, 99, default=10, book=(0, 10, 30, 60, 99)),
        Slider("dim", "dimension", 0, 63, default=4, book=(0, 4, 10, 20, 40, 63)),
    ),
    draw=_frame,
    figsize=(6.6, 2.5),
    panels=3,
)


def positional_explorer(position: int = 10, dim: int = 4, seq_len: int = 100, d_model: int = 64):
    """Sliders for a position and a dimension of the sinusoidal table; returns the widget.

    Three panels: the encoding of the chosen position (one bar per
    dimension, the chosen one outlined), the chosen dimension across all
    positions (a wave, the chosen position marked), and the similarity of the
    chosen position to every other. Display it by making it the last
    expression of a cell.
    """
    positional_views(position, dim, seq_len, d_model)  # validates the arguments
    explorer = POSITIONAL_EXPLORER
    if (seq_len, d_model) != (100, 64):  # the sliders cover the table actually drawn
        pos, dim_ = explorer.controls
        controls = (
            dataclasses.replace(pos, max=seq_len - 1, default=position,
                                book=[p for p in pos.book if p < seq_len]),
            dataclasses.replace(dim_, max=d_model - 1, default=dim,
                                book=[d for d in dim_.book if d < d_model]),
        )
        explorer = dataclasses.replace(explorer, controls=controls)
    return explorer.bind(seq_len=seq_len, d_model=d_model).widget(position=position, dim=dim)
