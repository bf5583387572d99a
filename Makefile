# The Transformer Workbook. `make test` and `make book` create .venv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
SOLUTIONS := $(sort $(wildcard solutions/*.ipynb))
EXERCISES := $(sort $(wildcard exercises/*.ipynb))
# Notebooks run on the CPU, two threads, reproducibly.
export OMP_NUM_THREADS ?= 2
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: help install test lint unit nbval book lab notebooks links bench clean

help:
	@echo "make test       lint, package tests, notebook tests (nbval), strict book build"
	@echo "make book       build the HTML book into _build/html"
	@echo "make lab        JupyterLab on the notebooks"
	@echo "make notebooks  regenerate exercises/ from solutions/ and re-execute every notebook"
	@echo "make bench      speed benchmarks (not part of make test)"

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests notebooks solutions exercises

unit: $(STAMP)
	$(VENV)/bin/pytest -q tests

nbval: $(STAMP)
	$(VENV)/bin/pytest -q --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg \
		--nbval-cell-timeout=120 -p no:cacheprovider notebooks solutions exercises

# Strict: warnings are errors, from a clean _build (an incremental -W build can
# pass while old warnings stand).
book: $(STAMP)
	rm -rf _build
	$(VENV)/bin/jupyter-book build . --all -W -n --keep-going
	@echo "The book is at $(CURDIR)/_build/html/index.html"

test: lint unit nbval book
	@echo "make test: all passed"

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

notebooks: $(STAMP)
	$(PY) -m transformer_workbook notebooks links
	$(PY) -m transformer_workbook notebooks generate
	$(PY) -m transformer_workbook notebooks execute $(NOTEBOOKS) $(SOLUTIONS) $(wildcard exercises/*.ipynb)

links: $(STAMP)
	$(PY) -m transformer_workbook notebooks links

bench: $(STAMP)
	$(PY) benchmarks/run.py

clean:
	rm -rf _build
