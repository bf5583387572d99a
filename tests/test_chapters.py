"""The table of chapters (src/transformer_workbook/chapters.py) agrees with the repository:
its files, modules, exercises, explorers, the book's table of contents and the README;
and each chapter notebook stores its explorers' interactive figures within the size budget."""

import base64
import importlib
import io
import json
import pathlib
import re

import nbformat
import pytest
import yaml
from PIL import Image

from transformer_workbook import chapters
from transformer_workbook.exercises import CHAPTER_MODULES, all_exercises
from transformer_workbook.figures.common import COLUMN_PX

ROOT = pathlib.Path(__file__).resolve().parents[1]
AVAILABLE = chapters.available()
COMING = [c for c in chapters.CHAPTERS if not c.available]
#: Each stored notebook stays under this size (it is downloaded with every page of the book).
NOTEBOOK_BUDGET = int(1.5 * 2**20)


def ids(chapter):
    return chapter.slug


def test_the_table_is_well_formed():
    table = chapters.CHAPTERS
    assert [c.number for c in table] == list(range(1, len(table) + 1))
    for c in table:
        assert re.fullmatch(rf"{c.number:02d}_[a-z0-9_]+", c.slug), c.slug
        assert c.module.isidentifier() and c.exercise_module.isidentifier()
    for field in ("slug", "module", "exercise_module"):
        values = [getattr(c, field) for c in table]
        assert len(set(values)) == len(values), f"{field} repeats"
    # Chapters become available in reading order: no gap before a coming one.
    assert [c.available for c in table] == sorted((c.available for c in table), reverse=True)
    assert chapters.first() is AVAILABLE[0]
    assert chapters.get(2) is chapters.get("02_multi_head_attention") is chapters.get("multihead")
    with pytest.raises(KeyError):
        chapters.get("99_nothing")
    assert chapters.slugs() == [c.slug for c in AVAILABLE]
    assert chapters.slugs(include_coming=True) == [c.slug for c in table]


@pytest.mark.parametrize("chapter", AVAILABLE, ids=ids)
def test_an_available_chapter_has_its_notebooks_and_modules(chapter):
    for rel in (chapter.notebook, chapter.solutions_notebook, chapter.exercises_notebook):
        assert (ROOT / rel).exists(), f"{rel} is missing"
    nb = nbformat.read(ROOT / chapter.notebook, as_version=4)
    assert nb.cells[0].source.splitlines()[0] == chapter.heading
    solutions = nbformat.read(ROOT / chapter.solutions_notebook, as_version=4)
    assert solutions.metadata["transformer_workbook"]["chapter"] == chapter.slug
    importlib.import_module(f"transformer_workbook.{chapter.module}")
    figures = importlib.import_module(chapter.figures_module)
    for name in chapter.explorers:
        assert callable(getattr(figures, name, None)), f"{chapter.figures_module} has no {name}"
    # The chapter's exercises register under its slug: the name the grader detects.
    assert chapter.exercise_module in CHAPTER_MODULES
    mine = [ex for ex in all_exercises() if ex.chapter == chapter.slug]
    assert mine, f"no exercises registered for {chapter.slug}"
    module = importlib.import_module(f"transformer_workbook.exercises.{chapter.exercise_module}")
    assert getattr(module, "CHAPTER", chapter.slug) == chapter.slug


@pytest.mark.parametrize("chapter", COMING, ids=ids)
def test_a_coming_chapter_is_nowhere_yet(chapter):
    for rel in (chapter.notebook, chapter.solutions_notebook, chapter.exercises_notebook):
        assert not (ROOT / rel).exists(), f"{rel} exists: mark {chapter.slug} available in chapters.py"
    assert chapter.slug not in (ROOT / "_toc.yml").read_text()


def test_every_notebook_belongs_to_an_available_chapter():
    slugs = set(chapters.slugs())
    for folder in ("notebooks", "solutions", "exercises"):
        for path in (ROOT / folder).glob("*.ipynb"):
            assert path.stem in slugs, f"{folder}/{path.name} is not an available chapter in chapters.py"


def test_exercise_modules_are_the_tables():
    assert CHAPTER_MODULES == chapters.exercise_modules() == [c.exercise_module for c in AVAILABLE]
    assert sorted({ex.chapter for ex in all_exercises()}) == sorted(chapters.slugs())


def test_toc_is_generated_from_the_table():
    committed = (ROOT / "_toc.yml").read_text()
    assert committed == chapters.toc_yaml(), "stale: run `python -m transformer_workbook notebooks toc`"


def test_toc_reads_chapter_then_its_exercises_and_keeps_the_answers_apart():
    toc = yaml.safe_load(chapters.toc_yaml())
    parts = {part["caption"]: [ch["file"] for ch in part["chapters"]] for part in toc["parts"]}
    captions = list(parts)
    reading = parts["Chapters and exercises"]
    assert reading == [f for c in AVAILABLE for f in (f"notebooks/{c.slug}", f"exercises/{c.slug}")]
    answers = next(cap for cap in captions if cap.startswith("Solutions"))
    assert "answers" in answers.lower()
    assert captions.index(answers) == len(captions) - 1 > captions.index("Reference")
    assert parts[answers] == [f"solutions/{c.slug}" for c in AVAILABLE]
    titles = [ch["title"] for part in toc["parts"] for ch in part["chapters"] if "title" in ch]
    assert titles == [f"Answers — Chapter {c.number}: {c.title}" for c in AVAILABLE]
    files = [toc["root"], *(f for fs in parts.values() for f in fs)]
    assert len(files) == len(set(files))
    for page in (ROOT / "book").glob("*.md"):  # every prose page is in the generated TOC
        assert f"book/{page.stem}" in files, f"book/{page.name}: add it to chapters.py's page lists"


def test_readme_chapter_table_is_generated_from_the_table():
    readme = (ROOT / "README.md").read_text()
    assert chapters.readme_table() in readme, "README's chapter table is stale: run `... notebooks toc`"
    assert chapters.with_readme_table(readme) == readme
    for c in chapters.CHAPTERS:
        assert f"| {c.number} | " in chapters.readme_table()


def test_makefile_lab_opens_the_first_chapter_from_the_table():
    makefile = (ROOT / "Makefile").read_text()
    lab = re.search(r"^lab:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "chapters" in lab and "first()" in lab, lab
    assert "01_attention" not in lab  # not named by hand


# ---------------------------------------------------------------------------
# The stored explorers: an interactive figure per explorer, within the budget
# ---------------------------------------------------------------------------


def _explorer_outputs(nb):
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            html = output.get("data", {}).get("text/html", "")
            html = "".join(html) if isinstance(html, list) else html
            found = re.search(r'class="tw-explorer" id="[^"]+" data-explorer="([^"]+)"', html)
            if found:
                yield i, cell, found.group(1), html


@pytest.mark.parametrize("chapter", AVAILABLE, ids=ids)
def test_chapter_notebook_stores_each_explorer_as_an_interactive_figure(chapter):
    path = ROOT / chapter.notebook
    nb = nbformat.read(path, as_version=4)
    stored = list(_explorer_outputs(nb))
    assert sorted(name for _, _, name, _ in stored) == sorted(chapter.explorers), (
        f"{chapter.notebook}: stored explorers {[n for _, _, n, _ in stored]}, table says {chapter.explorers}"
    )
    for _, cell, name, html in stored:
        tags = cell.metadata.get("tags", [])
        assert len(cell.outputs) == 1, f"{name}: one output (widget view and HTML in one bundle)"
        assert "nbval-ignore-output" in tags, f"{name}: tag the cell nbval-ignore-output"
        assert "remove-output" not in tags, f"{name}: the book must show it"
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), f"{name} loads from outside"
        data = json.loads(re.search(r'class="tw-explorer-data">(.*?)</script>', html, re.S).group(1))
        first = re.search(r'<img src="(data:image/png;base64,[^"]+)" width="(\d+)"', html)
        assert first and int(first.group(2)) <= COLUMN_PX, f"{name}: wider than the column"
        assert len(data["frames"]) >= 2 and sum(1 for s in data["images"] if s) >= 1
        image = Image.open(io.BytesIO(base64.b64decode(first.group(1).split(",", 1)[1])))
        assert image.width == int(first.group(2))


@pytest.mark.parametrize("chapter", AVAILABLE, ids=ids)
def test_chapter_notebook_size_budget(chapter):
    size = (ROOT / chapter.notebook).stat().st_size
    assert size < NOTEBOOK_BUDGET, f"{chapter.notebook}: {size / 2**20:.2f} MB"
