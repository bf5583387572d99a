"""Chapter 9's figures: the next-token distribution before and after temperature, top-k and top-p.

Three layers, as in every chapter: a pure computation (:func:`reshaped_distribution`),
a drawing function (:func:`draw_reshaped`, ``ax=None`` draws a new figure)
and the explorer declared once (:data:`SAMPLING_EXPLORER`), which draws any
logits: :func:`sampling_explorer` binds a model's next-token logits and the
token names. The book's page precomputes 3 temperatures x 2 top-k x 2 top-p
settings (12 small frames).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from matplotlib.axes import Axes

from ..generation import transform_logits
from .common import new_ax
from .explorer import Choice, Explorer, Slider

__all__ = [
    "EXAMPLE_LOGITS", "EXAMPLE_WORDS", "SAMPLING_EXPLORER", "draw_reshaped", "reshaped_distribution",
    "sampling_explorer",
]


def reshaped_distribution(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                          top_p: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(before, after)``: the softmax of ``logits`` ``(V,)``, and of the transformed logits."""
    before = F.softmax(logits.float(), dim=-1)  # (V,)
    after = F.softmax(transform_logits(logits.float(), temperature, top_k, top_p), dim=-1)  # (V,)
    return before, after


def draw_reshaped(logits: torch.Tensor, names: Sequence[str], temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None, show: int = 12,
                  ax: Axes | None = None) -> Axes:
    """The ``show`` most likely next tokens: probability before (outline) and after (filled)."""
    ax = new_ax(ax, (6.6, 2.4))
    before, after = reshaped_distribution(logits, temperature, top_k, top_p)
    order = before.argsort(descending=True)[:show].tolist()
    x = torch.arange(len(order))
    ax.bar(x.tolist(), after[order].tolist(), color="tab:blue", label="after")
    ax.bar(x.tolist(), before[order].tolist(), fill=False, edgecolor="black", linewidth=0.8, label="before")
    ax.set_xticks(x.tolist(), [repr(names[i]) for i in order], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability", fontsize=8)
    kept = int((after > 0).sum())
    k = "none" if top_k is None else top_k
    p = "none" if top_p is None else top_p
    ax.set_title(f"T={temperature:g}, top-k={k}, top-p={p}: {kept} of {len(names)} tokens can be drawn",
                 fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    ax.tick_params(labelsize=8)
    return ax


def _frame(ax: Axes, temperature: float, top_k: int, top_p: float, logits: torch.Tensor,
           names: Sequence[str]) -> None:
    draw_reshaped(logits, names, temperature, None if top_k == 0 else top_k,
                  None if top_p >= 1 else top_p, ax=ax)


#: The explorer's declaration; ``draw`` also needs ``logits`` ``(V,)`` and ``names`` (bound).
SAMPLING_EXPLORER = Explorer(
    "sampling_explorer",
    controls=(
        Slider("temperature", "temperature T", 0.1, 3.0, step=0.1, default=1.0, book=(0.5, 1.0, 2.0),
               fmt=".1f"),
        Choice("top_k", "top-k", {0: "off", 3: "3", 10: "10"}, default=0, book=(0, 3)),
        Slider("top_p", "top-p", 0.1, 1.0, step=0.05, default=1.0, book=(0.8, 1.0), fmt=".2f"),
    ),
    draw=_frame,
    figsize=(6.6, 2.4),
)


#: An example next-word distribution (after "the two red ..."), used when no model's logits are given.
EXAMPLE_WORDS = ("foxes", "dogs", "cats", "birds", "owls", "mice", "old", "big", "fox", "runs", ".", "the")
EXAMPLE_LOGITS = torch.tensor([2.6, 2.2, 1.9, 1.5, 1.2, 1.0, 0.6, 0.3, -1.5, -2.5, -3.0, -3.5])


def sampling_explorer(logits: torch.Tensor | None = None, names: Sequence[str] | None = None,
                      temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0):
    """Sliders for T, top-k (0: off), top-p (1: off) over next-token ``logits`` ``(V,)``: the widget.

    Without ``logits``, an example distribution over a few words
    (:data:`EXAMPLE_LOGITS`, :data:`EXAMPLE_WORDS`).
    """
    if logits is None:
        logits, names = EXAMPLE_LOGITS, EXAMPLE_WORDS
    if names is None or len(names) != logits.size(-1):
        raise ValueError("pass one name per logit")
    return SAMPLING_EXPLORER.bind(logits=logits, names=list(names)).widget(
        temperature=temperature, top_k=top_k, top_p=top_p)
