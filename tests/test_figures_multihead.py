"""Chapter 2's figures: the heads explorer (pure computation, drawing, widget), without a display."""

import matplotlib.pyplot as plt
import pytest
import torch

from transformer_workbook.figures import multihead as ch2


@pytest.mark.parametrize("n_heads", ch2.HEADS_CHOICES)
def test_heads_weights_are_distributions(n_heads):
    w = ch2.heads_weights(n_heads, seed=1)
    n = len(ch2.HEADS_TOKENS)
    assert w.shape == (n_heads, n, n)
    torch.testing.assert_close(w.sum(-1), torch.ones(n_heads, n))
    torch.testing.assert_close(w, ch2.heads_weights(n_heads, seed=1), rtol=0, atol=0)
    # the two "the" tokens have the same embedding and no position: identical rows
    torch.testing.assert_close(w[:, 0], w[:, 4])


def test_heads_weights_differ_between_heads_and_seeds():
    w = ch2.heads_weights(4, seed=0)
    assert not torch.allclose(w[0], w[1], atol=1e-2)
    assert not torch.allclose(w, ch2.heads_weights(4, seed=1), atol=1e-2)
    with pytest.raises(ValueError):
        ch2.heads_weights(5)


def test_draw_heads_explorer_and_blank_cells():
    ax = ch2.draw_heads_explorer(4, 3)
    assert len(ax.images) == 1 and "head 3 of 4 (d_head = 6)" in ax.get_title()
    blank = ch2.draw_heads_explorer(2, 3)
    assert not blank.axison and not blank.images
    plt.close("all")


def test_heads_explorer_head_slider_follows_the_number_of_heads():
    pytest.importorskip("ipywidgets")
    box = ch2.heads_explorer(n_heads=4, head=3)
    n_heads, head = box.children[0].children
    assert head.max == 3 and head.value == 3
    n_heads.value = 2
    assert head.max == 1 and head.value == 1
    n_heads.value = 8
    assert head.max == 7 and head.value == 1
    with pytest.raises(ValueError):
        ch2.heads_explorer(n_heads=5)
    with pytest.raises(ValueError):
        ch2.heads_explorer(n_heads=2, head=2)
    plt.close("all")
