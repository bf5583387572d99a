"""The explorers in the built book, where there is no kernel: headless Chromium.

Builds the book from the committed outputs (as `make book` does, into a
temporary folder), opens each available chapter's page, and for each of the
chapter's explorers (from the table of chapters): its controls appear, its
figure is shown at the size it was drawn, moving its slider with the mouse
(and choosing another option in each drop-down list) changes the displayed
frame and the value shown beside the slider, and nothing it needs comes from
outside the page. With JavaScript off, the starting figure is still shown.
Needs Debian's Chromium (`/usr/bin/chromium`), like tests/test_browser.py.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

from transformer_workbook import chapters
from transformer_workbook.figures.common import COLUMN_PX

pytestmark = pytest.mark.browser

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]
PAGES = [c for c in chapters.available() if c.explorers]


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """The HTML book built from the committed notebooks (nothing executed)."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI: .ci/run installs Debian's chromium package")
        pytest.skip("no Chromium on this machine (apt-get install chromium to run the browser test)")
    out = tmp_path_factory.mktemp("book")
    jupyter_book = pathlib.Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(jupyter_book), "build", str(ROOT), "--path-output", str(out), "--all"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    html = out / "_build" / "html"
    assert (html / "index.html").exists()
    return html


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _open(browser, url, **context):
    """A page on ``url`` with the network off: only file:// requests are served."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, **context)
    ctx.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
              else route.abort())
    page = ctx.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.wait_for_load_state("load")
    return page, errors


def _wait_for_change(locator, attribute, before, seconds=10):
    deadline = time.monotonic() + seconds
    after = locator.get_attribute(attribute)
    while after == before and time.monotonic() < deadline:
        time.sleep(0.05)
        after = locator.get_attribute(attribute)
    return after


@pytest.mark.parametrize("chapter", PAGES, ids=lambda c: c.slug)
def test_moving_a_slider_in_the_book_changes_the_figure(book, browser, chapter):
    page, errors = _open(browser, (book / "notebooks" / f"{chapter.slug}.html").as_uri())
    try:
        loaded_errors = list(errors)
        for name in chapter.explorers:
            root = page.locator(f'.tw-explorer[data-explorer="{name}"]')
            assert root.count() == 1, f"{name}: not on the page (or twice)"
            root.scroll_into_view_if_needed()
            assert root.get_attribute("data-ready") == "1", f"{name}: its script did not run"
            assert root.locator(".tw-explorer-controls").is_visible(), f"{name}: controls hidden"
            image = root.locator("img")
            natural, shown = image.evaluate("i => [i.naturalWidth, i.getBoundingClientRect().width]")
            assert natural <= COLUMN_PX and abs(shown - natural) < 1, (
                f"{name}: drawn {natural} px wide, shown {shown:.0f} px"
            )

            slider = root.locator('input[type="range"]').first
            readout = root.locator("output").first
            before, text_before = image.get_attribute("src"), readout.text_content()
            box = slider.bounding_box()
            at_max = slider.evaluate("s => Number(s.value) === Number(s.max)")
            y = box["y"] + box["height"] / 2
            start, end = (box["x"] + box["width"] - 3, box["x"] + 3) if at_max else (
                box["x"] + 3, box["x"] + box["width"] - 3)
            page.mouse.move(start, y)
            page.mouse.down()
            page.mouse.move(end, y, steps=8)  # drag the thumb across the track
            page.mouse.up()
            after = _wait_for_change(image, "src", before)
            assert after.startswith("data:image/png;base64,"), name
            assert after != before, f"{name}: moving the slider did not change the figure"
            assert readout.text_content() != text_before, f"{name}: the value shown did not change"
            assert readout.text_content() in image.get_attribute("alt"), name

            for select in root.locator("select").all():
                before = image.get_attribute("src")
                options = select.locator("option").all_text_contents()
                current = select.evaluate("s => s.selectedIndex")
                select.select_option(index=(current + 1) % len(options))
                assert _wait_for_change(image, "src", before) != before, f"{name}: the drop-down did nothing"
        assert errors == loaded_errors, f"errors while moving the controls: {errors[len(loaded_errors):]}"
    finally:
        page.context.close()


@pytest.mark.parametrize("chapter", PAGES, ids=lambda c: c.slug)
def test_without_javascript_the_starting_figure_is_shown(book, browser, chapter):
    url = (book / "notebooks" / f"{chapter.slug}.html").as_uri()
    page, _ = _open(browser, url, java_script_enabled=False)
    try:
        for name in chapter.explorers:
            root = page.locator(f'.tw-explorer[data-explorer="{name}"]')
            image = root.locator("img")
            image.scroll_into_view_if_needed()
            assert image.is_visible() and image.evaluate("i => i.complete && i.naturalWidth > 0"), name
            assert not root.locator(".tw-explorer-controls").is_visible(), f"{name}: dead controls shown"
    finally:
        page.context.close()
