# Blood-cell classification book — `make book` builds it, `make test` tests it (see README).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

# Data and weights come from configuration. On the project's development/CI machines the real
# data sits beside the checkout; elsewhere set BLOODCELLS_DATA_DIR yourself (see README).
ifneq ($(wildcard ../shared/data/pbc_160px),)
export BLOODCELLS_DATA_DIR ?= $(abspath ../shared/data/pbc_160px)
endif
ifneq ($(wildcard ../shared/data/pbc_originals_sample),)
export BLOODCELLS_ORIGINALS_DIR ?= $(abspath ../shared/data/pbc_originals_sample)
endif
ifneq ($(wildcard ../shared/data/bccd),)
export BLOODCELLS_BCCD_DIR ?= $(abspath ../shared/data/bccd)
endif
ifneq ($(wildcard ../shared/weights),)
export KERAS_WEIGHTS_DIR ?= $(abspath ../shared/weights)
endif
export PATH := $(abspath $(BIN)):$(PATH)
export PYTHONHASHSEED := 0
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup book notebooks site test test-fast bench clean

setup: $(VENV)/.installed  ## create the virtual environment with the pinned stack

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

book: notebooks site  ## run every notebook on the full data (book mode), then build the site

notebooks: setup  ## execute every notebook with papermill in book mode (long: trains the models)
	$(BIN)/python tools/run_notebooks.py --mode book

site: setup  ## build the website from the executed notebooks (warnings are errors)
	$(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo "Site: $(CURDIR)/_build/html/index.html"

test: setup  ## unit tests, a smoke run of every notebook (nbval), and a book build
	$(BIN)/python -m pytest tests notebooks --nbval-lax -p no:cacheprovider

bench: setup  ## measure pipeline, training and inference speed; writes BENCHMARKS.md
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf _build outputs .pytest_cache
