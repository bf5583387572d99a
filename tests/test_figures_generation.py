"""Chapter 9's figures: the next-token distribution before and after the filters, without a display."""

import matplotlib.pyplot as plt
import pytest
import torch


@pytest.fixture
def agg():
    yield plt
    plt.close("all")


def test_reshaped_distribution(agg):
    from transformer_workbook.figures.generation import EXAMPLE_LOGITS, reshaped_distribution

    before, after = reshaped_distribution(EXAMPLE_LOGITS)
    torch.testing.assert_close(before, after)
    _, cold = reshaped_distribution(EXAMPLE_LOGITS, temperature=0.5)
    assert cold.max() > before.max()
    _, k3 = reshaped_distribution(EXAMPLE_LOGITS, top_k=3)
    assert int((k3 > 0).sum()) == 3
    _, nucleus = reshaped_distribution(EXAMPLE_LOGITS, top_p=0.8)
    assert before[nucleus > 0].sum() >= 0.8


def test_draw_reshaped_and_explorer_frame(agg):
    from transformer_workbook.figures.generation import (
        EXAMPLE_LOGITS,
        EXAMPLE_WORDS,
        SAMPLING_EXPLORER,
        draw_reshaped,
    )

    ax = draw_reshaped(EXAMPLE_LOGITS, EXAMPLE_WORDS, top_k=3, show=6)
    assert len(ax.patches) == 12  # 6 tokens, after and before
    assert "3 of 12" in ax.get_title()
    fig = SAMPLING_EXPLORER.bind(logits=EXAMPLE_LOGITS, names=list(EXAMPLE_WORDS)).figure(
        temperature=2.0, top_k=0, top_p=0.8)
    assert "top-k=none" in fig.axes[0].get_title()
    with pytest.raises(ValueError):
        from transformer_workbook.figures.generation import sampling_explorer

        sampling_explorer(EXAMPLE_LOGITS, EXAMPLE_WORDS[:3])
