"""Chapter 4's figures: the depth profile, its drawing and the depth explorer, without a display."""

import matplotlib.pyplot as plt
import pytest
import torch

from transformer_workbook.figures.common import COLUMN_IN


@pytest.fixture
def agg():
    yield plt
    plt.close("all")


def test_depth_profile_measures_the_stack():
    from transformer_workbook.figures.encoder import depth_profile

    p = depth_profile(6, "post")
    assert p["activation"].shape == p["gradient"].shape == (6,)
    # post-LN ends every layer with a LayerNorm at its initial gain 1 and bias 0
    torch.testing.assert_close(p["activation"], torch.ones(6, dtype=torch.float64), atol=1e-3, rtol=0)
    # what Chapter 4 shows: residuals keep the gradient, and without any norm or residual it vanishes
    bottom = {r: depth_profile(24, "none", r)["gradient"][0] for r in (True, False)}
    assert bottom[True] > 1e20 * bottom[False]
    assert depth_profile(24, "pre")["gradient"][0] > 2 * depth_profile(24, "post")["gradient"][0]
    # a copy each time: the cache cannot be changed through the result
    p["gradient"].zero_()
    assert depth_profile(6, "post")["gradient"].abs().min() > 0
    for bad in ({"depth": 0}, {"depth": 3, "placement": "sandwich"}):
        with pytest.raises(ValueError):
            depth_profile(**bad)


def test_depth_profile_leaves_the_thread_count_and_the_global_generator():
    from transformer_workbook.figures.encoder import depth_profile

    n = torch.get_num_threads()
    state = torch.random.get_rng_state()
    depth_profile(3, "pre", seed=11)
    assert torch.get_num_threads() == n
    assert torch.equal(torch.random.get_rng_state(), state)


def test_draw_depth_profile_fits_the_column(agg):
    from transformer_workbook.figures.encoder import draw_depth_profile

    axes = draw_depth_profile(12, "pre", residual=False)
    assert len(axes) == 2
    fig = axes[0].figure
    assert fig.get_size_inches()[0] <= COLUMN_IN
    assert len(axes[0].lines[0].get_ydata()) == 12 and axes[0].get_yscale() == "log"


def test_depth_explorer_declaration_and_widget(agg, monkeypatch):
    ipywidgets = pytest.importorskip("ipywidgets")
    from transformer_workbook.figures import encoder as ch4

    explorer = ch4.DEPTH_EXPLORER
    assert explorer.figsize[0] <= COLUMN_IN
    monkeypatch.setattr(agg, "show", lambda *a, **k: agg.close("all"))
    box = ch4.depth_explorer(depth=6, placement="pre", residual=False)
    assert isinstance(box, ipywidgets.VBox)
    with pytest.raises(ValueError):
        ch4.depth_explorer(placement="middle")
