# The Transformer Workbook. `make test` and `make book` create .venv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
COMPAT := $(VENV)/compat-ipywidgets7
# The book serves its own MathJax (npm package, pinned in package-lock.json), so it
# works with no internet; book/_ext/tw_book.py copies it into the build.
NPM ?= npm
MATHJAX := node_modules/mathjax/es5/tex-mml-chtml.js
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
SOLUTIONS := $(sort $(wildcard solutions/*.ipynb))
EXERCISES := $(sort $(wildcard exercises/*.ipynb))
# Notebooks run on the CPU, two threads, reproducibly.
export OMP_NUM_THREADS ?= 2
# Threads that sleep while they wait: spinning ones stall badly on a busy machine.
export OMP_WAIT_POLICY ?= PASSIVE
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: help install test test-fast lint unit nbval colab nbval-here book lab notebooks links bench bench-grading test-latest clean

help:
	@echo "make test       lint, package tests (and every book page in Chromium), the notebooks"
	@echo "                run as on Colab with their outputs compared (nbval), strict book build"
	@echo "make test-fast  lint and the package tests without the slow grader, Colab and browser tests"
	@echo "make colab      only the notebooks, as on Colab (= make nbval)"
	@echo "make test-latest  package tests and notebooks against the newest releases (not in make test)"
	@echo "make book       build the HTML book into _build/html"
	@echo "make lab        JupyterLab, opening the first chapter"
	@echo "make notebooks  regenerate exercises/ from solutions/ and re-execute every notebook"
	@echo "make bench      speed benchmarks of the whole course, writes book/performance.md (not in make test)"
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

$(MATHJAX): package.json package-lock.json
	@command -v $(NPM) >/dev/null || { echo "make: npm is needed to build the book (it installs MathJax, so the book works offline): install Node.js (Debian: apt-get install npm)"; exit 1; }
	$(NPM) ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(MATHJAX)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks notebooks solutions exercises

unit: $(STAMP) $(MATHJAX)
	TW_REQUIRE_COMPAT=1 $(VENV)/bin/pytest -q -m "not colab" tests

# Every notebook run the way Colab runs it (a side environment with only Colab's
# packages, google.colab simulated, the setup cell installing the course from this
# working tree), its outputs compared with the stored ones: tests/test_colab_runtime.py.
# One execution per notebook does both.
nbval: $(STAMP)
	$(VENV)/bin/pytest -q -m colab tests/test_colab_runtime.py

colab: nbval

# The same comparison in .venv itself: quicker to start, not Colab-like.
nbval-here: $(STAMP)
	$(VENV)/bin/pytest -q --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
		--nbval-cell-timeout=120 -p no:cacheprovider notebooks solutions exercises

# Strict: warnings are errors, from a clean build (an incremental -W build can
# pass while old warnings stand). _build/screenshots (the browser test's) stays.
book: $(STAMP) $(MATHJAX)
	rm -rf _build/html _build/.doctrees _build/jupyter_execute
	$(VENV)/bin/jupyter-book build . --all -W -n --keep-going
	@echo "The book is at $(CURDIR)/_build/html/index.html"

# When every step passes, make test records how long it took (from the moment make
# started, the environment's creation included) in _build/make-test.json: make bench
# reports it (it cannot run make test within its own budget).
TEST_START := $(shell date +%s)
# The package tests and the Colab-like notebook runs go side by side (-j2): the tests
# spend much of their time waiting for kernels, browsers and the grader's workers, the
# notebooks mostly use one core; one after the other took 17 minutes on two idle cores.
# Each one's output appears when it ends (--output-sync). The book comes last.
test: lint $(STAMP) $(MATHJAX)
	@echo "make test: unit and nbval run side by side; each one's output appears when it ends"
	@$(MAKE) --no-print-directory -j2 --output-sync=target unit nbval
	@$(MAKE) --no-print-directory book
	@$(PY) benchmarks/record_make_test.py $(TEST_START)
	@echo "make test: all passed"

# The quick loop while developing: lint, then the tests that need neither the
# grader's kernels (marker slow), a browser (marker browser) nor the Colab-like
# environment (marker colab). make test runs all.
test-fast: lint
	TW_REQUIRE_COMPAT=1 $(VENV)/bin/pytest -q -m "not slow and not browser and not colab" tests

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

# Speed benchmarks of the whole course (benchmarks/run.py; not part of make test):
# writes book/performance.md and its figures, keeps the raw results in bench-results/
# (git-ignored). Under 10 minutes on two cores; run it twice to see the noise.
# Options: make bench BENCH_ARGS="--repeats 3" (python benchmarks/run.py --help).
bench: $(STAMP) $(MATHJAX)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

bench-grading: $(STAMP)
	$(PY) benchmarks/bench_grading.py

# Ahead of library rot (IPython 9 removed set_matplotlib_formats; pinned releases
# stop installing on new Pythons): the package tests and the notebooks against the
# newest release of everything but torch, in $(LATEST). Not part of make test:
# its result changes with every release.
LATEST := $(VENV)/latest
LATEST_PACKAGES := torch==2.13.0 numpy matplotlib ipywidgets ipython ipykernel jupyterlab \
	nbformat nbclient nbval pytest "jupyter-book>=1,<2" playwright PyYAML
test-latest: $(MATHJAX)
	test -x $(LATEST)/bin/python || $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager $(LATEST_PACKAGES) -e ".[grader]"
	$(LATEST)/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@$(LATEST)/bin/python -m pip list 2>/dev/null | grep -iE "^(numpy|matplotlib|ipywidgets|ipython|ipykernel|nbclient|nbval|jupyter-book|sphinx|myst-nb|pytest|torch) "
	$(LATEST)/bin/pytest -q -m "not colab" tests
	$(LATEST)/bin/pytest -q --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
		--nbval-cell-timeout=120 -p no:cacheprovider notebooks solutions exercises
	@echo "make test-latest: all passed"

clean:
	rm -rf _build
