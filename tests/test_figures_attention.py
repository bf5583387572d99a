"""Chapter 1's figures: the attention explorer, without a display (conftest.py: Agg)."""

import itertools
import math
import subprocess
import sys
import textwrap

import matplotlib.pyplot as plt
import pytest
import torch

from transformer_workbook.attention import attention_entropy
from transformer_workbook.figures import attention as ch1


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------------------
# Chapter 1: the explorer's pure computation
# ---------------------------------------------------------------------------


def test_explorer_weights_is_a_deterministic_distribution():
    w, h = ch1.explorer_weights(temperature=1.0, d_k=16, scaling="sqrt", seed=3, n_keys=6)
    assert w.shape == (6,)
    torch.testing.assert_close(w.sum(), torch.tensor(1.0, dtype=w.dtype))
    assert (w > 0).all()
    assert 0.0 <= h <= math.log(6) + 1e-9
    assert h == pytest.approx(float(attention_entropy(w)))
    w2, h2 = ch1.explorer_weights(temperature=1.0, d_k=16, scaling="sqrt", seed=3, n_keys=6)
    torch.testing.assert_close(w, w2)
    assert h == h2
    w3, _ = ch1.explorer_weights(temperature=1.0, d_k=16, scaling="sqrt", seed=4, n_keys=6)
    assert not torch.allclose(w, w3), "another seed is another example"


@pytest.mark.parametrize("d_k", [1, 8, 64, 1024])
@pytest.mark.parametrize("scaling", ["sqrt", "none", "d_k"])
def test_entropy_decreases_as_temperature_decreases(d_k, scaling):
    temperatures = [4.0, 2.0, 1.0, 0.5, 0.25, 0.1]
    entropies = [ch1.explorer_weights(t, d_k, scaling, seed=0)[1] for t in temperatures]
    assert all(a >= b for a, b in itertools.pairwise(entropies)), entropies
    assert entropies[0] > entropies[-1]


def test_temperature_extremes_are_uniform_and_one_hot():
    n = 8
    w_hot, h_hot = ch1.explorer_weights(0.1, 1024, "none", seed=0, n_keys=n)
    assert w_hot.max() > 0.999 and h_hot < 1e-3
    w_flat, h_flat = ch1.explorer_weights(1e6, 4, "sqrt", seed=0, n_keys=n)
    torch.testing.assert_close(w_flat, torch.full((n,), 1 / n, dtype=w_flat.dtype), atol=1e-4, rtol=0)
    assert h_flat == pytest.approx(math.log(n), abs=1e-6)


def test_scalings_are_temperatures():
    # No scaling at temperature T equals the paper's scaling at T / sqrt(d_k), and
    # dividing by d_k equals the paper's scaling at T * sqrt(d_k): same query, same keys.
    d_k = 64
    none, _ = ch1.explorer_weights(1.0, d_k, "none", seed=2)
    torch.testing.assert_close(none, ch1.explorer_weights(1 / math.sqrt(d_k), d_k, "sqrt", seed=2)[0])
    by_dk, _ = ch1.explorer_weights(1.0, d_k, "d_k", seed=2)
    torch.testing.assert_close(by_dk, ch1.explorer_weights(math.sqrt(d_k), d_k, "sqrt", seed=2)[0])


def test_unscaled_attention_saturates_with_d_k_on_average():
    def mean_entropy(d_k, scaling):
        return sum(ch1.explorer_weights(1.0, d_k, scaling, seed=s)[1] for s in range(10)) / 10

    assert mean_entropy(4, "none") > mean_entropy(64, "none") > mean_entropy(1024, "none")
    assert abs(mean_entropy(4, "sqrt") - mean_entropy(1024, "sqrt")) < 0.4


@pytest.mark.parametrize(
    "kwargs", [{"temperature": 0.0}, {"temperature": -1.0}, {"d_k": 0}, {"scaling": "sqrt(d_model)"}]
)
def test_explorer_weights_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ch1.explorer_weights(**kwargs)


# ---------------------------------------------------------------------------
# Chapter 1: drawing
# ---------------------------------------------------------------------------


def test_draw_attention_explorer_draws_the_computed_weights():
    ax = ch1.draw_attention_explorer(0.5, 16, "none", seed=1, n_keys=5)
    w, h = ch1.explorer_weights(0.5, 16, "none", seed=1, n_keys=5)
    assert [p.get_height() for p in ax.patches] == pytest.approx(w.tolist())
    assert "T = 0.5, d_k = 16, no scaling" in ax.get_title()
    assert f"H = {h:.2f}" in ax.get_title()


def test_figures_and_pure_functions_work_without_ipywidgets():
    # In a fresh interpreter where `import ipywidgets` fails: everything but the live widget works,
    # the precomputed HTML figure included.
    script = textwrap.dedent("""
        import sys
        sys.modules["ipywidgets"] = None
        import matplotlib
        matplotlib.use("Agg")
        from transformer_workbook.figures import attention as ch1, common, explorer
        assert ch1.explorer_weights()[0].shape == (8,)
        assert len(ch1.draw_attention_explorer().patches) == 8
        assert ch1.ATTENTION_EXPLORER.render(temperature=0.5).startswith(bytes([137]) + b"PNG")
        try:
            ch1.attention_explorer()
        except ImportError:
            print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr


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
    real_draw = ch1.draw_attention_explorer

    def spy(*args, **kwargs):
        drawn.append(args[:4])
        return real_draw(*args, **kwargs)

    monkeypatch.setattr(ch1, "draw_attention_explorer", spy)
    box = ch1.attention_explorer(temperature=1.0, d_k=64, scaling="sqrt")
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
        ch1.attention_explorer(d_k=48)
    with pytest.raises(ValueError):
        ch1.attention_explorer(scaling="sqrt(d_model)")
