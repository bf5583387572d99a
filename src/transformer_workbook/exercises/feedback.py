"""How a check's verdict looks: one output, readable everywhere.

In Jupyter, Colab, GitHub's viewer and the book, a :class:`~.judging.CheckResult`
is one display with two forms: ``text/html`` (a coloured box that wraps to any
width, the mistake named, the hint command) and ``text/plain`` (the same words,
wrapped, for terminals and for nbval's comparison). The HTML carries inline
styles, so it looks the same where no stylesheet is loaded; the book's
stylesheet may refine the class ``tw-feedback``.
"""

from __future__ import annotations

import html
import re
import sys
import textwrap

ICONS = {"passed": "✅", "failed": "❌", "not attempted": "⏳", "error": "💥"}
# (border, background, text) colours per status; readable in light and dark themes.
COLOURS = {
    "passed": ("#1a7f37", "#e9f7ec", "#0b3d1a"),
    "failed": ("#cf222e", "#fdecec", "#4a0d12"),
    "not attempted": ("#9a6700", "#fff6db", "#3d2b00"),
    "error": ("#8250df", "#f3edfd", "#2c1657"),
}
WIDTH = 88  # characters per line of the plain-text form


def headline(result) -> str:
    return f"{ICONS.get(result.status, '')} {result.exercise_id}: {result.status}."


def _footer(result) -> str:
    if result.status in ("failed", "error") and result.mistake not in ("unknown-exercise", "not-callable"):
        return f"Stuck? hint({result.exercise_id!r}) gives hints, most general first."
    return ""


def as_text(result, width: int | None = None) -> str:
    """The feedback as plain text: headline, message, and the hint command when it failed."""
    text = f"{headline(result)} {result.message}"
    footer = _footer(result)
    if width:
        text = textwrap.fill(text, width, break_long_words=False, break_on_hyphens=False)
        if footer:
            text += "\n" + textwrap.fill(footer, width, break_long_words=False)
        return text
    return f"{text} {footer}".rstrip()


def _inline(text: str) -> str:
    """Escape HTML, then show `code` spans as <code>."""
    escaped = html.escape(text, quote=False)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def as_html(result) -> str:
    """The feedback as one self-contained HTML box (inline styles, wraps at any width)."""
    border, background, ink = COLOURS.get(result.status, ("#57606a", "#f6f8fa", "#1f2328"))
    title = f" — {html.escape(result.title)}" if getattr(result, "title", "") else ""
    cases = ""
    if result.cases_total and result.status in ("passed", "failed"):
        cases = (f'<span style="opacity:.75"> ({result.cases_passed} of {result.cases_total} '
                 "cases match)</span>")
    footer = _footer(result)
    foot = (f'<div style="margin-top:.35em;font-size:90%;opacity:.85">{_inline(footer)}</div>'
            if footer else "")
    mistake = ""
    if result.mistake and result.status in ("failed", "error"):
        mistake = (f'<span style="font-size:85%;opacity:.8"> · diagnosis: '
                   f"<code>{html.escape(result.mistake)}</code></span>")
    return (
        f'<div class="tw-feedback tw-{result.status.replace(" ", "-")}" role="status" '
        f'style="border-left:4px solid {border};background:{background};color:{ink};'
        "padding:.5em .8em;margin:.25em 0;border-radius:4px;max-width:100%;box-sizing:border-box;"
        'overflow-wrap:anywhere;white-space:normal;font-family:system-ui,-apple-system,sans-serif;'
        'line-height:1.45">'
        f"<div><strong>{html.escape(headline(result))}</strong>"
        f"{title}{mistake}</div>"
        f'<div style="margin-top:.2em">{_inline(result.message)}{cases}</div>'
        f"{foot}</div>"
    )


def in_notebook() -> bool:
    """True in a Jupyter or Colab kernel (where a rich display reaches the learner)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except Exception:  # noqa: BLE001
        return False
    return ip is not None and getattr(ip, "kernel", None) is not None


def display(result) -> None:
    """Show ``result`` once: a rich display in a notebook, the plain text elsewhere."""
    result._shown = True
    if in_notebook():
        from IPython.display import publish_display_data

        publish_display_data({"text/plain": as_text(result, WIDTH), "text/html": as_html(result)})
    else:
        print(as_text(result, WIDTH))
