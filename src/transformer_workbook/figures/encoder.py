"""Chapter 4's figures: what depth, normalization and residual connections do to a stack
of encoder layers at initialisation, and the depth explorer.

Three layers: :func:`depth_profile` (pure computation: a freshly initialised
:class:`~transformer_workbook.encoder.Encoder`, one forward and one backward
pass), :func:`draw_depth_profile` (its two panels into Axes), and
:data:`DEPTH_EXPLORER` / :func:`depth_explorer` (the explorer, declared with the
shared :class:`~transformer_workbook.figures.explorer.Explorer`).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator

import torch
from matplotlib.axes import Axes
from matplotlib.ticker import LogLocator, MaxNLocator, NullLocator
from torch import nn

from .explorer import Choice, Explorer, Slider

__all__ = [
    "DEPTH_EXPLORER",
    "NORM_PLACEMENTS",
    "depth_explorer",
    "depth_profile",
    "draw_depth_profile",
]

#: The normalization placements the explorer offers: value -> label.
NORM_PLACEMENTS: dict[str, str] = {
    "post": "post-LN (the paper)",
    "pre": "pre-LN",
    "none": "no normalization",
}


def depth_profile(
    depth: int,
    placement: str = "post",
    residual: bool = True,
    *,
    d_model: int = 32,
    n_heads: int = 4,
    seq_len: int = 16,
    batch: int = 4,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Per-layer activations and gradients of a freshly initialised encoder stack.

    Builds ``Encoder(d_model, n_heads, depth, 4 * d_model)`` with the package's
    initialisation (seeded with ``seed``), post-LN, pre-LN (without the final
    norm, to show the residual stream itself) or with no normalization at all
    (``placement="none"``: identity instead of every LayerNorm), with or without
    its residual connections; runs random unit-variance inputs
    ``(batch, seq_len, d_model)`` through it in float64 (so that tiny
    gradients do not underflow), and back-propagates the loss
    ``sum(output * target) / sqrt(output.numel())`` for a fixed random target,
    whose gradient with respect to the output has norm about 1.

    Returns:
        ``"activation"``: ``(depth,)``, the root mean square of each layer's
        output; ``"gradient"``: ``(depth,)``, the norm of the gradient of the
        loss with respect to each layer's *input* (entry 0: the embeddings,
        what reaches the bottom of the stack).
    """
    if placement not in NORM_PLACEMENTS:
        raise ValueError(f"placement must be one of {tuple(NORM_PLACEMENTS)}, got {placement!r}")
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    key = (int(depth), placement, bool(residual), d_model, n_heads, seq_len, batch, int(seed))
    return {name: t.clone() for name, t in _profile(*key).items()}


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread, then restore the previous count.

    The models these figures run are tiny: a second thread only adds
    synchronisation, and on a busy machine (a shared server, the book's
    build) it can make them ten times slower. One thread also makes the
    results independent of the machine's thread count.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@functools.lru_cache(maxsize=128)
def _profile(depth, placement, residual, d_model, n_heads, seq_len, batch, seed):
    with one_thread():
        return _compute_profile(depth, placement, residual, d_model, n_heads, seq_len, batch, seed)


def _compute_profile(depth, placement, residual, d_model, n_heads, seq_len, batch, seed):
    from ..encoder import Encoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        norm = {"norm": lambda d: nn.Identity()} if placement == "none" else {}
        stack = Encoder(d_model, n_heads, depth, 4 * d_model, norm_first=placement == "pre",
                        final_norm=False, residual=residual, **norm).double()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, seq_len, d_model, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(batch, seq_len, d_model, generator=g, dtype=torch.float64)
    inputs, h = [], x
    for layer in stack.layers:
        inputs.append(h)
        h.retain_grad()
        h = layer(h)  # (B, L, d_model)
    outputs = [*inputs[1:], h]
    loss = (h * target).sum() / math.sqrt(h.numel())
    loss.backward()
    return {
        "activation": torch.stack([o.detach().pow(2).mean().sqrt() for o in outputs]),
        "gradient": torch.stack([i.grad.norm() for i in inputs]),
    }


def draw_depth_profile(
    depth: int,
    placement: str = "post",
    residual: bool = True,
    axes: tuple[Axes, Axes] | None = None,
) -> tuple[Axes, Axes]:
    """Two panels, per layer: the activations' RMS and the gradient reaching the layer.

    Both on log scales (the gradient without normalization or residual
    connections spans dozens of orders of magnitude); the dashed line marks 1.
    """
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, 2, figsize=(6.6, 2.8), layout="constrained")
    profile = depth_profile(depth, placement, residual)
    layers = torch.arange(1, depth + 1).numpy()
    panels = [
        ("activation", "RMS of layer l's output", "C0",
         f"activations (last: {profile['activation'][-1]:.3g})"),
        ("gradient", "gradient norm at layer l's input", "C3",
         f"gradients (layer 1: {profile['gradient'][0]:.2g})"),
    ]
    for ax, (name, ylabel, color, title) in zip(axes, panels, strict=True):
        values = profile[name].double().clamp_min(1e-300)
        ax.semilogy(layers, values.numpy(), "o-", color=color, ms=3, lw=1.2)
        ax.axhline(1.0, color="0.6", lw=0.8, ls="--")
        lo, hi = float(values.min()), float(values.max())
        ax.set_ylim(min(lo / 3, 0.1), max(hi * 3, 10.0))
        ax.set_xlim(0.5, depth + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("layer l")
        ax.set_ylabel(ylabel, fontsize=9)
        ax.set_title(title, fontsize=9)
        ax.yaxis.set_major_locator(LogLocator(numticks=6))
        ax.yaxis.set_minor_locator(NullLocator())  # (minor log ticks: slow to lay out, little to read)
    return tuple(axes)


def _frame(axes: tuple[Axes, Axes], depth: int, placement: str, residual: bool) -> None:
    draw_depth_profile(depth, placement, residual, axes=axes)
    fig = axes[0].figure
    fig.suptitle(f"{depth} layers, {NORM_PLACEMENTS[placement]}, residual connections "
                 f"{'on' if residual else 'off'} (at initialisation)", fontsize=10)


#: The explorer's declaration: 4 depths x 3 placements x residuals on/off precomputed.
DEPTH_EXPLORER = Explorer(
    "depth_explorer",
    controls=(
        Slider("depth", "layers", 1, 48, default=12, book=(2, 6, 12, 24)),
        Choice("placement", "normalization", NORM_PLACEMENTS, default="post"),
        Choice("residual", "residual connections", {True: "on", False: "off"}, default=True),
    ),
    draw=_frame,
    figsize=(6.6, 2.9),
    panels=2,
    rows=(("depth",), ("placement", "residual")),
)


def depth_explorer(depth: int = 12, placement: str = "post", residual: bool = True):
    """A slider for the depth, drop-down lists for the normalization and the residual
    connections; returns the widget.

    Shows, for a freshly initialised stack, the RMS of each layer's output and
    the norm of the gradient reaching each layer (:func:`draw_depth_profile`).
    Display it by making it the last expression of a cell.
    """
    if placement not in NORM_PLACEMENTS:
        raise ValueError(f"placement must be one of {tuple(NORM_PLACEMENTS)}, got {placement!r}")
    return DEPTH_EXPLORER.widget(depth=depth, placement=placement, residual=bool(residual))
