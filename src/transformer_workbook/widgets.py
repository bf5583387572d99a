"""Interactive explorers (ipywidgets) for the chapters.

Each explorer has three layers, so it can be tested without a display and
drawn statically in the book:

1. a pure computation (tensors in, tensors and numbers out);
2. a drawing function ``draw_...(..., ax=None)`` built on :mod:`transformer_workbook.plots`,
   which the notebook also passes to :func:`~transformer_workbook.plots.small_multiples`
   for the static figure next to the widget;
3. the widget itself, made ONLY of core widgets that exist in ipywidgets 7.7.1
   (Colab) and 8 (``interactive_output``, ``FloatSlider``, ``IntSlider``,
   ``Dropdown``, ``Output``, ``HBox``/``VBox``), whose callback draws with (2)
   and calls ``plt.show()`` (with the inline backend, plots would otherwise
   stack up on Colab).

ipywidgets is imported inside the widget builders only: the pure functions
work without it. Organised by chapter: a later chapter appends its own section.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes

from .attention import attention_entropy, softmax
from .plots import attention_distribution

__all__ = [
    "SCALINGS",
    "explorer_weights",
    "draw_attention_explorer",
    "attention_explorer",
]


# ---------------------------------------------------------------------------
# Chapter 1: attention explorer (temperature, d_k, scaling)
# ---------------------------------------------------------------------------

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


def attention_explorer(
    temperature: float = 1.0,
    d_k: int = 64,
    scaling: str = "sqrt",
    seed: int = 0,
    n_keys: int = 8,
    figsize: tuple[float, float] = (5.5, 2.8),
):
    """Sliders for temperature, d_k, scaling and the random example; returns the widget.

    Display it by making it the last expression of a cell. The d_k slider
    moves in powers of two (``d_k = 2 ** slider``, 1 to 1024); the chart's
    title shows the value. Moving a control redraws
    :func:`draw_attention_explorer` in the widget's output area.
    """
    import ipywidgets as w  # lazily: the pure functions above do not need it

    if d_k < 1 or d_k & (d_k - 1):
        raise ValueError(f"d_k must be a power of two for the slider, got {d_k}")
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {sorted(SCALINGS)}, got {scaling!r}")
    wide = {"description_width": "initial"}
    controls = {
        "temperature": w.FloatSlider(
            value=temperature, min=0.1, max=3.0, step=0.05, description="temperature T",
            continuous_update=False, readout_format=".2f", style=wide,
        ),
        "log2_d_k": w.IntSlider(
            value=int(math.log2(d_k)), min=0, max=10, step=1, description="d_k = 2^",
            continuous_update=False, style=wide,
        ),
        "scaling": w.Dropdown(
            options=[(label, key) for key, label in SCALINGS.items()], value=scaling,
            description="scores", style=wide,
        ),
        "seed": w.IntSlider(
            value=seed, min=0, max=20, step=1, description="random example",
            continuous_update=False, style=wide,
        ),
    }

    def show(temperature: float, log2_d_k: int, scaling: str, seed: int) -> None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
        draw_attention_explorer(temperature, 2**log2_d_k, scaling, seed, n_keys, ax=ax)
        plt.show()

    out = w.interactive_output(show, controls)
    return w.VBox([
        w.HBox([controls["temperature"], controls["log2_d_k"]]),
        w.HBox([controls["scaling"], controls["seed"]]),
        out,
    ])


# ---------------------------------------------------------------------------
# --- Chapter 3: positional-encoding explorer (position, dimension)
# ---------------------------------------------------------------------------

__all__ += [
    "POSITIONAL_PANELS",
    "positional_views",
    "draw_positional_explorer",
    "positional_explorer",
]

#: The three panels of the Chapter 3 explorer, in order.
POSITIONAL_PANELS: tuple[str, ...] = ("encoding", "dimension", "similarity")


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
    from .positional import sinusoidal_encoding

    if not 0 <= position < seq_len:
        raise ValueError(f"position must be in [0, {seq_len}), got {position}")
    if not 0 <= dim < d_model:
        raise ValueError(f"dim must be in [0, {d_model}), got {dim}")
    pe = sinusoidal_encoding(seq_len, d_model)  # (L, d)
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
    from .plots import positional_encoding_column, positional_encoding_row, positional_similarity
    from .positional import sinusoidal_encoding

    positional_views(position, dim, seq_len, d_model)  # validates the arguments
    pe = sinusoidal_encoding(seq_len, d_model)  # (L, d)
    if panel == "encoding":
        return positional_encoding_row(pe, position, ax=ax, dim=dim)
    if panel == "dimension":
        return positional_encoding_column(pe, dim, ax=ax, position=position)
    if panel == "similarity":
        return positional_similarity(pe, position, ax=ax)
    raise ValueError(f"panel must be one of {POSITIONAL_PANELS}, got {panel!r}")


def positional_explorer(
    position: int = 10,
    dim: int = 4,
    seq_len: int = 100,
    d_model: int = 64,
    figsize: tuple[float, float] = (11.0, 2.8),
):
    """Sliders for a position and a dimension of the sinusoidal table; returns the widget.

    Three panels: the encoding of the chosen position (one bar per
    dimension, the chosen one outlined), the chosen dimension across all
    positions (a wave, the chosen position marked), and the similarity of the
    chosen position to every other. Display it by making it the last
    expression of a cell.
    """
    import ipywidgets as w  # lazily: the pure functions above do not need it

    positional_views(position, dim, seq_len, d_model)  # validates the arguments
    wide = {"description_width": "initial"}
    controls = {
        "position": w.IntSlider(value=position, min=0, max=seq_len - 1, step=1,
                                description="position", continuous_update=False, style=wide),
        "dim": w.IntSlider(value=dim, min=0, max=d_model - 1, step=1,
                           description="dimension", continuous_update=False, style=wide),
    }

    def show(position: int, dim: int) -> None:
        _, axes = plt.subplots(1, 3, figsize=figsize, layout="constrained")
        for ax, panel in zip(axes, POSITIONAL_PANELS, strict=True):
            draw_positional_explorer(position, dim, panel, seq_len, d_model, ax=ax)
        plt.show()

    out = w.interactive_output(show, controls)
    return w.VBox([w.HBox([controls["position"], controls["dim"]]), out])


# ---------------------------------------------------------------------------
# --- Chapter 2: multi-head attention explorer (number of heads, which head)
# ---------------------------------------------------------------------------

__all__ += [
    "HEADS_TOKENS",
    "HEADS_D_MODEL",
    "HEADS_CHOICES",
    "heads_weights",
    "draw_heads_explorer",
    "heads_explorer",
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
    from .multihead import MultiHeadAttention

    if n_heads < 1 or d_model % n_heads:
        raise ValueError(f"n_heads must divide d_model={d_model}, got {n_heads}")
    g = torch.Generator().manual_seed(int(seed))
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
    from .plots import attention_heatmap

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


def heads_explorer(n_heads: int = 2, head: int = 0, seed: int = 0, figsize=(4.8, 3.6)):
    """A dropdown for the number of heads, sliders for the head and the example; returns the widget.

    Shows the chosen head's heatmap (:func:`draw_heads_explorer`). The head
    slider's range follows the number of heads. Display it by making it the
    last expression of a cell.
    """
    import ipywidgets as w  # lazily: the pure functions above do not need it

    if n_heads not in HEADS_CHOICES:
        raise ValueError(f"n_heads must be one of {HEADS_CHOICES}, got {n_heads}")
    if not 0 <= head < n_heads:
        raise ValueError(f"head must be in [0, {n_heads}), got {head}")
    wide = {"description_width": "initial"}
    controls = {
        "n_heads": w.Dropdown(options=list(HEADS_CHOICES), value=n_heads,
                              description="number of heads", style=wide),
        "head": w.IntSlider(value=head, min=0, max=n_heads - 1, step=1, description="head",
                            continuous_update=False, style=wide),
        "seed": w.IntSlider(value=seed, min=0, max=20, step=1, description="random example",
                            continuous_update=False, style=wide),
    }

    def follow(change) -> None:  # the head slider covers 0 .. n_heads - 1
        controls["head"].value = min(controls["head"].value, change["new"] - 1)
        controls["head"].max = change["new"] - 1

    controls["n_heads"].observe(follow, names="value")

    def show(n_heads: int, head: int, seed: int) -> None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
        draw_heads_explorer(n_heads, min(head, n_heads - 1), seed, ax=ax)
        plt.show()

    out = w.interactive_output(show, controls)
    return w.VBox([w.HBox([controls["n_heads"], controls["head"]]), controls["seed"], out])
