"""Course-maintenance tools for the notebooks (contributors and instructors).

- :func:`make_exercise_notebook`: solutions/ -> exercises/ (answers become stubs).
- :func:`execute_notebook`: run a notebook top to bottom in a fresh kernel and
  save it with outputs, execution counts 1, 2, 3, ... and no widget state (an
  explorer's output keeps its HTML figure, without the widget view).
- :func:`sync_links`: point badges and setup cells at the repository in ``_config.yml``.
- :func:`write_tables`: ``_toc.yml`` and the README's chapter table, from
  :mod:`transformer_workbook.chapters`.

Run them with ``python -m transformer_workbook notebooks ...`` (see ``make notebooks``).
Needs ``nbformat`` and ``nbclient`` (the ``grader`` extra), imported lazily.
"""

from __future__ import annotations

import copy
import pathlib
import re
import time

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
MD_BEGIN, MD_END = "<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->"
STUB = 'raise NotImplementedError("Replace this line with your code.")'
# solutions/ is titled as solutions (in the book's sidebar, search and Next links too);
# the generated exercises/ keep the exercises' title.
SOLUTIONS_TITLE, EXERCISES_TITLE = "# Solutions — ", "# Exercises — "


def strip_solutions(source: str) -> str:
    """Replace every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block by a stub.

    The stub has the BEGIN marker's indentation. Raises ValueError on an
    unterminated or nested block, so a typo cannot leak an answer.
    """
    out: list[str] = []
    inside = False
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError("nested ### BEGIN SOLUTION")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(indent + STUB)
        elif stripped == END:
            if not inside:
                raise ValueError("### END SOLUTION without BEGIN")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("### BEGIN SOLUTION without END")
    return "\n".join(out)


def strip_markdown_solutions(source: str) -> str:
    pattern = re.compile(re.escape(MD_BEGIN) + r".*?" + re.escape(MD_END) + r"\n?", re.S)
    return pattern.sub("", source)


def make_exercise_notebook(solution_nb):
    """The exercise version of a solutions notebook (a new nbformat object, no outputs)."""
    nb = copy.deepcopy(solution_nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source)
            cell.outputs = []
            cell.execution_count = None
        elif cell.cell_type == "markdown":
            cell.source = strip_markdown_solutions(cell.source)
            cell.source = cell.source.replace("/solutions/", "/exercises/")
            if cell.source.startswith(SOLUTIONS_TITLE):
                cell.source = EXERCISES_TITLE + cell.source[len(SOLUTIONS_TITLE) :]
    meta = nb.metadata.setdefault("transformer_workbook", {})
    meta["generated_from"] = "solutions"
    return nb


def generate_exercises(root: pathlib.Path) -> list[pathlib.Path]:
    """Write exercises/NN.ipynb for every solutions/NN.ipynb (sources only).

    Keeps the outputs of an existing exercise notebook when its sources are
    unchanged, so regenerating is a no-op on a clean tree; the course's own
    metadata (its chapter, for the grader) still follows the solutions.
    """
    import nbformat

    written = []
    for src in sorted((root / "solutions").glob("*.ipynb")):
        target = root / "exercises" / src.name
        new = make_exercise_notebook(nbformat.read(src, as_version=4))
        if target.exists():
            old = nbformat.read(target, as_version=4)
            if sources(old) == sources(new):
                key = "transformer_workbook"
                if old.metadata.get(key) != new.metadata.get(key):
                    old.metadata[key] = new.metadata[key]
                    nbformat.write(old, target)
                    written.append(target)
                continue
        target.parent.mkdir(exist_ok=True)
        nbformat.write(new, target)
        written.append(target)
    return written


def sources(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def execute_notebook(path: pathlib.Path, timeout: int = 600) -> float:
    """Execute ``path`` in place in a fresh kernel; returns the seconds it took."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        # True although the state is stripped below: with False, nbclient 0.10
        # raises KeyError when an Output widget (interactive_output) captures output.
        store_widget_state=True,
        record_timing=False,
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = strip_widget_views(cell.outputs)
    nbformat.write(nb, path)
    return seconds


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def is_widget_view(output) -> bool:
    """Whether an output holds a widget view. Without the widget state (stripped: it is large
    and changes on every run, with random model ids) a view renders as an empty box or a "model
    not found" error on GitHub, in Colab and in the book, so it is never stored."""
    return WIDGET_VIEW in output.get("data", {})


def strip_widget_views(outputs: list) -> list:
    """``outputs`` without widget views.

    An output that holds something to show besides the view (an explorer's
    ``text/html`` figure, see :mod:`transformer_workbook.figures.explorer`)
    keeps it, minus the view's mime type; one whose only other representation
    is ``text/plain`` (the widget's repr, e.g. ``VBox(children=...)``) is dropped.
    """
    kept = []
    for output in outputs:
        if not is_widget_view(output):
            kept.append(output)
            continue
        data = {k: v for k, v in output["data"].items() if k != WIDGET_VIEW}
        if set(data) - {"text/plain"}:
            output = copy.deepcopy(output)
            output["data"] = data
            kept.append(output)
    return kept


def colab_link(config: dict, path: str) -> str:
    org_repo = config["repository"]["url"].rstrip("/").split("github.com/")[1]
    branch = config["repository"].get("branch", "master")
    colab = config["launch_buttons"]["colab_url"].rstrip("/")
    return f"{colab}/github/{org_repo}/blob/{branch}/{path}"


def read_config(root: pathlib.Path) -> dict:
    import yaml

    return yaml.safe_load((root / "_config.yml").read_text())


BADGE_RE = re.compile(r"https://colab\.research\.google\.com/github/[^)\s\"']+")
INSTALL_RE = re.compile(r"git\+https://github\.com/[^\s\"']+")


def sync_links(root: pathlib.Path) -> list[pathlib.Path]:
    """Rewrite badges and setup-cell install URLs to follow ``_config.yml``."""
    import nbformat

    config = read_config(root)
    url = config["repository"]["url"].rstrip("/")
    changed = []
    for folder in ("notebooks", "solutions", "exercises"):
        for path in sorted((root / folder).glob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            rel = path.relative_to(root).as_posix()
            before = sources(nb)
            for cell in nb.cells:
                cell.source = BADGE_RE.sub(colab_link(config, rel), cell.source)
                cell.source = INSTALL_RE.sub(f"git+{url}", cell.source)
            if sources(nb) != before:
                nbformat.write(nb, path)
                changed.append(path)
    return changed


def write_tables(root: pathlib.Path) -> list[pathlib.Path]:
    """Write ``_toc.yml`` and the README's chapter table from the table of chapters;
    returns the files that changed."""
    from . import chapters

    changed = []
    toc = root / "_toc.yml"
    if not toc.exists() or toc.read_text() != chapters.toc_yaml():
        toc.write_text(chapters.toc_yaml())
        changed.append(toc)
    readme = root / "README.md"
    text = readme.read_text()
    new = chapters.with_readme_table(text)
    if new != text:
        readme.write_text(new)
        changed.append(readme)
    return changed
