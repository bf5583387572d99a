"""The one helper that builds every chapter's explorer.

A chapter declares its controls and a drawing function once::

    EXPLORER = Explorer(
        "attention_explorer",
        controls=(
            Slider("temperature", "temperature T", 0.1, 3.0, step=0.05, default=1.0,
                   book=(0.25, 0.5, 1.0, 2.0, 3.0), fmt=".2f"),
            Choice("scaling", "scores", {"sqrt": "÷ √d_k", "none": "no scaling"}, default="sqrt"),
        ),
        draw=draw_frame,  # draw_frame(ax, temperature, scaling) draws one setting
    )

and gets three things from it:

1. :meth:`Explorer.widget`: the live explorer for a running kernel, made only of
   core ipywidgets that exist in 7.7.1 (Colab) and 8 (``IntSlider``,
   ``FloatSlider``, ``Dropdown``, ``HBox``/``VBox``, ``interactive_output``); its
   callback draws with ``draw`` and calls ``plt.show()`` (with the inline
   backend, plots would otherwise stack up on Colab).
2. :meth:`Explorer.small_multiples`: a static grid of chosen settings.
3. :meth:`Explorer.html`: a self-contained interactive figure for pages without
   a kernel (the built book, GitHub, nbviewer, a notebook opened before it
   runs). Each setting of the controls' ``book`` values is drawn once, saved as
   a small PNG (quantized with Pillow) and embedded as a data URI; a few lines
   of inline JavaScript switch between them when a range input or a select
   moves. Nothing is loaded from anywhere; without JavaScript the figure of the
   starting setting is still shown.

The widget from (1) displays as *one* output holding both the widget view and
the HTML of (3): a frontend with a widget manager (JupyterLab, Notebook, Colab,
VS Code) shows the live widget; anything else shows the HTML. When a notebook
is stored, :func:`transformer_workbook.notebook_tools.execute_notebook` drops
the widget view (its state is stripped) and keeps the HTML.

ipywidgets is imported inside :meth:`Explorer.widget` only: drawing, the grid
and the HTML work without it.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import html as html_lib
import io
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .common import COLUMN_IN, DPI, small_multiples

__all__ = ["Choice", "Explorer", "Slider", "explorer_box_class"]

_WIDE = {"description_width": "initial"}


def _format(fmt: str | Callable[[Any], str], value: Any) -> str:
    return fmt(value) if callable(fmt) else format(value, fmt)


@dataclasses.dataclass(frozen=True)
class Slider:
    """A numeric control: ``min`` to ``max`` in steps of ``step``.

    Integers everywhere (``min``, ``max``, ``step``) give an ``IntSlider``,
    otherwise a ``FloatSlider``.

    Args:
        name: the keyword the drawing function receives.
        label: the text beside the slider.
        min, max, step: the live slider's range.
        default: the starting value (default: ``min``).
        book: the values precomputed for the page without a kernel (default:
            every value of the range, which suits short ranges only). The
            starting value is always added.
        fmt: how the value reads: a format spec (``".2f"``) or a function of the value.
        max_from: ``(other control, function)``: this slider's maximum follows the
            other control's value (e.g. the head index follows the number of heads).
    """

    name: str
    label: str
    min: float
    max: float
    step: float = 1
    default: float | None = None
    book: Sequence[float] | None = None
    fmt: str | Callable[[Any], str] = ""
    max_from: tuple[str, Callable[[Any], Any]] | None = None

    def __post_init__(self) -> None:
        if not self.min <= self.max or self.step <= 0:
            raise ValueError(f"{self.name}: need min <= max and step > 0")
        if self.default is not None:
            self.check(self.default)
        for value in self.book or ():
            self.check(value)

    @property
    def integer(self) -> bool:
        return all(isinstance(v, int) for v in (self.min, self.max, self.step))

    @property
    def start(self) -> Any:
        return self.min if self.default is None else self.default

    def check(self, value: Any) -> None:
        """Raise ValueError unless ``value`` is one of the slider's values."""
        k = (value - self.min) / self.step
        if not (self.min - 1e-9 <= value <= self.max + 1e-9 and abs(k - round(k)) < 1e-6):
            raise ValueError(
                f"{self.name} must be in [{self.min}, {self.max}] in steps of {self.step}, got {value!r}"
            )

    def book_values(self) -> list[Any]:
        if self.book is not None:
            return list(self.book)
        n = round((self.max - self.min) / self.step)
        return [self.min + i * self.step for i in range(n + 1)]

    def text(self, value: Any) -> str:
        return _format(self.fmt, value)

    def widget(self, w: Any, value: Any) -> Any:
        kwargs = dict(value=value, min=self.min, max=self.max, step=self.step, description=self.label,
                      continuous_update=False, style=_WIDE)
        if self.integer:
            return w.IntSlider(**kwargs)
        if isinstance(self.fmt, str) and self.fmt:
            kwargs["readout_format"] = self.fmt
        return w.FloatSlider(**kwargs)


@dataclasses.dataclass(frozen=True)
class Choice:
    """A control with a few named options (a drop-down list).

    Args:
        name: the keyword the drawing function receives.
        label: the text beside the list.
        options: ``{value: text}``, or a sequence of values (each shown as ``str(value)``).
        default: the starting value (default: the first option).
        book: the values precomputed for the page without a kernel (default: all).
    """

    name: str
    label: str
    options: Mapping[Any, str] | Sequence[Any]
    default: Any = None
    book: Sequence[Any] | None = None
    max_from = None

    def __post_init__(self) -> None:
        if not self.options:
            raise ValueError(f"{self.name}: no options")
        for value in ([self.default] if self.default is not None else []) + list(self.book or ()):
            self.check(value)

    @property
    def pairs(self) -> list[tuple[Any, str]]:
        if isinstance(self.options, Mapping):
            return list(self.options.items())
        return [(v, str(v)) for v in self.options]

    @property
    def start(self) -> Any:
        return self.pairs[0][0] if self.default is None else self.default

    def check(self, value: Any) -> None:
        values = [v for v, _ in self.pairs]
        if value not in values:
            raise ValueError(f"{self.name} must be one of {values}, got {value!r}")

    def book_values(self) -> list[Any]:
        return list(self.book) if self.book is not None else [v for v, _ in self.pairs]

    def text(self, value: Any) -> str:
        return dict(self.pairs)[value]

    def widget(self, w: Any, value: Any) -> Any:
        return w.Dropdown(options=[(text, v) for v, text in self.pairs], value=value,
                          description=self.label, style=_WIDE)


Control = Slider | Choice


@dataclasses.dataclass(frozen=True)
class Explorer:
    """A figure whose settings a reader changes with sliders and drop-down lists.

    Args:
        name: the explorer's name (the chapter module's function that builds it,
            e.g. ``"attention_explorer"``); the HTML figure carries it as ``data-explorer``.
        controls: its :class:`Slider` and :class:`Choice` controls, in order.
        draw: ``draw(ax, **values)`` draws one setting (``values`` has one entry
            per control); with ``panels > 1``, ``ax`` is a tuple of that many Axes
            in a row.
        figsize: (width, height) in inches of the figure of one setting; at most
            :data:`~transformer_workbook.figures.common.COLUMN_IN` wide, so the
            book shows it unscaled.
        panels: Axes per setting, side by side.
        rows: which controls share a line, e.g. ``(("temperature", "d_k"), ("seed",))``
            (default: two per line, in order).
        colors: palette size of the precomputed frames (fewer: smaller files).
    """

    name: str
    controls: Sequence[Control]
    draw: Callable[..., Any]
    figsize: tuple[float, float] = (COLUMN_IN, 2.8)
    panels: int = 1
    rows: Sequence[Sequence[str]] | None = None
    colors: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "controls", tuple(self.controls))
        names = [c.name for c in self.controls]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: control names repeat: {names}")
        if self.figsize[0] > COLUMN_IN + 1e-9:
            raise ValueError(f"{self.name}: figsize {self.figsize} is wider than the book's column "
                             f"({COLUMN_IN} in): it would be shown scaled down")
        for c in self.controls:
            if c.max_from is not None and c.max_from[0] not in names[: names.index(c.name)]:
                raise ValueError(f"{self.name}: {c.name}'s max_from must name an earlier control")
        if self.rows is not None:
            listed = [n for row in self.rows for n in row]
            if sorted(listed) != sorted(names):
                raise ValueError(f"{self.name}: rows {self.rows} must list each control once")

    # -- values ---------------------------------------------------------------

    def values(self, **overrides: Any) -> dict[str, Any]:
        """Every control's value: its start, or the override; checked."""
        unknown = set(overrides) - {c.name for c in self.controls}
        if unknown:
            raise TypeError(f"{self.name}: unknown control(s) {sorted(unknown)}")
        values = {c.name: overrides.get(c.name, c.start) for c in self.controls}
        for c in self.controls:
            c.check(values[c.name])
            if c.max_from is not None:
                other, limit = c.max_from
                if values[c.name] > limit(values[other]):
                    raise ValueError(f"{c.name} must be at most {limit(values[other])} when "
                                     f"{other} is {values[other]!r}, got {values[c.name]!r}")
        return values

    def bind(self, **fixed: Any) -> Explorer:
        """The same explorer with extra keyword arguments always passed to ``draw``."""
        return dataclasses.replace(self, draw=functools.partial(self.draw, **fixed))

    # -- drawing --------------------------------------------------------------

    def _draw_into(self, fig: Figure, **values: Any) -> None:
        axes = fig.subplots(1, self.panels, squeeze=False)[0]
        self.draw(axes[0] if self.panels == 1 else tuple(axes), **values)

    def figure(self, **values: Any) -> Figure:
        """One setting as a pyplot figure (what the live widget shows)."""
        fig = plt.figure(figsize=self.figsize, layout="constrained")
        self._draw_into(fig, **self.values(**values))
        return fig

    def small_multiples(
        self,
        rows: tuple[str, Sequence[Any]],
        cols: tuple[str, Sequence[Any]] | None = None,
        *,
        row_label: Callable[[Any], str] | str | None = None,
        col_label: Callable[[Any], str] | str | None = None,
        panel_height: float | None = None,
        suptitle: str | None = None,
        **values: Any,
    ) -> Figure:
        """A static grid: one row per value of ``rows``, one column per value of ``cols``.

        ``rows`` and ``cols`` are ``(control name, values)``; the other controls
        keep ``values`` (or their start). An explorer with several panels has
        one row of panels per row value and takes no ``cols``. The figure is as
        wide as the book's column.
        """
        row_name, row_values = rows
        height = panel_height or self.figsize[1] * 0.8
        if self.panels > 1:
            if cols is not None:
                raise ValueError(f"{self.name} has {self.panels} panels per setting: pass rows only")
            settings = [self.values(**{**values, row_name: r}) for r in row_values]
            fig, axes = plt.subplots(len(settings), self.panels, squeeze=False, layout="constrained",
                                     figsize=(self.figsize[0], height * len(settings) + 0.5))
            for axes_row, setting in zip(axes, settings, strict=True):
                self.draw(tuple(axes_row), **setting)
            for axes_row, r in zip(axes, row_values, strict=True):
                label = row_label(r) if callable(row_label) else (row_label or "{}").format(r)
                axes_row[0].annotate(label, xy=(0.0, 0.5), xycoords=axes_row[0].yaxis.label,
                                     xytext=(-3, 0), textcoords="offset points", ha="right",
                                     va="center", rotation=90, fontsize=10, fontweight="bold")
            if suptitle:
                fig.suptitle(suptitle)
            return fig
        col_name, col_values = cols if cols is not None else (None, [None])
        for r in row_values:  # check every setting before drawing any
            for c in col_values:
                self.values(**{**values, row_name: r, **({col_name: c} if col_name else {})})

        def panel(ax, r, c):
            setting = {**values, row_name: r, **({col_name: c} if col_name else {})}
            self.draw(ax, **self.values(**setting))

        return small_multiples(panel, row_values, col_values, row_label=row_label,
                               col_label=col_label if cols is not None else None,
                               panel_size=(COLUMN_IN / len(col_values), height), suptitle=suptitle,
                               sharey=False)

    # -- the live widget ------------------------------------------------------

    def widget(self, **values: Any) -> Any:
        """The live explorer, starting at ``values``; display it as a cell's last expression.

        Returns an ``ExplorerBox`` (an ipywidgets ``VBox``, see :func:`explorer_box_class`): one line per
        entry of ``rows`` with its controls, then the ``Output`` the callback
        draws into. Displayed, it also carries :meth:`html` for frontends
        without a kernel.
        """
        import ipywidgets as w  # lazily: drawing and the HTML figure do not need it

        start = self.values(**values)
        controls = {c.name: c.widget(w, start[c.name]) for c in self.controls}
        for c in self.controls:
            if c.max_from is not None:
                other, limit = c.max_from
                controls[c.name].max = limit(start[other])

                def follow(change, target=controls[c.name], limit=limit):
                    top = limit(change["new"])
                    target.value = min(target.value, top)  # lower the value first, then the bound
                    target.max = top

                controls[other].observe(follow, names="value")

        def show(**values: Any) -> None:
            fig = plt.figure(figsize=self.figsize, layout="constrained")
            self._draw_into(fig, **values)
            plt.show()

        out = w.interactive_output(show, controls)
        rows = self.rows or [[c.name for c in self.controls][i : i + 2]
                             for i in range(0, len(self.controls), 2)]
        box = explorer_box_class()([w.HBox([controls[n] for n in row]) for row in rows] + [out])
        box._tw_explorer = (self, start)
        return box

    # -- the figure for pages without a kernel -------------------------------

    def grid(self, **values: Any) -> tuple[list[list[Any]], list[dict[str, Any]]]:
        """The precomputed settings: each control's book values (its start included),
        and every combination of them the controls allow, in order."""
        start = self.values(**values)
        axes: list[list[Any]] = []
        for c in self.controls:
            book = c.book_values()
            if start[c.name] not in book:
                book = sorted([*book, start[c.name]]) if isinstance(c, Slider) else [*book, start[c.name]]
            axes.append(book)
        settings = []
        for combo in itertools.product(*axes):
            setting = dict(zip((c.name for c in self.controls), combo, strict=True))
            try:
                self.values(**setting)
            except ValueError:
                continue  # e.g. head 3 with 2 heads: the slider cannot get there
            settings.append(setting)
        return axes, settings

    def render(self, **values: Any) -> bytes:
        """One setting as a PNG: ``figsize`` at the book's resolution, ``colors`` colours."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from PIL import Image

        fig = Figure(figsize=self.figsize, dpi=DPI, layout="constrained", facecolor="white")
        canvas = FigureCanvasAgg(fig)
        self._draw_into(fig, **self.values(**values))
        canvas.draw()
        image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB")
        image = image.quantize(colors=self.colors, method=Image.Quantize.MEDIANCUT,
                               dither=Image.Dither.NONE)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        return buffer.getvalue()

    def html(self, **values: Any) -> str:
        """The interactive figure for pages without a kernel: self-contained HTML.

        Draws every setting of :meth:`grid` (so it takes a moment: each frame is
        a full matplotlib figure). The starting setting's image is an ordinary
        ``<img>``, shown even where scripts are removed; the controls appear
        when the inline script runs.
        """
        start = self.values(**values)
        axes, settings = self.grid(**values)
        names = [c.name for c in self.controls]
        images: list[str] = []
        seen: dict[bytes, int] = {}
        frames: dict[str, int] = {}
        for setting in settings:
            png = self.render(**setting)
            if png not in seen:
                seen[png] = len(images)
                images.append("data:image/png;base64," + base64.b64encode(png).decode("ascii"))
            key = ",".join(str(axes[i].index(setting[n])) for i, n in enumerate(names))
            frames[key] = seen[png]
        start_index = [axes[i].index(start[n]) for i, n in enumerate(names)]
        first = frames[",".join(map(str, start_index))]
        first_src, images[first] = images[first], ""  # the <img> holds it; the script copies it back
        spec = []
        for i, c in enumerate(self.controls):
            entry: dict[str, Any] = {"name": c.name, "texts": [c.text(v) for v in axes[i]]}
            if c.max_from is not None:
                other, limit = c.max_from
                j = names.index(other)
                tops = [limit(v) for v in axes[j]]  # the highest allowed value, per value of `other`
                entry["limit"] = {"by": j, "max": [max(k for k, v in enumerate(axes[i]) if v <= top)
                                                   for top in tops]}
            spec.append(entry)
        data = {"controls": spec, "start": start_index, "frames": frames, "images": images}
        payload = json.dumps(data, separators=(",", ":"), ensure_ascii=True).replace("</", "<\\/")
        digest = hashlib.sha1(payload.encode() + first_src.encode()).hexdigest()[:12]
        uid = f"tw-{self.name}-{digest}"
        esc = html_lib.escape

        def caption_of(setting):
            return ", ".join(f"{c.label} {c.text(setting[c.name])}" for c in self.controls)

        inputs = []
        for i, c in enumerate(self.controls):
            book = axes[i]
            if len(book) == 1:  # nothing to choose here: say the value
                inputs.append(f'<span>{esc(c.label)} <b>{esc(c.text(book[0]))}</b></span>')
            elif isinstance(c, Choice):
                options = "".join(f'<option value="{k}"{" selected" if k == start_index[i] else ""}>'
                                  f"{esc(c.text(v))}</option>" for k, v in enumerate(book))
                inputs.append(f'<label>{esc(c.label)} <select data-control="{i}">{options}</select></label>')
            else:
                top = len(book) - 1
                if c.max_from is not None:
                    top = spec[i]["limit"]["max"][start_index[spec[i]["limit"]["by"]]]
                inputs.append(
                    f'<label>{esc(c.label)} <input type="range" data-control="{i}" min="0" max="{top}" '
                    f'step="1" value="{start_index[i]}" style="vertical-align:middle;width:8em"> '
                    f'<output data-readout="{i}">{esc(c.text(book[start_index[i]]))}</output></label>'
                )
        width, height = round(self.figsize[0] * DPI), round(self.figsize[1] * DPI)
        n_settings = len(settings)
        return (
            f'<div class="tw-explorer" id="{uid}" data-explorer="{esc(self.name)}" '
            f'style="max-width:{width}px;margin:0.5em 0">'
            f'<div class="tw-explorer-controls" hidden style="flex-wrap:wrap;'
            f'gap:0.3em 1.5em;font-size:14px;line-height:1.8;margin-bottom:0.3em">{"".join(inputs)}</div>'
            f'<img src="{first_src}" width="{width}" height="{height}" '
            f'alt="{esc(self.name)}: {esc(caption_of(start))}" style="max-width:100%;height:auto">'
            f'<div class="tw-explorer-note" style="font-size:13px;color:#555">'
            f"{n_settings} precomputed settings; in a running notebook the explorer draws any value."
            f"</div>"
            f'<script type="application/json" class="tw-explorer-data">{payload}</script>'
            f"<script>{_SCRIPT.replace('UID', uid)}</script>"
            f"</div>"
        )


# Runs where the page allows scripts (the book, nbviewer, a trusted notebook).
# It finds its figure through document.currentScript, or by id where scripts are
# run through eval (the classic notebook, Colab).
_SCRIPT = """(function () {
var me = document.currentScript, root = me && me.closest ? me.closest(".tw-explorer") : null;
root = root || document.getElementById("UID");
if (!root || root.dataset.ready) return;
root.dataset.ready = "1";
var data = JSON.parse(root.querySelector("script.tw-explorer-data").textContent);
var img = root.querySelector("img"), state = data.start.slice(), name = root.dataset.explorer;
data.images[data.frames[state.join(",")]] = img.getAttribute("src");
var inputs = root.querySelectorAll("[data-control]");
function update() {
  data.controls.forEach(function (c, i) {
    if (!c.limit) return;
    var input = root.querySelector('[data-control="' + i + '"]'), top = c.limit.max[state[c.limit.by]];
    if (state[i] > top) state[i] = top;
    if (input) { input.max = top; input.value = state[i]; }
  });
  var frame = data.frames[state.join(",")];
  if (frame === undefined) return;
  img.src = data.images[frame];
  var parts = [];
  data.controls.forEach(function (c, i) {
    var out = root.querySelector('[data-readout="' + i + '"]');
    if (out) out.textContent = c.texts[state[i]];
    parts.push(c.texts[state[i]]);
  });
  img.alt = name + ": " + parts.join(", ");
}
for (var k = 0; k < inputs.length; k++) {
  (function (input) {
    var i = Number(input.getAttribute("data-control"));
    var on = function () { state[i] = Number(input.value); update(); };
    input.addEventListener("input", on);
    input.addEventListener("change", on);
  })(inputs[k]);
}
var controls = root.querySelector(".tw-explorer-controls");
controls.hidden = false;
controls.style.display = "flex";
})();"""


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@functools.lru_cache(maxsize=1)
def explorer_box_class() -> type:
    """The class of :meth:`Explorer.widget`'s result: ipywidgets' VBox, displayed with its HTML.

    Built on first use, so that importing this module does not import ipywidgets.
    """
    import ipywidgets as w

    class ExplorerBox(w.VBox):
        """An explorer's VBox; its one display output holds three representations:
        the widget view (live, for frontends with a widget manager), ``text/html``
        (:meth:`Explorer.html`, for the others) and ``text/plain``."""

        def _repr_mimebundle_(self, **kwargs):  # ipywidgets 8
            return self.mimebundle()

        def _ipython_display_(self, **kwargs):  # what IPython calls first; ipywidgets 7.7.1 (Colab)
            from IPython.display import display

            display(self.mimebundle(), raw=True)
            handle = getattr(self, "_handle_displayed", None)
            if handle is not None:  # ipywidgets 7: on_displayed callbacks
                handle(**kwargs)

        def mimebundle(self) -> dict[str, Any]:
            """The display data; the HTML figure is drawn on the first call only."""
            explorer, start = self._tw_explorer
            if getattr(self, "_tw_html", None) is None:
                self._tw_html = explorer.html(**start)
            labels = ", ".join(c.label for c in explorer.controls)
            return {
                "text/plain": f"{explorer.name} ({labels}): run the notebook to move the sliders",
                "text/html": self._tw_html,
                WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": self.model_id},
            }

    return ExplorerBox

