"""Chapter 1's figures: the attention explorer (temperature, d_k, scaling).

Three layers, so each can be tested without a display:

1. :func:`explorer_weights`: the pure computation (tensors and numbers);
2. :func:`draw_attention_explorer`: draws one setting into an Axes;
3. :data:`ATTENTION_EXPLORER`, declared once with the shared
   :class:`~transformer_workbook.figures.explorer.Explorer`, and
   :func:`attention_explorer`, which builds the live widget (and, displayed,
   the precomputed figure for pages without a kernel).
"""

from __future__ import annotations

import math

import torch
from matplotlib.axes import Axes

from ..attention import attention_entropy, softmax
from .common import attention_distribution
from .explorer import Choice, Explorer, Slider

__all__ = [
    "ATTENTION_EXPLORER",
    "SCALINGS",
    "attention_explorer",
    "draw_attention_explorer",
    "explorer_weights",
]

#: Dropdown choices of the Chapter 1 explorer: label -> how scores are divided.
SCALINGS: dict[str, str] = {
    "sqrt": "÷ √d_k (the paper)",
    "none": "no scaling",
    "d_k": "÷ d_k",
}


def _divisor(scaling: str, d_k: int) -> float:
    if scaling == "sqrt":
        return math.sqrt(d_k)
    if scaling == "none":
        return 1.0
    if scaling == "d_k":
        return float(d_k)
    raise ValueError(f"scaling must be one of {sorted(SCALINGS)}, got {scaling!r}")


def explorer_weights(
    temperature: float = 1.0,
    d_k: int = 64,
    scaling: str = "sqrt",
    seed: int = 0,
    n_keys: int = 8,
) -> tuple[torch.Tensor, float]:
    """One query's attention weights over ``n_keys`` random keys, and their entropy.

    The query and keys are ``d_k``-dimensional with independent N(0, 1)
    entries (drawn from a generator seeded with ``seed``, so the result is
    deterministic). The weights are

        softmax(k @ q / (divisor * temperature))

    where ``divisor`` is sqrt(d_k) for ``scaling="sqrt"`` (the paper), 1 for
    ``"none"`` and d_k for ``"d_k"``. Temperature 1 with ``"sqrt"`` is
    ordinary scaled dot-product attention; lower temperatures sharpen the
    distribution, higher ones flatten it.

    Returns:
        ``(weights, entropy)``: weights of shape ``(n_keys,)`` summing to 1, and
        their entropy in nats (between 0 and log(n_keys)).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if d_k < 1 or n_keys < 1:
        raise ValueError("d_k and n_keys must be at least 1")
    g = torch.Generator().manual_seed(int(seed))
    q = torch.randn(d_k, generator=g, dtype=torch.float64)  # (d_k,)
    k = torch.randn(n_keys, d_k, generator=g, dtype=torch.float64)  # (Lk, d_k)
    scores = k @ q  # (Lk,)
    weights = softmax(scores / (_divisor(scaling, d_k) * temperature), dim=-1)  # (Lk,)
    return weights, float(attention_entropy(weights))


def draw_attention_explorer(
    temperature: float = 1.0,
    d_k: int = 64,
    scaling: str = "sqrt",
    seed: int = 0,
    n_keys: int = 8,
    ax: Axes | None = None,
) -> Axes:
    """Bar chart of :func:`explorer_weights` (entropy in the title); returns the Axes."""
    weights, _ = explorer_weights(temperature, d_k, scaling, seed, n_keys)
    title = f"T = {temperature:g}, d_k = {d_k}"
    if scaling != "sqrt":
        title += f", {SCALINGS[scaling]}"
    return attention_distribution(
        weights, labels=[f"k{i}" for i in range(n_keys)], ax=ax, title=title
    )


def _frame(ax: Axes, temperature: float, log2_d_k: int, scaling: str, seed: int, n_keys: int = 8) -> None:
    draw_attention_explorer(temperature, 2**log2_d_k, scaling, seed, n_keys, ax=ax)


#: The explorer's declaration: its controls (the d_k slider moves in powers of
#: two, d_k = 2 ** slider) and, for the book, the values drawn in advance.
ATTENTION_EXPLORER = Explorer(
    "attention_explorer",
    controls=(
        Slider("temperature", "temperature T", 0.1, 3.0, step=0.05, default=1.0,
               book=(0.25, 0.5, 1.0, 2.0, 3.0), fmt=".2f"),
        Slider("log2_d_k", "d_k = 2^", 0, 10, default=6, book=(2, 6, 10),
               fmt=lambda v: f"{v} (d_k = {2**v})"),
        Choice("scaling", "scores", SCALINGS, default="sqrt"),
        Slider("seed", "random example", 0, 20, default=0, book=(0,)),
    ),
    draw=_frame,
    figsize=(6.4, 2.6),
    rows=(("temperature", "log2_d_k"), ("scaling", "seed")),
)


def attention_explorer(
    temperature: float = 1.0,
    d_k: int = 64,
    scaling: str = "sqrt",
    seed: int = 0,
    n_keys: int = 8,
):
    """Sliders for temperature, d_k, scaling and the random example; returns the widget.

    Display it by making it the last expression of a cell. The d_k slider
    moves in powers of two (``d_k = 2 ** slider``, 1 to 1024); the chart's
    title shows the value. Moving a control redraws
    :func:`draw_attention_explorer` in the widget's output area. Displayed, it
    also carries the figure precomputed for pages without a kernel.
    """
    if d_k < 1 or d_k & (d_k - 1):
        raise ValueError(f"d_k must be a power of two for the slider, got {d_k}")
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {sorted(SCALINGS)}, got {scaling!r}")
    return ATTENTION_EXPLORER.bind(n_keys=n_keys).widget(
        temperature=temperature, log2_d_k=int(math.log2(d_k)), scaling=scaling, seed=seed
    )
