"""Every chapter's figures and explorers.

- :mod:`.common`: drawing helpers shared by the chapters (attention heatmap,
  attention distribution, small multiples) and the book's column width.
- :mod:`.explorer`: the one helper that turns a chapter's declared controls and
  drawing function into a live ipywidgets explorer, static small multiples and
  a self-contained interactive HTML figure for pages without a kernel.
- one module per chapter, named after the chapter's package module:
  :mod:`.attention` (Chapter 1), :mod:`.multihead` (Chapter 2),
  :mod:`.positional` (Chapter 3). A chapter's figures and explorers live in its
  own module only.

The shared helpers are importable from here::

    from transformer_workbook.figures import attention_heatmap, small_multiples
"""

from .common import (
    COLUMN_IN,
    COLUMN_PX,
    DPI,
    attention_distribution,
    attention_heatmap,
    entropy_of,
    small_multiples,
)

__all__ = [
    "COLUMN_IN",
    "COLUMN_PX",
    "DPI",
    "attention_distribution",
    "attention_heatmap",
    "entropy_of",
    "small_multiples",
]
