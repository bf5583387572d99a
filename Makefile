# The Transformer Workbook. `make test` and `make book` create .venv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
COMPAT := $(VENV)/compat-ipywidgets7
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
SOLUTIONS := $(sort $(wildcard solutions/*.ipynb))
EXERCISES := $(sort $(wildcard exercises/*.ipynb))
# Notebooks run on the CPU, two threads, reproducibly.
export OMP_NUM_THREADS ?= 2
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: help install test test-fast lint unit nbval book lab notebooks links bench bench-grading clean

help:
	@echo "make test       lint, package tests, notebook tests (nbval), strict book build"
	@echo "make test-fast  lint and the package tests without the slow grader and browser tests"
	@echo "make book       build the HTML book into _build/html"
	@echo "make lab        JupyterLab, opening the first chapter"
	@echo "make notebooks  regenerate exercises/ from solutions/ and re-execute every notebook"
	@echo "make bench      speed benchmarks: attention, checks, notebooks (not part of make test)"
	@echo "make bench-grading  grade 100 submissions with --jobs 1 and 2 (a few minutes)"

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@# Colab ships ipywidgets 7.7.1: the widgets are also tested against it,
	@# from a side folder (tests/test_colab_compat.py), without touching .venv's 8.x.
	rm -rf $(COMPAT)
	$(PY) -m pip install -q --no-deps --target $(COMPAT) ipywidgets==7.7.1 ipython_genutils==0.2.0
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks notebooks solutions exercises

unit: $(STAMP)
	TW_REQUIRE_COMPAT=1 $(VENV)/bin/pytest -q tests

nbval: $(STAMP)
	$(VENV)/bin/pytest -q --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
		--nbval-cell-timeout=120 -p no:cacheprovider notebooks solutions exercises

# Strict: warnings are errors, from a clean _build (an incremental -W build can
# pass while old warnings stand).
book: $(STAMP)
	rm -rf _build
	$(VENV)/bin/jupyter-book build . --all -W -n --keep-going
	@echo "The book is at $(CURDIR)/_build/html/index.html"

test: lint unit nbval book
	@echo "make test: all passed"

# The quick loop while developing: lint, then the tests that need neither the
# grader's kernels (marker slow) nor a browser (marker browser). make test runs all.
test-fast: lint
	TW_REQUIRE_COMPAT=1 $(VENV)/bin/pytest -q -m "not slow and not browser" tests

# Opens the first chapter of the table of chapters (src/transformer_workbook/chapters.py).
lab: $(STAMP)
	$(VENV)/bin/jupyter lab "$$($(PY) -c 'from transformer_workbook.chapters import first; print(first().notebook)')"

notebooks: $(STAMP)
	$(PY) -m transformer_workbook notebooks links
	$(PY) -m transformer_workbook notebooks toc
	$(PY) -m transformer_workbook notebooks generate
	$(PY) -m transformer_workbook notebooks execute $(NOTEBOOKS) $(SOLUTIONS) $(wildcard exercises/*.ipynb)

links: $(STAMP)
	$(PY) -m transformer_workbook notebooks links

bench: $(STAMP)
	$(PY) benchmarks/run.py

bench-grading: $(STAMP)
	$(PY) benchmarks/bench_grading.py

clean:
	rm -rf _build
