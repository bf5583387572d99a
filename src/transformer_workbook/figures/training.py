"""Chapter 8's figures: the beam explorer (what beam search keeps, for each beam size).

Three layers, as in every chapter: a pure computation (:func:`beams_of`), a
drawing function (:func:`draw_beams`, ``ax=None`` draws a new figure) and the
explorer declared once (:data:`BEAM_EXPLORER`), whose ``draw`` needs the
trained model: :func:`beam_explorer` binds it. The book's page shows the
precomputed beam sizes 1 to 5.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.axes import Axes
from torch import nn

from ..data import CharTokenizer, collate_seq2seq
from ..generation import beam_search
from .common import new_ax
from .explorer import Explorer, Slider

__all__ = ["BEAM_EXPLORER", "beam_explorer", "beams_of", "draw_beams"]


@torch.no_grad()
def beams_of(model: nn.Module, tokenizer: CharTokenizer, source: str, beam_size: int,
             max_len: int = 12) -> list[tuple[str, float]]:
    """The ``beam_size`` outputs beam search keeps for ``source``, best first, with log-probabilities."""
    batch = collate_seq2seq([(source, "")], tokenizer)
    device = next(model.parameters()).device
    beams, scores = beam_search(model, batch.src.to(device), beam_size, max_len, tokenizer.bos_id,
                                tokenizer.eos_id, tokenizer.pad_id, return_beams=True)  # (1, K, L), (1, K)
    return [(tokenizer.decode(row), float(s)) for row, s in zip(beams[0], scores[0], strict=True)]


def draw_beams(beams: Sequence[tuple[str, float]], source: str, target: str | None = None,
               ax: Axes | None = None) -> Axes:
    """One bar per kept output (its log-probability, 0 = certain), the right answer in green."""
    ax = new_ax(ax, (6.6, 2.4))
    texts = [t for t, _ in beams]
    scores = [s for _, s in beams]
    colors = ["tab:green" if t == target else "tab:gray" for t in texts]
    ax.barh(range(len(beams)), scores, color=colors)
    ax.set_yticks(range(len(beams)), [repr(t) for t in texts], fontsize=8, family="monospace")
    ax.invert_yaxis()
    ax.set_xlim(min(-4.0, min(scores) * 1.1), 0.0)
    ax.set_xlabel("log p(output | source)  (0 = certain)", fontsize=8)
    ax.set_title(f"beam search on {source!r}", fontsize=9)
    ax.tick_params(labelsize=8)
    return ax


def _frame(ax: Axes, beam_size: int, model: nn.Module, tokenizer: CharTokenizer, source: str,
           target: str | None = None) -> None:
    draw_beams(beams_of(model, tokenizer, source, beam_size), source, target, ax=ax)


#: The explorer's declaration; ``draw`` also needs ``model``, ``tokenizer``, ``source`` (bound).
BEAM_EXPLORER = Explorer(
    "beam_explorer",
    controls=(Slider("beam_size", "beam size", 1, 8, default=3, book=(1, 2, 3, 4, 5)),),
    draw=_frame,
    figsize=(6.6, 2.4),
)


def _untrained_date_model() -> tuple[nn.Module, CharTokenizer]:
    """A seeded, untrained model of the date recipe's shape (what the explorer shows without a model)."""
    from ..data import date_tokenizer
    from ..model import Transformer
    from ..training import DATE_RECIPE

    tok = date_tokenizer()
    torch.manual_seed(0)
    return Transformer(src_vocab_size=len(tok), tgt_vocab_size=len(tok), **DATE_RECIPE.model).eval(), tok


def beam_explorer(model: nn.Module | None = None, tokenizer: CharTokenizer | None = None,
                  source: str = "24 Nov 2026", target: str | None = "2026-11-24", beam_size: int = 3):
    """A slider for the beam size over the outputs beam search keeps for ``source``; returns the widget.

    Without a model, an untrained (seeded) model of the date recipe's shape is
    used: its beams are real beam search, of a model that knows nothing yet.
    """
    if model is None:
        model, tokenizer = _untrained_date_model()
    if tokenizer is None:
        raise ValueError("pass the model's tokenizer")
    return BEAM_EXPLORER.bind(model=model, tokenizer=tokenizer, source=source,
                              target=target).widget(beam_size=beam_size)
