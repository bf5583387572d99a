"""The explorers work on Colab's ipywidgets 7.7.1, not only on the 8.x in .venv.

`make test` installs ipywidgets 7.7.1 (with --no-deps) into a side folder of
.venv (see the Makefile); this test runs every explorer of every available
chapter (from the table of chapters) in a subprocess that puts that folder
first on sys.path, moves each of its controls, counts the redraws, and checks
the display bundle (widget view + HTML figure) that 7.7.1 sends. The rest of
the suite uses .venv's ipywidgets 8.
"""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
COMPAT = ROOT / ".venv" / "compat-ipywidgets7"

SCRIPT = textwrap.dedent(
    """
    import importlib

    import ipywidgets
    import matplotlib.pyplot as plt
    from IPython.core.interactiveshell import InteractiveShell

    from transformer_workbook import chapters
    from transformer_workbook.figures import explorer

    assert ipywidgets.__version__ == "7.7.1", ipywidgets.__version__
    redraws = []
    plt.show = lambda *a, **k: (redraws.append(1), plt.close("all"))

    def controls(widget):
        for child in getattr(widget, "children", ()):
            if isinstance(child, (ipywidgets.IntSlider, ipywidgets.FloatSlider, ipywidgets.Dropdown)):
                yield child
            yield from controls(child)

    # What IPython sends when a cell's last expression is the explorer: capture it.
    shell = InteractiveShell.instance()
    sent = []
    shell.display_pub.publish = lambda data, metadata=None, **kw: sent.append(data)
    html_of = {}
    explorer.Explorer.html = lambda self, **values: html_of.setdefault(self.name, f"<div>{self.name}</div>")

    names = [(c.figures_module, name) for c in chapters.available() for name in c.explorers]
    assert names, "no explorers in the table of chapters"
    for module, name in names:
        box = getattr(importlib.import_module(module), name)()
        assert isinstance(box, ipywidgets.VBox), name
        found = list(controls(box))
        assert found, f"{name}: no controls"
        for c in found:
            before = len(redraws)
            if isinstance(c, ipywidgets.Dropdown):
                values = [o[1] if isinstance(o, tuple) else o for o in c.options]
                c.value = values[-1] if c.value != values[-1] else values[0]
            else:
                c.value = c.max if c.value != c.max else c.min
            assert len(redraws) > before, f"{name}: moving {c.description!r} did not redraw"
        del sent[:]
        shell.display_formatter.format(box)  # IPython 7 and 8 call _ipython_display_ first
        assert len(sent) == 1, f"{name}: {len(sent)} outputs"
        view = sent[0]["application/vnd.jupyter.widget-view+json"]
        assert view["model_id"] == box.model_id and view["version_major"] == 2, view
        assert sent[0]["text/html"] == html_of[name], name
        print(name, "ok:", len(found), "controls")
    """
)


def test_explorers_run_on_ipywidgets_7_7_1():
    if not COMPAT.exists():
        if os.environ.get("TW_REQUIRE_COMPAT"):
            pytest.fail(f"{COMPAT} is missing: run `make install` (it installs ipywidgets 7.7.1 there)")
        pytest.skip("ipywidgets 7.7.1 side folder not installed (make test installs it)")
    env = dict(os.environ, MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(COMPAT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from transformer_workbook import chapters

    for name in (n for c in chapters.available() for n in c.explorers):
        assert f"{name} ok" in proc.stdout, proc.stdout
