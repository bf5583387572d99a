"""The table of chapters: the one place a chapter is named.

Everything else is derived from :data:`CHAPTERS` or checked against it:

- the book's table of contents, ``_toc.yml`` (:func:`toc_yaml`; written by
  ``python -m transformer_workbook notebooks toc``, checked by
  ``tests/test_chapters.py``);
- the README's chapter table, between its ``chapters`` markers (:func:`readme_table`;
  written and checked the same way);
- ``make lab``, which opens the first available chapter (:func:`first`);
- the exercise modules the checks load, ``exercises.CHAPTER_MODULES``
  (:func:`exercise_modules`);
- the tests, which run over every available chapter (its notebooks, modules and
  explorers).

Adding a chapter: set ``available=True`` on its row once its notebook,
solutions and modules exist, then run ``python -m transformer_workbook notebooks toc``.

Nothing here imports torch or matplotlib: the table is cheap to read.
"""

from __future__ import annotations

import dataclasses
import json
import re

__all__ = [
    "CHAPTERS",
    "Chapter",
    "available",
    "exercise_modules",
    "first",
    "get",
    "readme_table",
    "slugs",
    "toc_yaml",
]


@dataclasses.dataclass(frozen=True)
class Chapter:
    """One chapter of the course.

    Attributes:
        number: its number, in reading order (1, 2, ...).
        slug: ``NN_name``: the file name of its notebooks (``notebooks/<slug>.ipynb``,
            ``solutions/<slug>.ipynb``, ``exercises/<slug>.ipynb``) and the chapter
            name the exercises and the grader use.
        title: its title, as in the notebook's heading ``# Chapter N — Title``.
        module: its package module ``transformer_workbook.<module>``; its figures
            and explorers are in ``transformer_workbook.figures.<module>``.
        exercise_module: its checks, ``transformer_workbook.exercises.<exercise_module>``.
        explorers: the functions of its figures module that build its explorers.
        available: whether its notebooks exist; a chapter still to come is listed
            in the README as "coming" and left out of the book.
    """

    number: int
    slug: str
    title: str
    module: str
    exercise_module: str
    explorers: tuple[str, ...] = ()
    available: bool = False

    @property
    def notebook(self) -> str:
        return f"notebooks/{self.slug}.ipynb"

    @property
    def exercises_notebook(self) -> str:
        return f"exercises/{self.slug}.ipynb"

    @property
    def solutions_notebook(self) -> str:
        return f"solutions/{self.slug}.ipynb"

    @property
    def figures_module(self) -> str:
        return f"transformer_workbook.figures.{self.module}"

    @property
    def heading(self) -> str:
        """The notebook's first line."""
        return f"# Chapter {self.number} — {self.title}"


CHAPTERS: tuple[Chapter, ...] = (
    Chapter(1, "01_attention", "Attention", "attention", "attention",
            explorers=("attention_explorer",), available=True),
    Chapter(2, "02_multi_head_attention", "Multi-head attention", "multihead", "multihead",
            explorers=("heads_explorer",), available=True),
    Chapter(3, "03_positional_encoding", "Positional encoding", "positional", "positional",
            explorers=("positional_explorer",), available=True),
    Chapter(4, "04_encoder", "Encoder", "encoder", "encoder",
            explorers=("depth_explorer",), available=True),
    Chapter(5, "05_decoder", "Decoder", "decoder", "decoder",
            explorers=("cross_attention_explorer",), available=True),
    Chapter(6, "06_masking", "Masking", "masks", "masking",
            explorers=("mask_explorer",), available=True),
    Chapter(7, "07_complexity", "Complexity", "complexity", "complexity",
            explorers=("cost_explorer",), available=True),
    Chapter(8, "08_training", "Training a Transformer end to end", "training", "training",
            explorers=("beam_explorer",), available=True),
    Chapter(9, "09_generation", "Generating text", "generation", "generation",
            explorers=("sampling_explorer",), available=True),
)


def available() -> list[Chapter]:
    """The chapters whose notebooks exist, in order."""
    return [c for c in CHAPTERS if c.available]


def first() -> Chapter:
    """The first available chapter (what ``make lab`` opens)."""
    return available()[0]


def slugs(include_coming: bool = False) -> list[str]:
    """The chapters' slugs (``"01_attention"``, ...), available ones only unless asked."""
    return [c.slug for c in CHAPTERS if c.available or include_coming]


def exercise_modules() -> list[str]:
    """The exercise-check modules of the available chapters, in chapter order."""
    return [c.exercise_module for c in available()]


def get(key: int | str) -> Chapter:
    """A chapter by number, slug or package module name."""
    for c in CHAPTERS:
        if key in (c.number, c.slug, c.module):
            return c
    raise KeyError(f"no chapter {key!r}; chapters: {', '.join(c.slug for c in CHAPTERS)}")


# ---------------------------------------------------------------------------
# What is derived from the table
# ---------------------------------------------------------------------------

#: The book's prose pages around the chapters (book/*.md), in reading order.
ROOT_PAGE = "book/intro"
COURSE_PAGES = ("book/using", "book/exercises", "book/notation", "book/instructors")
REFERENCE_PAGES = ("book/glossary", "book/references", "book/performance")


def toc_yaml() -> str:
    """The text of ``_toc.yml``: the course pages; each available chapter followed by
    its exercises; the reference pages; then the solutions, in a part of their own
    whose caption says they are the answers."""
    lines = [
        "# Generated from src/transformer_workbook/chapters.py by",
        "# `python -m transformer_workbook notebooks toc`: edit the table there, not this file.",
        "format: jb-book",
        f"root: {ROOT_PAGE}",
        "parts:",
        "  - caption: The course",
        "    chapters:",
        *[f"      - file: {page}" for page in COURSE_PAGES],
        "  - caption: Chapters and exercises",
        "    numbered: false",
        "    chapters:",
    ]
    for c in available():
        lines += [f"      - file: notebooks/{c.slug}", f"      - file: exercises/{c.slug}"]
    lines += [
        "  - caption: Reference",
        "    chapters:",
        *[f"      - file: {page}" for page in REFERENCE_PAGES],
        "  - caption: Solutions (answers to the exercises)",
        "    chapters:",
    ]
    for c in available():
        title = json.dumps(f"Answers — Chapter {c.number}: {c.title}", ensure_ascii=False)
        lines += [f"      - file: solutions/{c.slug}", f"        title: {title}"]
    return "\n".join(lines) + "\n"


README_BEGIN = "<!-- chapters: generated from src/transformer_workbook/chapters.py -->"
README_END = "<!-- end of chapters -->"


def readme_table() -> str:
    """The README's chapter table (Markdown), between its markers."""
    rows = ["| # | Chapter | Status |", "|---|---------|--------|"]
    for c in CHAPTERS:
        if c.available:
            rows.append(
                f"| {c.number} | [{c.title}]({c.notebook}) | available "
                f"([exercises]({c.exercises_notebook}), [solutions]({c.solutions_notebook})) |"
            )
        else:
            rows.append(f"| {c.number} | {c.title} | coming |")
    return "\n".join([README_BEGIN, *rows, README_END])


def with_readme_table(readme: str) -> str:
    """``readme`` with the text between its chapter markers replaced by :func:`readme_table`."""
    pattern = re.compile(re.escape(README_BEGIN) + r".*?" + re.escape(README_END), re.S)
    if not pattern.search(readme):
        raise ValueError(f"README has no chapter table between {README_BEGIN!r} and {README_END!r}")
    return pattern.sub(lambda _: readme_table(), readme, count=1)
