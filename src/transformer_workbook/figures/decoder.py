"""Chapter 5's figures: a tiny encoder-decoder trained to reverse words, its attention
maps, masks drawn as grids, and the cross-attention explorer.

Three layers:

- pure computation: :func:`reversal_batch` (the toy task), :func:`train_reversal`
  (the tiny model, trained with teacher forcing in a few seconds, cached) and
  :func:`reversal_attention` (its self- and cross-attention on one word);
- drawing: :func:`draw_mask` and :func:`draw_decoder_position`;
- the explorer, :data:`CROSS_ATTENTION_EXPLORER` / :func:`cross_attention_explorer`,
  declared with the shared :class:`~transformer_workbook.figures.explorer.Explorer`.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.patches import Rectangle

from .common import as_tensor, new_ax
from .encoder import one_thread
from .explorer import Choice, Explorer, Slider

__all__ = [
    "CROSS_ATTENTION_EXPLORER",
    "REVERSAL_ALPHABET",
    "REVERSAL_EXAMPLES",
    "REVERSAL_LENGTH",
    "REVERSAL_MODEL",
    "REVERSAL_STEPS",
    "cross_attention_explorer",
    "draw_decoder_position",
    "draw_mask",
    "reversal_attention",
    "reversal_batch",
    "reversal_tokenizer",
    "train_reversal",
]

#: The toy task: reverse a word of REVERSAL_LENGTH letters from REVERSAL_ALPHABET.
REVERSAL_ALPHABET = "abcdefghij"
REVERSAL_LENGTH = 6
#: The tiny model (``model.Transformer`` arguments besides the vocabularies) and its training.
REVERSAL_MODEL: dict[str, int] = {"d_model": 32, "n_heads": 4, "n_layers": 1, "d_ff": 64, "max_len": 16}
REVERSAL_STEPS = 250
REVERSAL_BATCH = 64
REVERSAL_LR = 3e-3
#: Words the explorer reverses (example 0 first); repeated letters make the model use positions.
REVERSAL_EXAMPLES: tuple[str, ...] = (
    "badjig", "facade", "cabbie", "jigged", "deface", "hedged", "jabbed", "cached", "efface", "fiched",
)


def reversal_tokenizer():
    """The task's :class:`~transformer_workbook.data.CharTokenizer`: ``<pad>`` 0, ``<bos>`` 1,
    ``<eos>`` 2, ``<unk>`` 3, then the letters a..j (ids 4..13)."""
    from ..data import CharTokenizer

    return CharTokenizer(REVERSAL_ALPHABET)


def reversal_batch(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random words and their reversals: ``src`` ``(n, L)``, ``tgt`` ``(n, L + 1)``.

    ``tgt`` is the word reversed, then ``<eos>``: what the decoder must
    produce. Letters are ids 4..13 (:func:`reversal_tokenizer`).
    """
    tok = reversal_tokenizer()
    first = tok.stoi[REVERSAL_ALPHABET[0]]
    src = torch.randint(first, first + len(REVERSAL_ALPHABET), (n, REVERSAL_LENGTH),
                        generator=generator)  # (n, L)
    eos = torch.full((n, 1), tok.eos_id)  # (n, 1)
    return src, torch.cat([src.flip(1), eos], dim=1)  # (n, L), (n, L + 1)


def train_reversal(steps: int = REVERSAL_STEPS, seed: int = 0):
    """The tiny :class:`~transformer_workbook.model.Transformer` trained to reverse words.

    ``steps`` steps of Adam (learning rate 3e-3) on batches of 64 random
    words, teacher-forced: the decoder reads ``shift_right(tgt, <bos>)`` and
    the loss is the cross-entropy of its logits against ``tgt``. The model is
    built after ``torch.manual_seed(seed)`` (the global generator is restored
    afterwards) and the batches come from ``torch.Generator().manual_seed(seed)``,
    so Chapter 5's loop, written out with the same seeds, gives the same
    weights. About two seconds on a CPU; the result is cached, and each call
    returns a fresh copy in eval mode.
    """
    return copy.deepcopy(_train_reversal(int(steps), int(seed)))


@functools.lru_cache(maxsize=4)
def _train_reversal(steps: int, seed: int):
    with one_thread():
        return _train(steps, seed)


def _train(steps: int, seed: int):
    from ..model import Transformer, shift_right

    tok = reversal_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Transformer(tok.vocab_size, tok.vocab_size, **REVERSAL_MODEL)
    optimizer = torch.optim.Adam(model.parameters(), lr=REVERSAL_LR)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        src, tgt = reversal_batch(REVERSAL_BATCH, g)
        logits = model(src, shift_right(tgt, tok.bos_id))  # (B, L + 1, V)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def reversal_attention(word: str, padding: int = 0, model=None) -> dict[str, Any]:
    """The trained model's attention while it reverses ``word``.

    The model generates the reversal greedily from ``<bos>``; then one
    teacher-forced pass over its own output records every attention map. With
    ``padding`` > 0 the source gets that many ``<pad>`` tokens appended and the
    source padding mask hides them (the outputs do not change).

    Returns a dict: ``"self"`` ``(H, Lt, Lt)`` and ``"cross"`` ``(H, Lt, Ls)``
    weights (``Lt = len(word) + 1``, ``Ls = len(word) + padding``),
    ``"self_allowed"`` ``(Lt, Lt)`` and ``"cross_allowed"`` ``(Lt, Ls)``: the
    masks (True = may attend); ``"source"`` and ``"decoder_input"``: the
    tokens as text, ``"output"``: what the model wrote (without ``<eos>``).
    ``model``: another trained model (default: :func:`train_reversal`'s).
    """
    if model is None:  # the cached model: cache its maps too (every explorer frame reads them)
        return {k: v.clone() if isinstance(v, torch.Tensor) else list(v) if isinstance(v, list) else v
                for k, v in _default_attention(word, int(padding)).items()}
    return _attention(model, word, int(padding))


@functools.lru_cache(maxsize=64)
def _default_attention(word: str, padding: int) -> dict[str, Any]:
    with one_thread():
        return _attention(_train_reversal(REVERSAL_STEPS, 0), word, padding)


def _attention(model, word: str, padding: int) -> dict[str, Any]:
    from ..masks import causal_mask
    from ..model import greedy_decode, record_attention, shift_right

    tok = reversal_tokenizer()
    ids = tok.encode(word)
    src = torch.tensor([ids + [tok.pad_id] * padding])  # (1, Ls)
    keep = src != tok.pad_id  # (1, Ls), True at real tokens
    out = greedy_decode(model, src, len(word) + 1, tok.bos_id, tok.eos_id, src_padding_mask=keep)
    decoder_input = shift_right(out, tok.bos_id)  # (1, Lt): <bos> then the output
    with torch.no_grad(), record_attention(model) as maps:
        model(src, decoder_input, keep)
    layer = len(model.decoder.layers) - 1
    Lt = decoder_input.size(1)
    names = {tok.bos_id: "<s>", tok.eos_id: "</s>", tok.pad_id: "<pad>"}
    return {
        "self": maps[f"decoder.layers.{layer}.self_attn"][0],  # (H, Lt, Lt)
        "cross": maps[f"decoder.layers.{layer}.cross_attn"][0],  # (H, Lt, Ls)
        "self_allowed": causal_mask(Lt),  # (Lt, Lt)
        "cross_allowed": keep[0].expand(Lt, -1),  # (Lt, Ls)
        "source": [names.get(i, tok.itos[i]) for i in src[0].tolist()],
        "decoder_input": [names.get(i, tok.itos[i]) for i in decoder_input[0].tolist()],
        "output": tok.decode(out[0]),
    }


# ---------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------


def draw_mask(
    mask: Any,
    x_labels: list[str] | None = None,
    y_labels: list[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    *,
    xlabel: str = "key (attended to)",
    ylabel: str = "query (attending)",
) -> Axes:
    """A ``(Lq, Lk)`` bool mask as a grid: dark where a query may attend (True), pale where not."""
    m = as_tensor(mask).bool()
    if m.dim() != 2:
        raise ValueError(f"draw_mask expects an (Lq, Lk) mask, got shape {tuple(m.shape)}")
    ax = new_ax(ax, (3.0, 3.0))
    ax.imshow(m.numpy(), cmap=ListedColormap(["#e8e8e8", "#2c7fb8"]), vmin=0, vmax=1)
    n_q, n_k = m.shape
    ax.set_xticks(range(n_k), x_labels if x_labels is not None else range(n_k), fontsize=8)
    ax.set_yticks(range(n_q), y_labels if y_labels is not None else range(n_q), fontsize=8)
    ax.set_xticks(np.arange(-0.5, n_k, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, n_q, 1), minor=True)
    ax.grid(which="minor", color="white", lw=1)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def _weights_heatmap(ax, weights, allowed, x_labels, y_labels, row, title, xlabel):
    """Weights where attending is allowed, pale grey where the mask forbids it; ``row`` outlined
    and its weights written."""
    w = as_tensor(weights).numpy()
    cmap = plt.get_cmap("viridis").with_extremes(bad="#e8e8e8")
    ax.imshow(np.ma.masked_where(~allowed.numpy(), w), cmap=cmap, vmin=0, vmax=1)
    n_q, n_k = w.shape
    ax.add_patch(Rectangle((-0.5, row - 0.5), n_k, 1, fill=False, ec="#d7301f", lw=2.2))
    for j in range(n_k):
        if allowed[row, j]:
            ax.text(j, row, f"{w[row, j]:.2f}"[1:] if w[row, j] < 1 else "1", ha="center",
                    va="center", fontsize=8, color="black" if w[row, j] > 0.5 else "white")
    ax.set_xticks(range(n_k), x_labels, fontsize=8)
    ax.set_yticks(range(n_q), y_labels, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel("decoder position (its input)", fontsize=9)
    ax.set_title(title, fontsize=9)


def draw_decoder_position(
    position: int,
    padding: int = 0,
    example: int = 0,
    axes: tuple[Axes, Axes] | None = None,
) -> tuple[Axes, Axes]:
    """What decoder position ``position`` may attend to, and where it looks.

    Left: the decoder's masked self-attention (heads averaged), the future
    greyed out by the causal mask. Right: the cross-attention to the source
    word :data:`REVERSAL_EXAMPLES` ``[example]`` (with ``padding`` ``<pad>``
    tokens, greyed out by the source padding mask). The chosen row is outlined.
    """
    if not 0 <= example < len(REVERSAL_EXAMPLES):
        raise ValueError(f"example must be in [0, {len(REVERSAL_EXAMPLES)}), got {example}")
    word = REVERSAL_EXAMPLES[example]
    if not 0 <= position <= len(word):
        raise ValueError(f"position must be in [0, {len(word)}], got {position}")
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(6.6, 3.3), layout="constrained",
                               gridspec_kw={"width_ratios": [1, 1 + padding / (len(word) + 1)]})
    att = reversal_attention(word, padding)
    y = att["decoder_input"]
    _weights_heatmap(axes[0], att["self"].mean(0), att["self_allowed"], y, y, position,
                     "masked self-attention:\nthe decoder's past", "decoder position")
    _weights_heatmap(axes[1], att["cross"].mean(0), att["cross_allowed"], att["source"], y, position,
                     "cross-attention:\nthe whole source", "source token (encoder)")
    return tuple(axes)


def _frame(axes: tuple[Axes, Axes], position: int, padding: int, example: int) -> None:
    draw_decoder_position(position, padding, example, axes=axes)
    att = reversal_attention(REVERSAL_EXAMPLES[example], padding)
    predicted = att["output"][position] if position < len(att["output"]) else "</s>"
    axes[0].figure.suptitle(
        f"'{REVERSAL_EXAMPLES[example]}' -> '{att['output']}': position {position} reads "
        f"'{att['decoder_input'][position]}', writes '{predicted}'", fontsize=10)


#: The explorer's declaration: 7 decoder positions x 2 paddings precomputed (example 0).
CROSS_ATTENTION_EXPLORER = Explorer(
    "cross_attention_explorer",
    controls=(
        Slider("position", "decoder position", 0, REVERSAL_LENGTH, default=2),
        Choice("padding", "source padding", {0: "none", 2: "2 <pad> tokens"}, default=0),
        Slider("example", "word", 0, len(REVERSAL_EXAMPLES) - 1, default=0, book=(0,)),
    ),
    draw=_frame,
    figsize=(6.6, 3.3),
    panels=2,
    rows=(("position", "padding"), ("example",)),
    colors=64,
)


def cross_attention_explorer(position: int = 2, padding: int = 0, example: int = 0):
    """Sliders for a decoder position and the word, a list for the source padding; returns
    the widget.

    Shows which decoder and source positions the chosen position may attend to
    and the weights it gives them (:func:`draw_decoder_position`), in the tiny
    model :func:`train_reversal` trains (the first call trains it: a few
    seconds). Display it by making it the last expression of a cell.
    """
    return CROSS_ATTENTION_EXPLORER.widget(position=position, padding=padding, example=example)
