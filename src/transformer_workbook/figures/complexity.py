"""Chapter 7's figures: log-log sweeps with their fitted slopes, and the cost explorer.

Three layers, so each can be tested without a display:

1. pure computation: :func:`flop_terms` (one layer's FLOPs, term by term,
   from :mod:`~transformer_workbook.complexity`'s formulas),
   :func:`counted_layer_flops` (what PyTorch's FLOP counter counts for the
   course's :class:`~transformer_workbook.encoder.EncoderLayer`, run on the
   meta device: no memory, no time, any size), :func:`memory_terms` (the
   bytes of attention's weight matrix and of the fused path's tensors);
2. drawing: :func:`draw_loglog` (measured series on log-log axes, each with
   its fitted slope) and :func:`draw_cost_explorer` (FLOPs and memory against
   the sequence length, for one ``d_model``);
3. :data:`COST_EXPLORER`, declared once with the shared
   :class:`~transformer_workbook.figures.explorer.Explorer`, and
   :func:`cost_explorer`, which builds the live widget; ``measured=`` adds
   the memory a notebook measured (:func:`measured_memory`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from matplotlib.axes import Axes

from ..complexity import attention_flops, feed_forward_flops, loglog_slope
from .common import new_ax
from .explorer import Choice, Explorer, Slider

__all__ = [
    "COST_EXPLORER",
    "D_HEAD",
    "counted_layer_flops",
    "cost_explorer",
    "draw_cost_explorer",
    "draw_loglog",
    "flop_terms",
    "measured_memory",
    "memory_terms",
]

#: The explorer's head size: ``n_heads = d_model // D_HEAD`` (the paper's 64).
D_HEAD = 64
#: The lengths the explorer's curves span, as powers of two.
LOG2_LENGTHS = range(5, 15)
#: The lengths at which the explorer shows PyTorch's own FLOP count.
COUNTED_LOG2 = (6, 10, 14)
_MiB = 2**20


def flop_terms(seq_len: int, d_model: int, d_ff: int | None = None) -> dict[str, int]:
    """One encoder layer's forward FLOPs on one sequence, term by term (``d_ff`` default ``4 d_model``).

    ``"attention L^2"`` is ``Q K^T`` and ``weights @ V`` (``4 L^2 d``),
    ``"projections"`` the four ``d x d`` projections (``8 L d^2``),
    ``"feed-forward"`` the two FFN matrices (``4 L d d_ff``).
    """
    d_ff = 4 * d_model if d_ff is None else d_ff
    square = attention_flops(seq_len, d_model, projections=False)
    return {
        "attention L^2": square,
        "projections": attention_flops(seq_len, d_model) - square,
        "feed-forward": feed_forward_flops(seq_len, d_model, d_ff),
    }


@functools.lru_cache(maxsize=256)
def counted_layer_flops(seq_len: int, d_model: int, n_heads: int, d_ff: int) -> int:
    """The FLOPs ``torch.utils.flop_counter`` counts for one :class:`EncoderLayer` on ``(1, L, d_model)``.

    The layer and its input live on the **meta** device: every operation
    runs on shapes only, so the count is exact and free at any size (no
    memory is allocated, nothing is computed). Chapter 1's attention is used
    (``record_attention``), whose matrix products the counter sees.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from ..encoder import EncoderLayer, record_attention

    with torch.device("meta"):
        layer = EncoderLayer(d_model, n_heads, d_ff).eval()
        x = torch.empty(1, seq_len, d_model)
    with torch.no_grad(), record_attention(layer), FlopCounterMode(display=False) as counter:
        layer(x)
    return counter.get_total_flops()


def memory_terms(
    seq_len: int, d_model: int, n_heads: int, batch: int = 1, bytes_per: int = 4
) -> dict[str, int]:
    """Bytes of attention's ``(B, H, L, L)`` weight matrix, and of the fused path's ``q, k, v, out``.

    The explicit attention keeps at least the weights (and, for a moment,
    the scores and their exponentials too: about three such tensors); the
    fused kernel keeps only its inputs and output, ``4 B L d_model``
    numbers.
    """
    return {
        "weights (B, H, L, L)": batch * n_heads * seq_len * seq_len * bytes_per,
        "fused: q, k, v, out": 4 * batch * seq_len * d_model * bytes_per,
    }


def measured_memory(
    lengths: Sequence[int], naive: Sequence[int], fused: Sequence[int], d_model: int, n_heads: int
) -> dict[str, Any]:
    """Package a notebook's memory sweep for :func:`cost_explorer` (``measured=``)."""
    if not len(lengths) == len(naive) == len(fused):
        raise ValueError("lengths, naive and fused must have the same length")
    return {"d_model": int(d_model), "n_heads": int(n_heads), "lengths": [int(n) for n in lengths],
            "naive": [int(b) for b in naive], "fused": [int(b) for b in fused]}


def draw_loglog(
    xs: Sequence[float],
    series: Mapping[str, Sequence[float]],
    ax: Axes | None = None,
    *,
    xlabel: str = "sequence length L",
    ylabel: str = "",
    title: str | None = None,
    fit_from: int = 0,
    reference_slopes: Sequence[float] = (),
) -> Axes:
    """Plot each measured series against ``xs`` on log-log axes; the legend gives each fitted slope.

    ``fit_from`` leaves the first points out of the fit (fixed overheads
    flatten the smallest sizes). ``reference_slopes`` draws dotted guide
    lines of those slopes (e.g. 1 and 2) through the first series' last
    point. Returns the Axes; the slopes are in ``ax.slopes`` (a dict).
    """
    ax = new_ax(ax, (5.5, 3.2))
    slopes = {}
    for name, ys in series.items():
        k = loglog_slope(list(xs)[fit_from:], list(ys)[fit_from:])
        slopes[name] = k
        ax.loglog(xs, ys, "o-", label=f"{name} (slope {k:.2f})")
    if reference_slopes and series:
        x1, y1 = xs[-1], list(series.values())[0][-1]
        for k in reference_slopes:
            guide = [y1 * (x / x1) ** k for x in xs]
            ax.loglog(xs, guide, ":", color="grey", lw=1)
            ax.annotate(f"slope {k:g}", (xs[0], guide[0]), fontsize=8, color="grey",
                        xytext=(2, 2), textcoords="offset points")
    _plain_log_axes(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    ax.slopes = slopes
    return ax


def _power_of_ten(value: float, _position: Any = None) -> str:
    """``1e+08`` -> ``1e8``, ``1e-02`` -> ``1e-2``: short plain-text tick labels."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _plain_log_axes(ax: Axes) -> None:
    """Log axes labelled in plain text (``2^9`` would need mathtext, slow to lay out), no minor ticks."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(LogLocator(base=2, numticks=6))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=6))
    ax.yaxis.set_major_formatter(FuncFormatter(_power_of_ten))
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_locator(NullLocator())


def _si(x: float) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= size:
            return f"{x / size:.3g}{unit}"
    return f"{x:.3g}"


def draw_cost_explorer(
    log2_length: int = 9,
    d_model: int = 256,
    measured: Mapping[str, Any] | None = None,
    axes: tuple[Axes, Axes] | None = None,
) -> tuple[Axes, Axes]:
    """Two log-log panels against the sequence length, for one ``d_model`` (``d_ff = 4 d``, ``d_head = 64``).

    Left: one encoder layer's FLOPs, term by term (:func:`flop_terms`), and,
    as points, what PyTorch counts (:func:`counted_layer_flops`); the chosen
    length is marked with the share of attention's ``L^2`` term. Right: the
    memory of the weight matrix and of the fused path (:func:`memory_terms`),
    with the measured peaks when ``measured`` was measured at this ``d_model``.
    """
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, 2, figsize=(6.6, 3.2), layout="constrained")
    ax_f, ax_m = axes
    L = 2**log2_length
    n_heads = max(1, d_model // D_HEAD)
    lengths = [2**p for p in LOG2_LENGTHS]
    terms = [flop_terms(n, d_model) for n in lengths]
    for name, style in (("attention L^2", "-"), ("projections", "--"), ("feed-forward", "-.")):
        ax_f.loglog(lengths, [t[name] for t in terms], style, label=name)
    ax_f.loglog(lengths, [sum(t.values()) for t in terms], "-", color="black", lw=1, label="layer")
    counted = [2**p for p in COUNTED_LOG2]
    ax_f.loglog(counted, [counted_layer_flops(n, d_model, n_heads, 4 * d_model) for n in counted],
                "o", color="black", ms=4, label="counted by PyTorch")
    here = flop_terms(L, d_model)
    share = here["attention L^2"] / sum(here.values())
    ax_f.axvline(L, color="#c62828", lw=1)
    ax_f.set_title(f"FLOPs of one layer, d_model = {d_model}\nL = {L}: L^2 term {share:.0%} "
                   f"of {_si(sum(here.values()))}", fontsize=9)
    _plain_log_axes(ax_f)
    ax_f.set_xlabel("sequence length L")
    ax_f.legend(fontsize=8, loc="upper left")

    mem = [memory_terms(n, d_model, n_heads) for n in lengths]
    for name, style in (("weights (B, H, L, L)", "-"), ("fused: q, k, v, out", "--")):
        ax_m.loglog(lengths, [m[name] / _MiB for m in mem], style, label=name)
    shown = measured is not None and measured.get("d_model") == d_model
    if shown:
        xs = measured["lengths"]
        ax_m.loglog(xs, [b / _MiB for b in measured["naive"]], "o", ms=4, color="C0",
                    label="measured peak, explicit")
        ax_m.loglog(xs, [b / _MiB for b in measured["fused"]], "s", ms=4, color="C1",
                    label="measured peak, fused")
    weights_here = memory_terms(L, d_model, n_heads)["weights (B, H, L, L)"] / _MiB
    ax_m.axvline(L, color="#c62828", lw=1)
    note = "" if shown or measured is None else f"\n(measured at d_model = {measured['d_model']})"
    ax_m.set_title(f"memory, {n_heads} head(s), float32\nweights at L = {L}: {weights_here:.3g} MiB{note}",
                   fontsize=9)
    _plain_log_axes(ax_m)
    ax_m.set_xlabel("sequence length L")
    ax_m.set_ylabel("MiB")
    ax_m.legend(fontsize=8, loc="upper left")
    return ax_f, ax_m


def _frame(axes, log2_length: int, d_model: int, measured: Mapping[str, Any] | None = None) -> None:
    draw_cost_explorer(log2_length, d_model, measured, axes=axes)


#: The d_model choices: the paper's base and big widths among them.
D_MODELS: dict[int, str] = {64: "64", 256: "256", 512: "512 (base)", 1024: "1024 (big)", 4096: "4096"}

#: The explorer's declaration; :func:`cost_explorer` binds the measured points.
COST_EXPLORER = Explorer(
    "cost_explorer",
    controls=(
        Slider("log2_length", "sequence length L = 2^", min(LOG2_LENGTHS), max(LOG2_LENGTHS), default=9,
               book=(7, 9, 11, 13), fmt=lambda v: f"{v} (L = {2**v})"),
        Choice("d_model", "d_model", D_MODELS, default=256, book=(256, 1024)),
    ),
    draw=_frame,
    figsize=(6.6, 3.4),
    panels=2,
    rows=(("log2_length", "d_model"),),
    colors=48,
)


def cost_explorer(log2_length: int = 9, d_model: int = 256, measured: Mapping[str, Any] | None = None):
    """A slider for the sequence length (a power of two) and a drop-down for ``d_model``; returns the widget.

    Shows :func:`draw_cost_explorer`. ``measured`` (from :func:`measured_memory`)
    adds the memory a sweep measured, on the panel of its ``d_model``.
    Display it as a cell's last expression.
    """
    if d_model not in D_MODELS:
        raise ValueError(f"d_model must be one of {sorted(D_MODELS)}, got {d_model}")
    explorer = COST_EXPLORER if measured is None else COST_EXPLORER.bind(measured=measured)
    return explorer.widget(log2_length=log2_length, d_model=d_model)

