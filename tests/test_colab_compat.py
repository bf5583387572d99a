"""The widgets work on Colab's ipywidgets 7.7.1, not only on the 8.x in .venv.

`make test` installs ipywidgets 7.7.1 (with --no-deps) into a side folder of
.venv (see the Makefile); this test runs every explorer in a subprocess that
puts that folder first on sys.path, moves each of its controls, and counts the
redraws. The rest of the suite uses .venv's ipywidgets 8.
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
    import inspect

    import ipywidgets
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from transformer_workbook import widgets

    assert ipywidgets.__version__ == "7.7.1", ipywidgets.__version__
    redraws = []
    plt.show = lambda *a, **k: (redraws.append(1), plt.close("all"))

    def controls(widget):
        for child in getattr(widget, "children", ()):
            if isinstance(child, (ipywidgets.IntSlider, ipywidgets.FloatSlider, ipywidgets.Dropdown)):
                yield child
            yield from controls(child)

    names = [n for n, f in inspect.getmembers(widgets, inspect.isfunction)
             if n.endswith("_explorer") and not n.startswith("draw_") and f.__module__ == widgets.__name__]
    assert names, "no explorers found"
    for name in names:
        box = getattr(widgets, name)()
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
        print(name, "ok:", len(found), "controls")
    """
)


def test_explorers_run_on_ipywidgets_7_7_1():
    if not COMPAT.exists():
        if os.environ.get("TW_REQUIRE_COMPAT"):
            pytest.fail(f"{COMPAT} is missing: run `make install` (it installs ipywidgets 7.7.1 there)")
        pytest.skip("ipywidgets 7.7.1 side folder not installed (make test installs it)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(COMPAT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "attention_explorer ok" in proc.stdout
