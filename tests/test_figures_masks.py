"""Chapter 6's figures: the mask grid, the explorer's computation and its widget, without a display."""

import matplotlib.pyplot as plt
import pytest
import torch

from transformer_workbook.attention import scaled_dot_product_attention
from transformer_workbook.masks import causal_mask, padding_mask


@pytest.fixture
def agg():
    yield plt
    plt.close("all")


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


@pytest.mark.parametrize("padding", ["right", "left", "none"])
@pytest.mark.parametrize("causal", [True, False])
def test_explorer_attention_is_the_course_attention_under_the_combined_mask(padding, causal):
    from transformer_workbook.figures.masks import PAD, explorer_attention

    a = explorer_attention(7, 4, padding, causal, seed=3)
    real = 7 if padding == "none" else 4
    assert int(a.keep.sum()) == real and len(a.tokens) == 7
    assert [t == PAD for t in a.tokens] == (~a.keep).tolist()
    if padding == "left":
        assert not a.keep[: 7 - real].any() and a.keep[7 - real :].all()
    else:
        torch.testing.assert_close(a.keep, padding_mask(torch.tensor([real]), 7)[0])
    expected = a.keep[None, :].expand(7, 7)
    if causal:
        expected = expected & causal_mask(7)
    assert torch.equal(a.mask, expected)
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(7, 8, generator=g), torch.randn(7, 8, generator=g)
    torch.testing.assert_close(a.weights, scaled_dot_product_attention(q, k, k, expected)[1])
    assert a.empty_rows == [i for i in range(7) if not expected[i].any()]
    assert (a.weights[a.empty_rows] == 0).all()  # zeros, not NaN
    full = [i for i in range(7) if i not in a.empty_rows]
    torch.testing.assert_close(a.weights[full].sum(-1), torch.ones(len(full)))
    assert (a.weights[~expected] == 0).all()


def test_left_padding_under_a_causal_mask_empties_one_row_per_pad():
    from transformer_workbook.figures.masks import explorer_attention

    assert explorer_attention(8, 5, "left", True).empty_rows == [0, 1, 2]
    assert explorer_attention(8, 5, "left", False).empty_rows == []
    assert explorer_attention(8, 5, "right", True).empty_rows == []


@pytest.mark.parametrize("bad", [{"padding": "middle"}, {"length": 0}, {"length": 13}, {"real": 0},
                                 {"length": 4, "real": 5}])
def test_explorer_attention_rejects_bad_settings(bad):
    from transformer_workbook.figures.masks import explorer_attention

    with pytest.raises(ValueError):
        explorer_attention(**bad)


def test_draw_mask_cells_and_labels(agg):
    from transformer_workbook.figures.masks import draw_mask

    ax = draw_mask(causal_mask(4), title="causal")
    assert ax.images[0].get_array().tolist() == causal_mask(4).int().tolist()
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("1") == 10 and texts.count("0") == 6  # annotated: small mask
    assert ax.get_title() == "causal" and ax.get_xlabel() == "key" and ax.get_ylabel() == "query"
    ax = draw_mask(padding_mask(torch.tensor([2]), 5)[0], x_labels=list("abcde"))
    assert ax.images[0].get_array().shape == (1, 5)  # one sequence: one row
    assert [t.get_text() for t in ax.get_xticklabels()] == list("abcde")
    assert len(draw_mask(causal_mask(12)).texts) == 0  # large: not annotated
    assert draw_mask(causal_mask(3)[None, None]).images[0].get_array().shape == (3, 3)
    with pytest.raises(ValueError):
        draw_mask(torch.ones(2, 3, 4, dtype=torch.bool))


def test_draw_mask_explorer_marks_empty_rows(agg):
    from transformer_workbook.figures.masks import draw_mask_explorer

    ax_mask, ax_weights = draw_mask_explorer(6, 3, "left", True)
    assert "padding at the start & causal" in ax_mask.get_title()
    colors = [label.get_color() for label in ax_mask.get_yticklabels()]
    assert colors[:3] == ["#c62828"] * 3 and "#c62828" not in colors[3:]
    assert "3 row(s)" in ax_weights.get_title()
    _, ax_weights = draw_mask_explorer(6, 3, "none", False)
    assert ax_weights.get_title() == "attention weights"


def test_mask_explorer_builds_and_redraws(agg, monkeypatch):
    ipywidgets = pytest.importorskip("ipywidgets")
    from transformer_workbook.figures import masks as ch6

    shown = []
    monkeypatch.setattr(agg, "show", lambda *a, **k: (shown.append(1), agg.close("all")))
    box = ch6.mask_explorer(length=8, real=5, padding="left", causal=True)
    controls = [w for w in _walk(box) if isinstance(w, ipywidgets.ValueWidget)]
    assert len(controls) == 4
    length = next(w for w in controls if isinstance(w, ipywidgets.IntSlider) and w.value == 8)
    before = len(shown)
    length.value = 10
    assert len(shown) > before
    with pytest.raises(ValueError):
        ch6.mask_explorer(padding="middle")
