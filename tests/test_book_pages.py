"""Every page of the built book, opened in a real browser with the network off.

What a learner meets: the book built strictly (`jupyter-book build --all -W -n`),
served from 127.0.0.1, every page opened in headless Chromium with every request
to another host blocked (a classroom server or a zip with no internet). On each
page, at a desktop and a phone width:

- no console error, no failed or blocked request, no 404;
- math typeset by the book's own MathJax (every `.math` element holds an
  `mjx-container`) and no raw LaTeX left in the visible text;
- nothing cut off: no table, code cell, output or check feedback (`.tw-feedback`)
  wider than its column or scrolling sideways;
- every image loaded, with an alt text that says something (not a file path);
- on a notebook page, the launch button and the Open-in-Colab badge open this
  very notebook.

A screenshot of every page at both widths is saved under `_build/screenshots/`.
It needs Debian's Chromium (`/usr/bin/chromium`): `.ci/run` installs it; on a
machine without it the test is skipped, except in CI (CI=true), where a missing
browser is a failure.
"""

from __future__ import annotations

import functools
import http.server
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse

import pytest
import yaml

from transformer_workbook import notebook_tools as nt

pytestmark = pytest.mark.browser

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# 1280 px is the narrowest common desktop: the book's column only widens from there
# (up to 1440 px). 390 px is a phone held upright.
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
NOTEBOOK_FOLDERS = ("notebooks", "exercises", "solutions")

# What must not overflow its column; pre elements are the code cells and text outputs.
# A table is checked through its scrolling container; a display equation may scroll
# inside its own box on a phone (MathJax 3 does not break lines), not on a desktop.
CONTAINED = ("table, .pst-scrollable-table-container, pre, .cell_output, .output, .tw-feedback, img, "
             "mjx-container[display='true']")

# Runs in the page: everything the test asserts, gathered in one object.
INSPECT = """
async (phone) => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const main = document.querySelector('main#main-content article') || document.querySelector('article')
            || document.body;
  const column = main.getBoundingClientRect();
  const describe = (el) => {
    const cell = el.closest('.cell');
    const where = cell ? (cell.querySelector('.cell_input pre') || cell).textContent : el.textContent;
    return el.tagName.toLowerCase() + (el.className && typeof el.className === 'string' ? '.' +
           el.className.split(' ').join('.') : '') + ': ' + where.trim().slice(0, 80).replace(/\\s+/g, ' ');
  };
  const overflowing = [];
  for (const el of main.querySelectorAll(CONTAINED)) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;  // not displayed (e.g. a closed dropdown)
    const mayScroll = el.tagName === 'TABLE' || (phone && el.tagName === 'MJX-CONTAINER');
    const scrolls = !mayScroll && el.scrollWidth > el.clientWidth + 1
                    && getComputedStyle(el).overflowX !== 'visible';
    const spills = r.right > column.right + 1 || r.left < column.left - 1;
    if (scrolls || spills) {
      overflowing.push(`${describe(el)} (width ${Math.round(r.width)} px, content ${el.scrollWidth} px,` +
                       ` column ${Math.round(column.left)}-${Math.round(column.right)} px)`);
    }
  }
  // The page itself must not scroll sideways: whatever sticks out of the window
  // (outside a box that scrolls or clips it, and not a fixed drawer) is reported.
  const clipped = (el) => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      if (getComputedStyle(p).overflowX !== 'visible') return true;
    }
    return false;
  };
  const sticksOut = [];
  if (document.documentElement.scrollWidth > window.innerWidth + 1) {
    for (const el of document.querySelectorAll('body *')) {
      const r = el.getBoundingClientRect();
      if (r.right > window.innerWidth + 1 && r.width > 0 && getComputedStyle(el).position !== 'fixed'
          && !clipped(el) && !(el.parentElement && el.parentElement.getBoundingClientRect().right
                                 > window.innerWidth + 1 && !clipped(el.parentElement))) {
        sticksOut.push(`${describe(el)} (right edge at ${Math.round(r.right)} px)`);
      }
    }
    if (!sticksOut.length) sticksOut.push(`page ${document.documentElement.scrollWidth} px wide`);
  }
  // Visible prose without code: raw LaTeX there means MathJax did not typeset it.
  const clone = document.body.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, mjx-container, textarea, .highlight')
       .forEach((el) => el.remove());
  const text = clone.textContent;
  const mathNodes = [...document.querySelectorAll('span.math, div.math')];
  const untypeset = mathNodes.filter((el) => !el.querySelector('mjx-container'))
                             .map((el) => el.textContent.trim().slice(0, 60));
  const images = [...document.images].map((img) => ({
    src: img.getAttribute('src'), alt: img.getAttribute('alt'), loaded: img.complete && img.naturalWidth > 0,
    visible: img.getBoundingClientRect().width > 0,
  }));
  // Headless Chromium does not ask for a favicon by itself; a browser does (and got a 404).
  const icon = document.querySelector('link[rel~="icon"]');
  const iconStatus = icon ? (await fetch(icon.href)).status : null;
  const colab = [...document.querySelectorAll('a[href*="colab.research.google.com"]')]
                  .map((a) => a.getAttribute('href'));
  return {iconStatus, overflowing, sticksOut, text, untypeset, mathCount: mathNodes.length,
          mjx: document.querySelectorAll('mjx-container').length, images, colab};
}
""".replace("CONTAINED", repr(CONTAINED))

RAW_LATEX = re.compile(r"\\\(|\\\)|\\\[|\$\$|\\(sqrt|frac|operatorname|mathbb|text|sum|begin)\b")


def _browser_or_skip():
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail("Chromium is missing in CI: .ci/run installs Debian's chromium package")
    pytest.skip("no Chromium on this machine (apt-get install chromium to run the browser test)")


# Module scope, not session: Playwright's sync API must be closed before another test
# module (tests/test_browser.py) starts its own.
@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """The book, built strictly from the working tree into a temporary folder."""
    _browser_or_skip()
    out = tmp_path_factory.mktemp("book")
    jb = pathlib.Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run(
        [str(jb), "build", str(ROOT), "--all", "-W", "-n", "--keep-going", "--path-output", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert proc.returncode == 0, "strict book build failed:\n" + (proc.stdout + proc.stderr)[-5000:]
    return out / "_build" / "html"


@pytest.fixture(scope="module")
def server(book):
    """`book` served on 127.0.0.1 (a random free port); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=_browser_or_skip(),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"],
        )
        try:
            yield b
        finally:
            b.close()


def _pages():
    """Every page the TOC builds, as paths relative to the HTML root, plus the search page."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc.get("parts", [toc]):
        walk(part.get("chapters", []))
    return [f"{f}.html" for f in files] + ["search.html", "genindex.html"]


PAGES = _pages()


def _visit(browser, base, page_path, viewport):
    """Open one page offline; returns what went wrong on the way and what INSPECT found."""
    context = browser.new_context(viewport=VIEWPORTS[viewport], device_scale_factor=1,
                                  service_workers="block")
    problems = []
    host = urllib.parse.urlsplit(base).netloc

    def route(r):
        url = r.request.url
        if urllib.parse.urlsplit(url).netloc == host or url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            problems.append(f"request to another host (blocked: the book must work offline): {url}")
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"JavaScript error: {e}"))
    page.on("requestfailed", lambda r: host in r.url and problems.append(
        f"failed request: {r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
    try:
        page.goto(f"{base}/{page_path}", wait_until="networkidle", timeout=60_000)
        found = page.evaluate(INSPECT, viewport == "phone")
        page.wait_for_load_state("networkidle")
        shot = SCREENSHOTS / viewport / (page_path.replace("/", "__").removesuffix(".html") + ".png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
    finally:
        context.close()
    return problems, found


def _alt_is_meaningful(alt: str | None) -> bool:
    if not alt or not alt.strip():
        return False
    return not re.search(r"(^|/)_images/|\.(png|svg|jpe?g|gif)$|^\.\./", alt.strip())


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("page_path", PAGES)
def test_page_reads_right_offline(browser, server, page_path, viewport):
    problems, found = _visit(browser, server, page_path, viewport)

    # Math: typeset, none left as LaTeX source.
    problems += [f"math not typeset: {m}" for m in found["untypeset"]]
    for m in RAW_LATEX.finditer(found["text"]):
        context = found["text"][max(0, m.start() - 40): m.end() + 40].replace("\n", " ")
        problems.append(f"raw LaTeX on the page: ...{context}...")
    if found["mathCount"]:
        assert found["mjx"] > 0 or found["untypeset"], "math elements but no MathJax output"

    # Nothing cut off, and no sideways scrolling of the page.
    problems += [f"wider than its column ({viewport}): {o}" for o in found["overflowing"]]
    problems += [f"wider than the window ({viewport}): {o}" for o in found["sticksOut"]]

    if found["iconStatus"] != 200:
        problems.append(f"no favicon: the page declares none, or it does not load ({found['iconStatus']})")

    # Images: loaded, described.
    for img in found["images"]:
        if img["visible"] and not img["loaded"]:
            problems.append(f"image not loaded: {img['src']}")
        if not _alt_is_meaningful(img["alt"]):
            problems.append(f"image without a meaningful alt text: alt={img['alt']!r} src={img['src']}")

    # The launch button and the badge open this very notebook.
    folder = page_path.split("/")[0]
    if folder in NOTEBOOK_FOLDERS:
        own = nt.colab_link(CONFIG, page_path.removesuffix(".html") + ".ipynb")
        assert len(found["colab"]) >= 2, f"expected the launch button and the badge, found {found['colab']}"
        problems += [f"Colab link to another notebook: {href} (expected {own})"
                     for href in found["colab"] if href != own]

    assert not problems, f"{page_path} at {viewport} width:\n" + "\n".join(dict.fromkeys(problems))


# The check's rich feedback (an HTML box with class tw-feedback, in a cell's output) must
# wrap inside the column, whatever its message; the stored outputs may not show one yet,
# so one is put into a real page, where the book's stylesheet applies, and measured.
FEEDBACK = """
(phone) => {
  const output = document.querySelector('.cell_output');
  const box = document.createElement('div');
  box.className = 'output text_html';
  box.innerHTML = '<div class="tw-feedback"><p>❌ <b>attention.softmax</b>: failed. ' +
    'Your softmax overflows on large inputs: exp(1e4) is inf in float32, and inf / inf is NaN. '.repeat(4) +
    '<code>transformer_workbook.exercises.attention.softmax_reference_with_a_very_long_name</code></p>' +
    '<pre>' + 'x'.repeat(200) + '</pre></div>';
  output.appendChild(box);
  const el = box.querySelector('.tw-feedback');
  const article = document.querySelector('main#main-content article') || document.body;
  const column = article.getBoundingClientRect();
  const r = el.getBoundingClientRect();
  const pre = el.querySelector('pre');
  return {width: r.width, right: r.right, columnRight: column.right, scroll: el.scrollWidth,
          client: el.clientWidth, preScroll: pre.scrollWidth, preClient: pre.clientWidth,
          page: document.documentElement.scrollWidth, window: window.innerWidth};
}
"""


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_check_feedback_box_wraps_inside_the_column(browser, server, viewport):
    context = browser.new_context(viewport=VIEWPORTS[viewport])
    try:
        page = context.new_page()
        page.goto(f"{server}/solutions/01_attention.html", wait_until="load")
        m = page.evaluate(FEEDBACK, viewport == "phone")
    finally:
        context.close()
    assert m["right"] <= m["columnRight"] + 1, m
    assert m["scroll"] <= m["client"] + 1 and m["preScroll"] <= m["preClient"] + 1, m
    assert m["page"] <= m["window"] + 1, m
