"""Chapter 7's figures: FLOP terms, PyTorch's count, memory terms, log-log plots, the cost explorer."""

import matplotlib.pyplot as plt
import pytest

from transformer_workbook.complexity import attention_flops, encoder_layer_flops, feed_forward_flops


@pytest.fixture
def agg():
    yield plt
    plt.close("all")


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


@pytest.mark.parametrize(("L", "d", "d_ff"), [(1, 8, 32), (100, 64, 256), (4096, 512, 2048), (7, 12, 5)])
def test_flop_terms_add_up_to_the_layer(L, d, d_ff):
    from transformer_workbook.figures.complexity import flop_terms

    terms = flop_terms(L, d, d_ff)
    assert terms["attention L^2"] == 4 * L * L * d
    assert terms["projections"] == 8 * L * d * d
    assert terms["feed-forward"] == feed_forward_flops(L, d, d_ff) == 4 * L * d * d_ff
    assert sum(terms.values()) == encoder_layer_flops(L, d, d_ff)
    assert terms["attention L^2"] + terms["projections"] == attention_flops(L, d)
    assert flop_terms(L, d) == flop_terms(L, d, 4 * d)  # d_ff defaults to 4 d_model


@pytest.mark.parametrize(("L", "d", "h", "d_ff"), [(3, 8, 2, 16), (64, 64, 4, 256), (5000, 256, 4, 1024)])
def test_pytorch_counts_exactly_the_formula(L, d, h, d_ff):
    from transformer_workbook.figures.complexity import counted_layer_flops

    # On the meta device: exact at any size, no memory.
    assert counted_layer_flops(L, d, h, d_ff) == encoder_layer_flops(L, d, d_ff)


def test_memory_terms_and_measured_memory():
    from transformer_workbook.figures.complexity import measured_memory, memory_terms

    m = memory_terms(1024, 256, 4, batch=2)
    assert m["weights (B, H, L, L)"] == 2 * 4 * 1024 * 1024 * 4
    assert m["fused: q, k, v, out"] == 4 * 2 * 1024 * 256 * 4
    assert memory_terms(10, 8, 1, bytes_per=2)["weights (B, H, L, L)"] == 200
    packed = measured_memory([1, 2], [10, 40], [3, 6], d_model=64, n_heads=1)
    assert packed == {"d_model": 64, "n_heads": 1, "lengths": [1, 2], "naive": [10, 40], "fused": [3, 6]}
    with pytest.raises(ValueError):
        measured_memory([1, 2], [10], [3, 6], d_model=64, n_heads=1)


def test_draw_loglog_fits_the_slopes(agg):
    from transformer_workbook.figures.complexity import draw_loglog

    xs = [128, 256, 512, 1024]
    ax = draw_loglog(xs, {"square": [x * x for x in xs], "linear": [3 * x for x in xs],
                          "overhead then square": [1e6, 4 * 256**2, 4 * 512**2, 4 * 1024**2]},
                     fit_from=1, reference_slopes=(1, 2), title="t", ylabel="y")
    assert ax.slopes["square"] == pytest.approx(2)
    assert ax.slopes["linear"] == pytest.approx(1)
    assert ax.slopes["overhead then square"] == pytest.approx(2)  # the first point is left out
    assert "slope 2.00" in ax.get_legend().get_texts()[0].get_text()
    assert len(ax.lines) == 3 + 2  # three series, two guides
    assert ax.get_title() == "t" and ax.get_xscale() == "log" and ax.get_yscale() == "log"


def test_draw_cost_explorer_panels(agg):
    from transformer_workbook.figures.complexity import draw_cost_explorer, measured_memory

    ax_f, ax_m = draw_cost_explorer(11, 256)
    assert "d_model = 256" in ax_f.get_title() and "L = 2048" in ax_f.get_title()
    assert "57%" in ax_f.get_title()  # 4 L^2 d / (4 L^2 d + 8 L d^2 + 16 L d^2) at L = 8 d
    assert "4 head(s)" in ax_m.get_title() and "64 MiB" in ax_m.get_title()
    measured = measured_memory([128, 256], [1 << 20, 4 << 20], [1 << 18, 1 << 19], d_model=256, n_heads=4)
    _, ax_m = draw_cost_explorer(9, 256, measured)
    labels = [t.get_text() for t in ax_m.get_legend().get_texts()]
    assert "measured peak, explicit" in labels and "measured peak, fused" in labels
    _, ax_m = draw_cost_explorer(9, 1024, measured)  # measured at another d_model: not drawn
    assert "measured peak, explicit" not in [t.get_text() for t in ax_m.get_legend().get_texts()]
    assert "measured at d_model = 256" in ax_m.get_title()


def test_cost_explorer_builds_and_redraws(agg, monkeypatch):
    ipywidgets = pytest.importorskip("ipywidgets")
    from transformer_workbook.figures import complexity as ch7

    shown = []
    monkeypatch.setattr(agg, "show", lambda *a, **k: (shown.append(1), agg.close("all")))
    box = ch7.cost_explorer(log2_length=9, d_model=256)
    controls = [w for w in _walk(box) if isinstance(w, ipywidgets.ValueWidget)]
    assert len(controls) == 2
    slider = next(w for w in controls if isinstance(w, ipywidgets.IntSlider))
    assert (slider.min, slider.max, slider.value) == (5, 14, 9)
    before = len(shown)
    slider.value = 12
    assert len(shown) > before
    with pytest.raises(ValueError):
        ch7.cost_explorer(d_model=100)
