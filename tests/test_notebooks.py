"""The notebooks follow the course template and stay in sync with their sources.

(Outputs are re-executed and compared by nbval in `make test`; these tests
check structure: generated exercises, repository links, the table of contents.)
"""

import json
import pathlib
import re

import nbformat
import pytest
import yaml

from transformer_workbook import notebook_tools as nt
from transformer_workbook.exercises import all_exercises

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
FOLDERS = ("notebooks", "solutions", "exercises")
ALL = [p for folder in FOLDERS for p in sorted((ROOT / folder).glob("*.ipynb"))]


def rel(path):
    return path.relative_to(ROOT).as_posix()


def read(path):
    return nbformat.read(path, as_version=4)


def test_there_are_notebooks():
    assert (ROOT / "notebooks" / "01_attention.ipynb").exists()
    assert len(ALL) >= 3


@pytest.mark.parametrize("path", sorted((ROOT / "solutions").glob("*.ipynb")), ids=rel)
def test_exercises_are_generated_from_solutions(path):
    target = ROOT / "exercises" / path.name
    assert target.exists(), f"{rel(target)} is missing: run `make notebooks`"
    expected = nt.make_exercise_notebook(read(path))
    assert nt.sources(read(target)) == nt.sources(expected), (
        f"{rel(target)} is out of date with {rel(path)}: run `make notebooks` (never edit exercises/ by hand)"
    )
    # The grader reads a submission's chapter from this metadata (the file may be renamed).
    meta = read(target).metadata.get("transformer_workbook", {})
    assert meta.get("chapter") == path.stem == read(path).metadata["transformer_workbook"]["chapter"], (
        f"{rel(target)}: metadata transformer_workbook.chapter should be {path.stem!r}: run `make notebooks`"
    )


@pytest.mark.parametrize("path", sorted((ROOT / "exercises").glob("*.ipynb")), ids=rel)
def test_exercises_contain_no_answers(path):
    text = path.read_text()
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text


def test_strip_solutions_keeps_indentation_and_rejects_unterminated_blocks():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n"
    assert nt.strip_solutions(src) == f"def f(x):\n    {nt.STUB}\n"
    with pytest.raises(ValueError):
        nt.strip_solutions("def f(x):\n    ### BEGIN SOLUTION\n    return x\n")


@pytest.mark.parametrize("path", sorted((ROOT / "solutions").glob("*.ipynb")), ids=rel)
def test_every_exercise_of_the_chapter_is_in_its_solutions_notebook(path):
    nb = read(path)
    chapter = nb.metadata["transformer_workbook"]["chapter"]
    assert chapter == path.stem
    ids = {ex.id for ex in all_exercises() if ex.chapter == chapter}
    assert ids, f"no exercises registered for chapter {chapter}"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for ex in all_exercises():
        if ex.chapter == chapter:
            assert f'check("{ex.id}", {ex.target})' in code, f"no check cell for {ex.id}"
            assert re.search(rf"^(def|class) {ex.target}\b", code, re.M), f"{ex.target} not defined"


@pytest.mark.parametrize("path", ALL, ids=rel)
def test_colab_badge_and_setup_cell_follow_config(path):
    nb = read(path)
    head = "\n".join(c.source for c in nb.cells[:3])
    link = nt.colab_link(CONFIG, rel(path))
    assert link in head, f"{rel(path)}: Open-in-Colab badge must link to {link}"
    for found in nt.BADGE_RE.findall(head):
        assert found == link, f"{rel(path)}: stale badge link {found}"
    url = CONFIG["repository"]["url"].rstrip("/")
    setup = next(c for c in nb.cells if c.cell_type == "code")
    assert "google.colab" in setup.source
    assert f'"git+{url}"' in setup.source, f"{rel(path)}: setup cell must install from {url}"
    assert "--no-deps" in setup.source, "Colab's torch and ipywidgets must stay as they are"
    assert "seed_everything" in setup.source


def test_no_other_repository_urls_anywhere():
    url = CONFIG["repository"]["url"].rstrip("/")
    for path in ALL:
        for cell in read(path).cells:
            for found in nt.INSTALL_RE.findall(cell.source):
                assert found == f"git+{url}", f"{rel(path)}: {found}"


@pytest.mark.parametrize("path", ALL, ids=rel)
def test_notebook_template(path):
    nb = read(path)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{rel(path)}: re-run top to bottom (make notebooks)"
    assert "widgets" not in nb.metadata, "widget state must be stripped"
    text = json.dumps(nb)
    for pattern in (r"/tmp/", r"/root/", r"/home/\w+/", re.escape(str(ROOT))):
        assert not re.search(pattern, text), f"{rel(path)}: absolute path {pattern} in the notebook"
    for c in nb.cells:
        for o in c.get("outputs", []):
            assert o.output_type != "error", f"{rel(path)}: a cell raised: {o.get('ename')}"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=rel)
def test_chapter_template(path):
    nb = read(path)
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert re.search(r"^# Chapter \d+ — ", nb.cells[0].source, re.M)
    assert "In this chapter you will" in md
    assert re.search(r"^## Summary", md, re.M) and re.search(r"^## Try it", md, re.M)
    assert f"../exercises/{path.name}" in md, "the Try it section links to the chapter's exercises"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "assert" in code, "claims are assertions in cells"


NBVAL_TAGS = ("nbval-ignore-output", "nbval-skip", "raises-exception")


@pytest.mark.parametrize("path", ALL, ids=rel)
def test_cells_excluded_from_comparison_say_why(path):
    """nbval's markers are cell tags, out of the learner's way; the reason a cell is not
    compared is in its metadata (transformer_workbook.not_compared), for maintainers."""
    for cell in read(path).cells:
        for marker in ("NBVAL_IGNORE_OUTPUT", "NBVAL_SKIP", "NBVAL_RAISES_EXCEPTION", "# Not compared:"):
            assert marker not in cell.source, (
                f"{rel(path)}: use nbval's cell tags {NBVAL_TAGS} and the cell metadata "
                f"transformer_workbook.not_compared instead of {marker!r} in the code learners read"
            )
        tags = [t for t in cell.metadata.get("tags", []) if t in NBVAL_TAGS]
        if tags:
            reason = cell.metadata.get("transformer_workbook", {}).get("not_compared", "")
            assert reason.strip(), (
                f"{rel(path)}: a cell tagged {tags} must say why in its metadata "
                "transformer_workbook.not_compared"
            )


@pytest.mark.parametrize("path", ALL, ids=rel)
def test_solutions_are_titled_as_solutions(path):
    """The book's sidebar, search and Next links show each notebook's title: solutions must
    not look like exercises. The solutions also start with a spoiler note (which the
    generated exercises do not get)."""
    title = read(path).cells[0].source.splitlines()[0]
    folder = path.parent.name
    if folder == "solutions":
        assert title.startswith(nt.SOLUTIONS_TITLE), f"{rel(path)}: {title}"
        assert "Spoiler" in read(path).cells[0].source
    elif folder == "exercises":
        assert title.startswith(nt.EXERCISES_TITLE), f"{rel(path)}: {title}"
        assert "Spoiler" not in read(path).cells[0].source


@pytest.mark.parametrize("path", ALL, ids=rel)
def test_every_figure_has_an_alt_text(path):
    """myst-nb takes an image output's alt text from the cell metadata mystnb.image.alt;
    without it the book's alt text is the image's file path."""
    for i, cell in enumerate(read(path).cells):
        if any("image/png" in o.get("data", {}) for o in cell.get("outputs", [])):
            alt = cell.metadata.get("mystnb", {}).get("image", {}).get("alt", "")
            assert len(alt.split()) >= 5, (
                f"{rel(path)}, cell {i}: a figure needs an alt text that says what it shows "
                "(cell metadata mystnb.image.alt)"
            )


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=rel)
def test_figures_are_drawn_at_the_size_the_book_shows_them(path):
    """No stored figure is wider than the book's column, so none is scaled down (with its text)."""
    import base64
    import io

    from PIL import Image

    from transformer_workbook.figures.common import COLUMN_PX

    for i, cell in enumerate(read(path).cells):
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                width = Image.open(io.BytesIO(base64.b64decode(png))).width
                assert width <= COLUMN_PX, f"{rel(path)} cell {i}: {width} px, scaled down in the book"


def _toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc["parts"]:
        files += [ch["file"] for ch in part["chapters"]]
    return files


def test_toc_lists_every_notebook_and_page():
    files = set(_toc_files())
    for path in ALL:
        assert rel(path).removesuffix(".ipynb") in files, f"{rel(path)} is not in _toc.yml"
    for page in (ROOT / "book").glob("*.md"):
        assert rel(page).removesuffix(".md") in files, f"{rel(page)} is not in _toc.yml"
    for f in files:
        assert (ROOT / f"{f}.md").exists() or (ROOT / f"{f}.ipynb").exists(), f"{f} in _toc.yml is missing"


def test_launch_buttons_point_at_the_repository():
    assert CONFIG["repository"]["url"].startswith("https://github.com/")
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert CONFIG["repository"]["branch"]


@pytest.mark.parametrize("path", ALL, ids=rel)
def test_no_widget_views_are_stored(path):
    """Widget state is stripped, so a stored view would render as an empty box or an error
    (GitHub, Colab, the book): `make notebooks` drops it; an explorer's HTML figure stays."""
    for cell in read(path).cells:
        for output in cell.get("outputs", []):
            assert not nt.is_widget_view(output), f"{rel(path)}: stored widget view; run `make notebooks`"


def test_strip_widget_views_keeps_the_html_figure_only():
    view = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    explorer = {"output_type": "display_data", "metadata": {},
                "data": {"text/plain": "x", "text/html": "<div>figure</div>", nt.WIDGET_VIEW: view}}
    plain = {"output_type": "display_data", "metadata": {},
             "data": {"text/plain": "VBox()", nt.WIDGET_VIEW: view}}
    stream = {"output_type": "stream", "name": "stdout", "text": "hi"}
    kept = nt.strip_widget_views([explorer, plain, stream])
    assert kept == [{"output_type": "display_data", "metadata": {},
                     "data": {"text/plain": "x", "text/html": "<div>figure</div>"}}, stream]
    assert nt.WIDGET_VIEW in explorer["data"]  # the input is not modified
