"""Chapter 8's figures: the beam explorer's computation and drawing, without a display."""

import matplotlib.pyplot as plt
import pytest
import torch


@pytest.fixture
def agg():
    yield plt
    plt.close("all")


def test_beams_of_is_beam_search_best_first(agg):
    from transformer_workbook.figures.training import _untrained_date_model, beams_of

    model, tok = _untrained_date_model()
    one = beams_of(model, tok, "24 Nov 2026", 1, max_len=6)
    three = beams_of(model, tok, "24 Nov 2026", 3, max_len=6)
    assert len(one) == 1 and len(three) == 3
    scores = [s for _, s in three]
    assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)
    assert three[0][1] >= one[0][1] - 1e-5  # a wider beam never finds a worse best output


def test_draw_beams_marks_the_right_answer(agg):
    from transformer_workbook.figures.training import draw_beams

    ax = draw_beams([("2026-11-24", -0.1), ("2026-11-25", -2.5)], "24 Nov 2026", "2026-11-24")
    colors = [tuple(p.get_facecolor()) for p in ax.patches]
    assert len(colors) == 2 and colors[0] != colors[1]
    assert ax.get_xlim()[1] == 0.0


def test_beam_explorer_needs_a_tokenizer_with_a_model(agg):
    from transformer_workbook.figures.training import _untrained_date_model, beam_explorer

    model, _ = _untrained_date_model()
    with pytest.raises(ValueError):
        beam_explorer(model)
    assert torch.is_grad_enabled()
