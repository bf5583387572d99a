"""The drawing helpers shared by the chapters (figures/common.py), without a display."""

import math

import matplotlib.pyplot as plt
import pytest
import torch

from transformer_workbook.attention import attention_entropy
from transformer_workbook.figures import common
from transformer_workbook.figures.attention import draw_attention_explorer


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_attention_heatmap_labels_cells_and_colorbar():
    weights = torch.softmax(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)), dim=-1)
    keys, queries = ["a", "b", "c", "d"], ["x", "y", "z"]
    ax = common.attention_heatmap(weights, keys, queries, title="weights")
    assert [t.get_text() for t in ax.get_xticklabels()] == keys
    assert [t.get_text() for t in ax.get_yticklabels()] == queries
    assert len(ax.images) == 1
    assert len(ax.texts) == 12  # one annotation per cell
    assert ax.texts[0].get_text() == f"{float(weights[0, 0]):.2f}"
    assert ax.get_title() == "weights"
    assert len(ax.figure.axes) == 2  # the heatmap and its colour bar


def test_attention_heatmap_options_and_existing_axes():
    fig, axes = plt.subplots(1, 2)
    scores = torch.arange(6.0).reshape(1, 2, 3)  # a leading batch of 1 is squeezed
    ax = common.attention_heatmap(scores, ax=axes[1], vmin=None, vmax=None, fmt=".0f",
                                 colorbar=False, xlabel="feature", ylabel="token")
    assert ax is axes[1] and len(fig.axes) == 2
    assert [t.get_text() for t in ax.texts] == ["0", "1", "2", "3", "4", "5"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
    assert ax.get_xlabel() == "feature" and ax.get_ylabel() == "token"
    big = common.attention_heatmap(torch.rand(20, 20), colorbar=False)
    assert len(big.texts) == 0  # too many cells to annotate by default
    with pytest.raises(ValueError):
        common.attention_heatmap(torch.rand(2, 3, 4))


def test_attention_distribution_bars_and_entropy_title():
    w = torch.tensor([0.1, 0.6, 0.3])
    ax = common.attention_distribution(w, labels=["the", "cat", "sat"], title="query 'cat'")
    assert len(ax.patches) == 3
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.1, 0.6, 0.3])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["the", "cat", "sat"]
    title = ax.get_title()
    assert title.startswith("query 'cat'\n")
    assert f"H = {float(attention_entropy(w)):.2f} nats (max {math.log(3):.2f})" in title
    assert ax.patches[1].get_alpha() == 1.0  # the largest weight stands out
    assert common.entropy_of([1.0, 0.0, 0.0]) == 0.0
    assert common.entropy_of([0.25] * 4) == pytest.approx(math.log(4))


def test_small_multiples_calls_draw_fn_on_every_panel():
    calls = []

    def draw(ax, r, c):
        calls.append((r, c))
        return draw_attention_explorer(r, c, ax=ax)

    rows, cols = [0.5, 2.0], [4, 64, 1024]
    fig = common.small_multiples(draw, rows, cols, row_label="T = {}",
                                col_label=lambda d: f"d_k = {d}", suptitle="grid")
    assert calls == [(r, c) for r in rows for c in cols]
    assert len(fig.axes) == 6
    assert all(len(ax.patches) == 8 for ax in fig.axes)
    assert fig.axes[0].get_ylabel() == "weight" and fig.axes[1].get_ylabel() == ""
    annotations = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert {"T = 0.5", "T = 2.0", "d_k = 4", "d_k = 64", "d_k = 1024"} <= set(annotations)
    assert fig.get_suptitle() == "grid"
    with pytest.raises(ValueError):
        common.small_multiples(draw, [], cols)
