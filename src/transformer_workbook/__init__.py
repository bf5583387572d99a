"""The Transformer Workbook's helper package.

One module per chapter (``attention`` for Chapter 1, ...), plus ``figures``
(each chapter's figures and explorers), ``exercises`` (the graded checks) and
``chapters`` (the table of chapters). Later chapters import what earlier
chapters built instead of redefining it.
"""

from __future__ import annotations

import random

__version__ = "0.1.0"


def seed_everything(seed: int = 0) -> None:
    """Seed Python's, NumPy's and PyTorch's random generators."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
