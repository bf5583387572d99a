"""Chapter 3's figures: the positional-encoding plots and explorer, without a display."""

import math

import matplotlib.pyplot as plt
import pytest
import torch

from transformer_workbook.positional import sinusoidal_encoding


@pytest.fixture
def agg():
    yield plt
    plt.close("all")


def test_positional_views_are_the_table(agg):
    from transformer_workbook.figures.positional import positional_views

    pe = sinusoidal_encoding(100, 64)
    views = positional_views(10, 4)
    torch.testing.assert_close(views["encoding"], pe[10])
    torch.testing.assert_close(views["dimension"], pe[:, 4])
    assert views["similarity"].shape == (100,)
    assert math.isclose(views["similarity"][10].item(), 1.0, abs_tol=1e-6)
    # Cosine similarity of equal-norm rows: the dot product over d/2, depending on p - q only.
    torch.testing.assert_close(views["similarity"], pe @ pe[10] / 32)
    torch.testing.assert_close(positional_views(60, 0)["similarity"][60:], views["similarity"][10:50])
    for bad in ({"position": 100, "dim": 0}, {"position": 0, "dim": 64}, {"position": -1, "dim": 0}):
        with pytest.raises(ValueError):
            positional_views(**bad)


def test_draw_positional_explorer_panels(agg):
    from transformer_workbook.figures.positional import POSITIONAL_PANELS, draw_positional_explorer

    assert POSITIONAL_PANELS == ("encoding", "dimension", "similarity")
    ax = draw_positional_explorer(10, 4, "encoding")
    assert len(ax.patches) == 64
    assert [p.get_height() for p in ax.patches] == pytest.approx(sinusoidal_encoding(100, 64)[10].tolist())
    assert ax.patches[4].get_linewidth() > ax.patches[3].get_linewidth()  # the chosen dimension
    ax = draw_positional_explorer(10, 4, "dimension")
    assert "dimension 4 (sin)" in ax.get_title()
    assert len(ax.lines[0].get_ydata()) == 100
    ax = draw_positional_explorer(60, 5, "similarity")
    assert "position 60" in ax.get_title()
    with pytest.raises(ValueError):
        draw_positional_explorer(0, 0, "heatmap")


def test_positional_heatmap(agg):
    from transformer_workbook.figures.positional import positional_heatmap

    ax = positional_heatmap(sinusoidal_encoding(20, 8), title="t")
    assert ax.images[0].get_array().shape == (20, 8)
    assert ax.get_title() == "t"
    with pytest.raises(ValueError):
        positional_heatmap(torch.zeros(2, 3, 4))


def test_positional_explorer_builds_and_redraws(agg, monkeypatch):
    ipywidgets = pytest.importorskip("ipywidgets")
    from transformer_workbook.figures import positional as ch3

    shown = []
    monkeypatch.setattr(agg, "show", lambda *a, **k: (shown.append(1), agg.close("all")))
    box = ch3.positional_explorer(position=10, dim=4)
    assert isinstance(box, ipywidgets.VBox) and isinstance(box.children[-1], ipywidgets.Output)
    sliders = {w.description: w for w in box.children[0].children}
    assert set(sliders) == {"position", "dimension"}
    assert all(isinstance(w, ipywidgets.IntSlider) for w in sliders.values())
    assert sliders["position"].max == 99 and sliders["dimension"].max == 63
    before = len(shown)
    sliders["position"].value = 50
    sliders["dimension"].value = 63
    assert len(shown) == before + 2
    with pytest.raises(ValueError):
        ch3.positional_explorer(position=100)
