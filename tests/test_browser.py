"""The slider explorers in a real browser: JupyterLab 4 in headless Chromium.

The other widget tests call the callbacks from Python. This one does what a
learner does: opens a notebook in JupyterLab, runs the cells, drags each
explorer's first slider with the mouse, and checks that the chart redraws
(the output image changes), and that JupyterLab shows the live widget, not the
HTML figure the same output carries for pages without a kernel. The explorers
are every available chapter's, from the table of chapters. It needs Debian's
Chromium (`/usr/bin/chromium`): `.ci/run` installs it; on a machine without it
the test is skipped, except in CI (CI=true), where a missing browser is a failure.
(tests/test_book_explorers.py moves the same explorers in the built book.)
"""

import os
import shutil
import socket
import subprocess
import sys
import time

import nbformat
import pytest

from transformer_workbook import chapters

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EXPLORERS = [(c.figures_module, name) for c in chapters.available() for name in c.explorers]


def _browser_or_skip():
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail("Chromium is missing in CI: .ci/run installs Debian's chromium package")
    pytest.skip("no Chromium on this machine (apt-get install chromium to run the browser test)")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 with a notebook showing every explorer."""
    _browser_or_skip()
    root = tmp_path_factory.mktemp("lab")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(f"from {module} import {name}\n{name}()")
        for module, name in EXPLORERS
    ]
    nbformat.write(nb, root / "explorers.ipynb")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, HOME=str(root), JUPYTER_CONFIG_DIR=str(root / ".jupyter"),
               JUPYTER_RUNTIME_DIR=str(root / ".runtime"))
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=", "--ServerApp.password=",
           f"--ServerApp.root_dir={root}", "--LabApp.news_url=None"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if server.poll() is not None:
                    break
                time.sleep(0.2)
        else:
            pytest.fail("JupyterLab did not start within 60 s")
        if server.poll() is not None:
            pytest.fail("JupyterLab exited: " + (root / "server.log").read_text()[-2000:])
        yield f"http://127.0.0.1:{port}/lab/tree/explorers.ipynb"
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_dragging_a_slider_redraws_every_explorer(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"],
        )
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(lab)
            page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
            page.wait_for_selector("text=Python 3 (ipykernel) | Idle", timeout=60_000)
            page.locator(".jp-CodeCell .jp-InputArea-editor").first.click()
            for _ in EXPLORERS:
                page.keyboard.press("Shift+Enter")
            # Wait until every cell has run (each draws its precomputed figure first, which
            # takes a while): a drag while the kernel is busy would only queue the redraw.
            page.wait_for_function(
                """n => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
                         return p.length >= n
                             && p.slice(0, n).every(e => /\\[\\d+\\]/.test(e.textContent)); }""",
                arg=len(EXPLORERS), timeout=600_000,
            )
            cells = page.locator(".jp-Notebook .jp-CodeCell")
            for i, (_, name) in enumerate(EXPLORERS):
                cell = cells.nth(i)
                chart = ".jp-OutputArea-output .widget-output img"
                image = cell.locator(chart).first
                image.wait_for(timeout=120_000)
                assert cell.locator(".tw-explorer").count() == 0, f"{name}: the HTML figure, not the widget"
                before = image.get_attribute("src")
                handle = cell.locator(".widget-slider .noUi-handle").first
                handle.scroll_into_view_if_needed()
                box = handle.bounding_box()
                x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
                page.mouse.move(x, y)
                page.mouse.down()
                page.mouse.move(x + 120, y, steps=10)
                page.mouse.up()
                deadline = time.monotonic() + 60
                after = before
                while after == before and time.monotonic() < deadline:
                    time.sleep(0.2)
                    after = cell.locator(chart).first.get_attribute("src")
                assert after and after.startswith("data:image/png"), name
                assert after != before, f"{name}: dragging the slider did not redraw the chart"
        finally:
            browser.close()
