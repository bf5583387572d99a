"""The shared plotting helpers and the Chapter 1 explorer, without a display (Agg)."""

import importlib
import itertools
import math
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from transformer_workbook import plots, widgets  # noqa: E402
from transformer_workbook.attention import attention_entropy  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------------------
# Chapter 1: the explorer's pure computation
# ---------------------------------------------------------------------------


def test_explorer_weights_is_a_deterministic_distribution():
    w, h = widgets.explorer_weights(temperature=1.0, d_k=16, scaling="sqrt", seed=3, n_keys=6)
    assert w.shape == (6,)
    torch.testing.assert_close(w.sum(), torch.tensor(1.0, dtype=w.dtype))
    assert (w > 0).all()
    assert 0.0 <= h <= math.log(6) + 1e-9
    assert h == pytest.approx(float(attention_entropy(w)))
    w2, h2 = widgets.explorer_weights(temperature=1.0, d_k=16, scaling="sqrt", seed=3, n_keys=6)
    torch.testing.assert_close(w, w2)
    assert h == h2
    w3, _ = widgets.explorer_weights(temperature=1.0, d_k=16, scaling="sqrt", seed=4, n_keys=6)
    assert not torch.allclose(w, w3), "another seed is another example"


@pytest.mark.parametrize("d_k", [1, 8, 64, 1024])
@pytest.mark.parametrize("scaling", ["sqrt", "none", "d_k"])
def test_entropy_decreases_as_temperature_decreases(d_k, scaling):
    temperatures = [4.0, 2.0, 1.0, 0.5, 0.25, 0.1]
    entropies = [widgets.explorer_weights(t, d_k, scaling, seed=0)[1] for t in temperatures]
    assert all(a >= b for a, b in itertools.pairwise(entropies)), entropies
    assert entropies[0] > entropies[-1]


def test_temperature_extremes_are_uniform_and_one_hot():
    n = 8
    w_hot, h_hot = widgets.explorer_weights(0.1, 1024, "none", seed=0, n_keys=n)
    assert w_hot.max() > 0.999 and h_hot < 1e-3
    w_flat, h_flat = widgets.explorer_weights(1e6, 4, "sqrt", seed=0, n_keys=n)
    torch.testing.assert_close(w_flat, torch.full((n,), 1 / n, dtype=w_flat.dtype), atol=1e-4, rtol=0)
    assert h_flat == pytest.approx(math.log(n), abs=1e-6)


def test_scalings_are_temperatures():
    # No scaling at temperature T equals the paper's scaling at T / sqrt(d_k), and
    # dividing by d_k equals the paper's scaling at T * sqrt(d_k): same query, same keys.
    d_k = 64
    none, _ = widgets.explorer_weights(1.0, d_k, "none", seed=2)
    torch.testing.assert_close(none, widgets.explorer_weights(1 / math.sqrt(d_k), d_k, "sqrt", seed=2)[0])
    by_dk, _ = widgets.explorer_weights(1.0, d_k, "d_k", seed=2)
    torch.testing.assert_close(by_dk, widgets.explorer_weights(math.sqrt(d_k), d_k, "sqrt", seed=2)[0])


def test_unscaled_attention_saturates_with_d_k_on_average():
    def mean_entropy(d_k, scaling):
        return sum(widgets.explorer_weights(1.0, d_k, scaling, seed=s)[1] for s in range(10)) / 10

    assert mean_entropy(4, "none") > mean_entropy(64, "none") > mean_entropy(1024, "none")
    assert abs(mean_entropy(4, "sqrt") - mean_entropy(1024, "sqrt")) < 0.4


@pytest.mark.parametrize(
    "kwargs", [{"temperature": 0.0}, {"temperature": -1.0}, {"d_k": 0}, {"scaling": "sqrt(d_model)"}]
)
def test_explorer_weights_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        widgets.explorer_weights(**kwargs)


# ---------------------------------------------------------------------------
# Chapter 1: plots
# ---------------------------------------------------------------------------


def test_attention_heatmap_labels_cells_and_colorbar():
    weights = torch.softmax(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)), dim=-1)
    keys, queries = ["a", "b", "c", "d"], ["x", "y", "z"]
    ax = plots.attention_heatmap(weights, keys, queries, title="weights")
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
    ax = plots.attention_heatmap(scores, ax=axes[1], vmin=None, vmax=None, fmt=".0f",
                                 colorbar=False, xlabel="feature", ylabel="token")
    assert ax is axes[1] and len(fig.axes) == 2
    assert [t.get_text() for t in ax.texts] == ["0", "1", "2", "3", "4", "5"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
    assert ax.get_xlabel() == "feature" and ax.get_ylabel() == "token"
    big = plots.attention_heatmap(torch.rand(20, 20), colorbar=False)
    assert len(big.texts) == 0  # too many cells to annotate by default
    with pytest.raises(ValueError):
        plots.attention_heatmap(torch.rand(2, 3, 4))


def test_attention_distribution_bars_and_entropy_title():
    w = torch.tensor([0.1, 0.6, 0.3])
    ax = plots.attention_distribution(w, labels=["the", "cat", "sat"], title="query 'cat'")
    assert len(ax.patches) == 3
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.1, 0.6, 0.3])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["the", "cat", "sat"]
    title = ax.get_title()
    assert title.startswith("query 'cat'\n")
    assert f"H = {float(attention_entropy(w)):.2f} nats (max {math.log(3):.2f})" in title
    assert ax.patches[1].get_alpha() == 1.0  # the largest weight stands out
    assert plots.entropy_of([1.0, 0.0, 0.0]) == 0.0
    assert plots.entropy_of([0.25] * 4) == pytest.approx(math.log(4))


def test_small_multiples_calls_draw_fn_on_every_panel():
    calls = []

    def draw(ax, r, c):
        calls.append((r, c))
        return widgets.draw_attention_explorer(r, c, ax=ax)

    rows, cols = [0.5, 2.0], [4, 64, 1024]
    fig = plots.small_multiples(draw, rows, cols, row_label="T = {}",
                                col_label=lambda d: f"d_k = {d}", suptitle="grid")
    assert calls == [(r, c) for r in rows for c in cols]
    assert len(fig.axes) == 6
    assert all(len(ax.patches) == 8 for ax in fig.axes)
    assert fig.axes[0].get_ylabel() == "weight" and fig.axes[1].get_ylabel() == ""
    annotations = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert {"T = 0.5", "T = 2.0", "d_k = 4", "d_k = 64", "d_k = 1024"} <= set(annotations)
    assert fig.get_suptitle() == "grid"
    with pytest.raises(ValueError):
        plots.small_multiples(draw, [], cols)


def test_draw_attention_explorer_draws_the_computed_weights():
    ax = widgets.draw_attention_explorer(0.5, 16, "none", seed=1, n_keys=5)
    w, h = widgets.explorer_weights(0.5, 16, "none", seed=1, n_keys=5)
    assert [p.get_height() for p in ax.patches] == pytest.approx(w.tolist())
    assert "T = 0.5, d_k = 16, no scaling" in ax.get_title()
    assert f"H = {h:.2f}" in ax.get_title()


def test_plots_and_pure_functions_work_without_ipywidgets(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # `import ipywidgets` now fails
    importlib.reload(plots)
    importlib.reload(widgets)
    assert widgets.explorer_weights()[0].shape == (8,)
    assert len(widgets.draw_attention_explorer().patches) == 8
    with pytest.raises(ImportError):
        widgets.attention_explorer()


# ---------------------------------------------------------------------------
# Chapter 1: the widget
# ---------------------------------------------------------------------------


def _controls(box):
    """Every control in the widget tree, by description."""
    ipywidgets = pytest.importorskip("ipywidgets")
    found, stack = {}, [box]
    while stack:
        widget = stack.pop()
        if isinstance(widget, ipywidgets.Box):
            stack.extend(widget.children)
        elif hasattr(widget, "description") and widget.description:
            found[widget.description] = widget
    return found


def test_attention_explorer_builds_and_redraws(monkeypatch):
    ipywidgets = pytest.importorskip("ipywidgets")
    drawn = []
    real_draw = widgets.draw_attention_explorer

    def spy(*args, **kwargs):
        drawn.append(args[:4])
        return real_draw(*args, **kwargs)

    monkeypatch.setattr(widgets, "draw_attention_explorer", spy)
    box = widgets.attention_explorer(temperature=1.0, d_k=64, scaling="sqrt")
    assert isinstance(box, ipywidgets.VBox)
    assert isinstance(box.children[-1], ipywidgets.Output)
    controls = _controls(box)
    assert isinstance(controls["temperature T"], ipywidgets.FloatSlider)
    assert isinstance(controls["d_k = 2^"], ipywidgets.IntSlider)
    assert isinstance(controls["scores"], ipywidgets.Dropdown)
    assert isinstance(controls["random example"], ipywidgets.IntSlider)
    assert controls["d_k = 2^"].value == 6
    assert drawn == [(1.0, 64, "sqrt", 0)]  # drawn once when built

    controls["temperature T"].value = 0.25
    controls["d_k = 2^"].value = 10
    controls["scores"].value = "none"
    controls["random example"].value = 3
    assert drawn[1:] == [(0.25, 64, "sqrt", 0), (0.25, 1024, "sqrt", 0),
                         (0.25, 1024, "none", 0), (0.25, 1024, "none", 3)]
    assert not plt.get_fignums() or all(  # every redraw made its own small figure
        len(plt.figure(n).axes) == 1 for n in plt.get_fignums()
    )


def test_attention_explorer_rejects_bad_arguments():
    pytest.importorskip("ipywidgets")
    with pytest.raises(ValueError):
        widgets.attention_explorer(d_k=48)
    with pytest.raises(ValueError):
        widgets.attention_explorer(scaling="sqrt(d_model)")
