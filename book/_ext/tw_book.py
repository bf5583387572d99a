"""Sphinx extension of the Transformer Workbook's book: a site that needs no internet.

Registered in ``_config.yml`` (``sphinx: local_extensions``). It

- serves MathJax from the book itself: the npm package ``mathjax`` (pinned in
  ``package.json``/``package-lock.json``, installed by ``make`` with ``npm ci``) is
  copied into ``_static/mathjax`` and ``mathjax_path`` points there, instead of
  at a CDN;
- shows the notebooks' Open-in-Colab badge from ``_static/colab-badge.svg``
  (the notebooks themselves keep Colab's badge image, which Jupyter, Colab and
  GitHub load when online; offline they show its alt text "Open In Colab");
- drops duplicated ``<script>`` tags: Sphinx 7.4 registers an inline script added
  after the builder starts twice (once with filename None, once with ""), so
  sphinx-thebe's ``const THEBE_JS_URL = ...`` was declared twice on every page,
  a JavaScript error.

The build fails with a message saying what to run when MathJax is not installed:
a book that silently falls back to a CDN is what this extension is here to prevent.
"""

from __future__ import annotations

import pathlib
import shutil

from sphinx.errors import ExtensionError

ROOT = pathlib.Path(__file__).resolve().parents[2]
MATHJAX = ROOT / "node_modules" / "mathjax"
MATHJAX_ENTRY = "tex-mml-chtml.js"  # the component Sphinx loads from the CDN by default
# Other entry points of the package, which the book never loads (about 10 MB).
MATHJAX_SKIP = ("tex-chtml*.js", "tex-svg*.js", "tex-mml-svg.js", "mml-*.js", "node-main.js")
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


def _check_mathjax(app, config):
    entry = MATHJAX / "es5" / MATHJAX_ENTRY
    if not entry.exists():
        raise ExtensionError(
            f"MathJax is not installed ({entry.relative_to(ROOT)} is missing): the book serves "
            "its own copy so that it works offline. Run `make book` (it runs `npm ci`), or "
            "`npm ci --ignore-scripts` in the repository."
        )
    config.mathjax_path = f"mathjax/{MATHJAX_ENTRY}"


def _copy_mathjax(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    target = pathlib.Path(app.outdir) / "_static" / "mathjax"
    stamp = target / "package.json"
    source_stamp = (MATHJAX / "package.json").read_text()
    if stamp.exists() and stamp.read_text() == source_stamp:
        return
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(MATHJAX / "es5", target, ignore=shutil.ignore_patterns(*MATHJAX_SKIP))
    shutil.copy2(MATHJAX / "LICENSE", target / "LICENSE")
    stamp.write_text(source_stamp)


def _page_context(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if scripts:
        seen, unique = set(), []
        for script in scripts:
            filename = getattr(script, "filename", script) or ""
            key = (filename, tuple(sorted(getattr(script, "attributes", {}).items())))
            if key not in seen:
                seen.add(key)
                unique.append(script)
        context["script_files"] = unique
    body = context.get("body")
    if body and COLAB_BADGE in body:
        local = context["pathto"]("_static/colab-badge.svg", 1)
        context["body"] = body.replace(f'src="{COLAB_BADGE}"', f'src="{local}"')


def setup(app):
    app.connect("config-inited", _check_mathjax)
    app.connect("html-page-context", _page_context)
    app.connect("build-finished", _copy_mathjax)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
