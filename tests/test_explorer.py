"""The shared explorer helper (figures/explorer.py): controls, the live widget, the grid of
precomputed settings and the self-contained HTML figure; and every chapter's explorer
against the book's size rules (drawn at the column's width, text >= 8 pt, nothing cut off)."""

import base64
import importlib
import importlib.util
import io
import json
import re

import matplotlib.pyplot as plt
import pytest
from matplotlib.text import Text
from PIL import Image

from transformer_workbook import chapters
from transformer_workbook.figures import common
from transformer_workbook.figures.explorer import WIDGET_VIEW, Choice, Explorer, Slider


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _draw(ax, a, b, word="x"):
    """A toy frame whose pixels depend on every control: a bar of height a, text b."""
    ax.bar([0], [a], color="C0")
    ax.set_ylim(0, 5)
    ax.set_title(f"a = {a}, b = {b}, {word}")


def _toy(**kwargs):
    return Explorer(
        "toy_explorer",
        controls=(Slider("a", "size a", 1, 4, default=2, book=(1, 3)),
                  Choice("b", "kind b", {"p": "plain", "q": "fancy"}, default="q")),
        draw=_draw, figsize=(3.0, 2.0), **kwargs,
    )


def _bounded(draw=lambda ax, n, h: None, **kwargs):
    """Heads and a head index whose maximum follows them."""
    heads = Choice("n", "n", (1, 2, 4))
    head = Slider("h", "h", 0, 3, max_from=("n", lambda n: n - 1))
    return Explorer("b", (heads, head), draw, **kwargs)


def _data(html):
    found = re.search(r'<script type="application/json" class="tw-explorer-data">(.*?)</script>', html, re.S)
    return json.loads(found.group(1))


def _png(src):
    assert src.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))


# ---------------------------------------------------------------------------
# Declaring controls
# ---------------------------------------------------------------------------


def test_slider_kinds_values_and_checks():
    s = Slider("t", "T", 0.1, 3.0, step=0.05, default=1.0, book=(0.25, 1.0), fmt=".2f")
    assert not s.integer and s.start == 1.0 and s.text(0.25) == "0.25"
    assert Slider("n", "n", 0, 4).book_values() == [0, 1, 2, 3, 4]
    assert Slider("n", "n", 0, 4).integer and Slider("n", "n", 0, 4).start == 0
    assert Slider("d", "d", 0, 10, fmt=lambda v: f"2^{v}").text(3) == "2^3"
    for bad in (dict(default=5.0), dict(book=(0.12,)), dict(book=(-1.0,))):
        with pytest.raises(ValueError):
            Slider("t", "T", 0.1, 3.0, step=0.05, **bad)
    with pytest.raises(ValueError):
        Slider("t", "T", 3, 1)


def test_choice_options_and_checks():
    c = Choice("s", "scores", {"sqrt": "÷ √d_k", "none": "none"})
    assert c.start == "sqrt" and c.text("none") == "none" and c.book_values() == ["sqrt", "none"]
    assert Choice("n", "heads", (1, 2, 4), default=2).pairs == [(1, "1"), (2, "2"), (4, "4")]
    with pytest.raises(ValueError):
        Choice("s", "scores", {"sqrt": "x"}, default="d_model")
    with pytest.raises(ValueError):
        Choice("s", "scores", {})


def test_explorer_checks_its_declaration():
    with pytest.raises(ValueError, match="wider than the book's column"):
        _toy().__class__("wide", _toy().controls, _draw, figsize=(common.COLUMN_IN + 1, 2))
    with pytest.raises(ValueError, match="repeat"):
        Explorer("dup", (Slider("a", "a", 0, 1), Slider("a", "b", 0, 1)), _draw)
    with pytest.raises(ValueError, match="earlier control"):
        Explorer("late", (Slider("h", "h", 0, 3, max_from=("n", lambda n: n)), Slider("n", "n", 0, 3)), _draw)
    with pytest.raises(ValueError, match="each control once"):
        _toy(rows=(("a",),))


def test_values_defaults_overrides_and_limits():
    toy = _toy()
    assert toy.values() == {"a": 2, "b": "q"}
    assert toy.values(a=4) == {"a": 4, "b": "q"}
    with pytest.raises(TypeError, match="unknown"):
        toy.values(c=1)
    with pytest.raises(ValueError):
        toy.values(a=5)
    bounded = _bounded()
    assert bounded.values(n=4, h=3) == {"n": 4, "h": 3}
    with pytest.raises(ValueError, match="at most 1"):
        bounded.values(n=2, h=3)


def test_grid_adds_the_start_and_skips_what_the_controls_cannot_reach():
    axes, settings = _toy().grid()
    assert axes == [[1, 2, 3], ["p", "q"]]  # the start a = 2 joins the book values (1, 3)
    assert len(settings) == 6
    bounded = _bounded()
    _, settings = bounded.grid()
    assert [(s["n"], s["h"]) for s in settings] == [(1, 0), (2, 0), (2, 1), (4, 0), (4, 1), (4, 2), (4, 3)]


# ---------------------------------------------------------------------------
# The HTML figure
# ---------------------------------------------------------------------------


def test_html_figure_is_self_contained_and_holds_every_setting():
    toy = _toy()
    html = toy.html()
    data = _data(html)
    axes, settings = toy.grid()
    assert 'data-explorer="toy_explorer"' in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "something loaded from outside"
    assert "<link" not in html and "import(" not in html
    # One frame per setting; the key is each control's index into its book values.
    assert len(data["frames"]) == len(settings)
    assert data["start"] == [1, 1]  # a = 2 (index 1 of [1, 2, 3]), b = "q"
    assert [c["texts"] for c in data["controls"]] == [["1", "2", "3"], ["plain", "fancy"]]
    # The starting frame is the <img> (shown without scripts), not repeated in the data.
    first = re.search(r'<img src="([^"]+)"', html).group(1)
    assert data["images"][data["frames"]["1,1"]] == ""
    images = [first if not src else src for src in data["images"]]
    assert len(set(images)) == len(settings)  # every setting looks different here
    for setting in settings:
        key = f"{axes[0].index(setting['a'])},{axes[1].index(setting['b'])}"
        src = images[data["frames"][key]]
        assert base64.b64decode(src.split(",", 1)[1]) == toy.render(**setting)
    image = _png(first)
    assert image.size == (300, 200)  # figsize at the book's resolution, not cropped
    assert image.mode == "P" and len(image.getcolors()) <= toy.colors  # a small palette
    assert _png(first).convert("RGB").tobytes() == Image.open(io.BytesIO(toy.render(a=2, b="q"))).convert(
        "RGB").tobytes()
    # Without scripts the controls stay hidden and the caption says what is shown.
    assert re.search(r'<div class="tw-explorer-controls" hidden', html)
    assert 'alt="toy_explorer: size a 2, kind b fancy"' in html


def test_html_figure_identical_frames_are_stored_once_and_bounds_are_precomputed():
    def draw(ax, n, h):
        ax.set_title(f"n = {n}")  # h does not change the picture

    bounded = _bounded(draw, figsize=(2.0, 1.0))
    data = _data(bounded.html(n=2))
    assert len(data["frames"]) == 7 and len(data["images"]) == 3  # one image per n
    assert data["controls"][1]["limit"] == {"by": 0, "max": [0, 1, 3]}
    assert re.search(r'data-control="1" min="0" max="1"', bounded.html(n=2))  # the start's bound


def test_html_is_deterministic():
    assert _toy().html() == _toy().html()


# ---------------------------------------------------------------------------
# The live widget and its display
# ---------------------------------------------------------------------------


def test_widget_rows_redraws_bounds_and_display_bundle(monkeypatch):
    ipywidgets = pytest.importorskip("ipywidgets")
    shown = []

    def show(*args, **kwargs):
        shown.append(plt.gcf().axes[0].get_title())
        plt.close("all")

    monkeypatch.setattr(plt, "show", show)
    toy = _toy(rows=(("b",), ("a",)))
    box = toy.widget(a=3)
    assert isinstance(box, ipywidgets.VBox) and isinstance(box.children[-1], ipywidgets.Output)
    (kind,), (size,) = (row.children for row in box.children[:-1])
    assert isinstance(kind, ipywidgets.Dropdown) and isinstance(size, ipywidgets.IntSlider)
    assert (size.description, size.value, size.min, size.max) == ("size a", 3, 1, 4)
    assert kind.value == "q" and kind.options[0] == ("plain", "p")
    assert shown == ["a = 3, b = q, x"]
    size.value = 1
    kind.value = "p"
    assert shown[1:] == ["a = 1, b = q, x", "a = 1, b = p, x"]
    assert toy.bind(word="y").widget() and shown[-1] == "a = 2, b = q, y"

    bundle = box.mimebundle()
    assert set(bundle) == {"text/plain", "text/html", WIDGET_VIEW}
    assert bundle[WIDGET_VIEW]["model_id"] == box.model_id
    assert bundle["text/html"] == toy.html(a=3)  # starts where the widget starts
    assert box.mimebundle()["text/html"] is bundle["text/html"]  # drawn once
    assert box._repr_mimebundle_() == bundle


def test_widget_bound_follows_its_control():
    pytest.importorskip("ipywidgets")
    bounded = _bounded()
    box = bounded.widget(n=4, h=3)
    n, h = box.children[0].children
    assert h.max == 3
    n.value = 2
    assert (h.max, h.value) == (1, 1)
    n.value = 4
    assert (h.max, h.value) == (3, 1)


def test_small_multiples_of_one_and_several_panels():
    fig = _toy().small_multiples(rows=("a", [1, 4]), cols=("b", ["p", "q"]), col_label="b = {}")
    assert [ax.get_title() for ax in fig.axes] == ["a = 1, b = p, x", "a = 1, b = q, x", "a = 4, b = p, x",
                                                   "a = 4, b = q, x"]
    assert fig.get_size_inches()[0] == pytest.approx(common.COLUMN_IN)
    assert {t.get_text() for t in fig.axes[0].texts} == {"b = p"}

    def draw(axes, a, b):
        for ax in axes:
            _draw(ax, a, b)

    two = Explorer("two", _toy().controls, draw, panels=2)
    fig = two.small_multiples(rows=("a", [1, 2, 3]), row_label="a = {}")
    assert len(fig.axes) == 6 and fig.axes[5].get_title() == "a = 3, b = q, x"
    with pytest.raises(ValueError):
        two.small_multiples(rows=("a", [1]), cols=("b", ["p"]))
    with pytest.raises(ValueError):
        _toy().small_multiples(rows=("a", [7]))


# ---------------------------------------------------------------------------
# Every chapter's explorers (from the table of chapters)
# ---------------------------------------------------------------------------

EXPLORERS = [(c, name) for c in chapters.available() for name in c.explorers]


def _declaration(chapter, name):
    module = importlib.import_module(chapter.figures_module)
    found = [v for v in vars(module).values() if isinstance(v, Explorer) and v.name == name]
    assert len(found) == 1, f"{chapter.figures_module} declares no Explorer named {name!r}"
    return found[0]


@pytest.mark.parametrize(("chapter", "name"), EXPLORERS, ids=[n for _, n in EXPLORERS])
def test_chapter_explorer_frames_fit_the_column_and_text_is_readable(chapter, name):
    explorer = _declaration(chapter, name)
    if importlib.util.find_spec("ipywidgets"):
        # As the chapter's function builds it: some explorers draw data it binds (a model).
        explorer = getattr(importlib.import_module(chapter.figures_module), name)()._tw_explorer[0]
    _, settings = explorer.grid()
    # Precomputing costs a full figure per setting, when the notebook runs: keep the grid small.
    assert len(settings) <= 60, f"{name}: {len(settings)} precomputed settings"
    assert explorer.figsize[0] * common.DPI <= common.COLUMN_PX
    step = max(1, len(settings) // 6)
    for setting in [explorer.values(), *settings[::step], settings[-1]]:
        fig = explorer.figure(**setting)
        assert common.overflow_px(fig) <= 1, f"{name} {setting}: cut off by {common.overflow_px(fig):.0f} px"
        sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
        assert min(sizes) >= 8, f"{name} {setting}: text of {min(sizes)} pt"
        plt.close(fig)


@pytest.mark.parametrize(("chapter", "name"), EXPLORERS, ids=[n for _, n in EXPLORERS])
def test_chapter_explorer_function_builds_its_declared_explorer(chapter, name):
    pytest.importorskip("ipywidgets")
    box = getattr(importlib.import_module(chapter.figures_module), name)()
    explorer, start = box._tw_explorer
    assert explorer.name == name and start == explorer.values(**start)
