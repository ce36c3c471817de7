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
# Air-gapped machines: a script that puts Keras' official VGG19 file into Keras' cache (see README).
VGG19_FETCH ?= $(wildcard $(KERAS_WEIGHTS_DIR)/fetch_vgg19_imagenet.sh)
export PATH := $(abspath $(BIN)):$(PATH)
export PYTHONHASHSEED := 0
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: ablation transfer-spread transfer-spread-full weights setup book notebooks site test test-fast lint bench bench-determinism bench-transfer-recipes label-efficiency demo screenshot reproduce clean browser fresh-install-check

setup: $(VENV)/.installed  ## create the virtual environment with the pinned stack

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

book: notebooks site  ## run every notebook on the full data (book mode), then build the site

weights:  ## air-gapped machines: put the official VGG19 ImageNet file into Keras' cache, if a fetch script is configured
	@if [ -n "$(VGG19_FETCH)" ]; then bash "$(VGG19_FETCH)"; \
	else echo "weights: no VGG19 fetch script configured; Keras downloads the ImageNet files itself when online"; fi

notebooks: setup weights  ## execute every notebook with papermill in book mode (long: trains the models)
	$(BIN)/python tools/run_notebooks.py --mode book

site: setup  ## build the website from the executed notebooks (warnings are errors)
	$(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo "Site: $(CURDIR)/_build/html/index.html"

# Two pytest-xdist workers: the notebooks run in order on one of them while the tests share the other
# (conftest.py groups them); TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: setup browser lint  ## lint, unit tests, a smoke run of every notebook (nbval), and a book build
	BLOODCELLS_TEST_FULL_SCAN=1 $(BIN)/python -m pytest notebooks tests -n $(TEST_WORKERS) --dist loadgroup --nbval-lax --nbval-cell-timeout=900 -p no:cacheprovider --durations=15

test-fast: setup lint  ## lint and the unit tests that train nothing (no notebooks, no book build)
	$(BIN)/python -m pytest tests -m "not slow" --ignore=tests/test_site.py --ignore=tests/test_book.py -p no:cacheprovider

lint: setup  ## ruff over the helpers, tests, benchmarks and tools (pyproject.toml), and the chapters at 80 columns (notebooks/ruff.toml)
	$(BIN)/ruff check src tests benchmarks tools conftest.py
	$(BIN)/ruff check notebooks

browser:  ## install Debian's chromium for the browser test of the site (tests/test_site.py), where we can
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	  || echo "browser: apt-get install chromium failed: tests/test_site.py will be skipped"; \
	else echo "browser: no /usr/bin/chromium (and not root with apt-get): tests/test_site.py will be skipped"; fi

bench: setup  ## measure pipeline, training and inference speed; writes BENCHMARKS.md
	$(BIN)/python benchmarks/run.py

bench-determinism: setup  ## what TensorFlow's op determinism costs per epoch and whether two runs then agree
	$(BIN)/python benchmarks/determinism_bench.py --out benchmarks/DETERMINISM.md

bench-transfer-recipes: setup  ## transfer recipes on this CPU: minutes against validation accuracy (CANDIDATES="resnet50_64_e2e ...")
	$(BIN)/python benchmarks/transfer_recipes.py $(if $(CANDIDATES),--candidates $(CANDIDATES))

label-efficiency: setup  ## where transfer pays: scratch CNN vs fine-tuned MobileNetV2 on 10-500 images per class, 3 seeds (resumable; results/label_efficiency/)
	$(BIN)/python tools/label_efficiency.py $(LE_ARGS)

transfer-spread: setup  ## chapters 4-6: each transfer recipe from 3 seeds on a capped split (resumable; results/spread/)
	$(BIN)/python tools/transfer_spread.py $(SPREAD_ARGS)

transfer-spread-full: setup  ## chapter 6's recipe (MobileNetV2) from 3 seeds on the whole split, ~25 min a seed (resumable; results/spread/full/)
	$(BIN)/python tools/transfer_spread.py --full --families mobilenetv2 $(SPREAD_ARGS)

ablation: setup  ## chapter 3's ablation at the recipe's budget: recipe, - dropout, - augmentation x 3 seeds (resumable; results/ablation/)
	$(BIN)/python tools/ablation.py $(ABLATION_ARGS)

fresh-install-check: setup  ## a reader's first run: fresh venv with the oldest declared TensorFlow/Keras, the setup cell installs the helpers from a tagged clone, no data or weights (downloads served on 127.0.0.1), chapters 1-6 alone in smoke mode, 7 and 8 alone in book mode from the tag's results (their glued values = the committed ones); <= 15 min (FRESH_ARGS=--latest: the newest stack)
	$(BIN)/python tools/fresh_install_check.py $(FRESH_ARGS)

CHAPTER ?=
REPRO_OUT ?= $(CURDIR)/outputs/reproduce
# REPRO_COLLECT=benchmarks/REPRODUCE.md also puts the comparison into the collected report (its chapter's section)
REPRO_COLLECT ?=
reproduce: setup weights  ## re-run chapter(s) CHAPTER=03 in book mode into outputs/reproduce; compare with results/ (never written)
	$(BIN)/python tools/reproduce.py --mode book --out $(REPRO_OUT) --records results --report $(REPRO_OUT)/report.md $(if $(REPRO_COLLECT),--collect $(REPRO_COLLECT)) $(CHAPTER)

demo: setup  ## the web app on http://127.0.0.1:7860 with the served model (make bench), else the published best (BUNDLE=outputs/models/<name> for another)
	$(BIN)/python -m helpers.app $(BUNDLE)

SCREENSHOT_BUNDLE ?= $(firstword $(wildcard outputs/models/served) outputs/models/best)
screenshot: setup  ## book/images/app.png: the web app serving SCREENSHOT_BUNDLE (default: the served model, else the published best) on a PBC cell
	$(BIN)/python tools/app_screenshot.py $(SCREENSHOT_BUNDLE) --out book/images/app.png

clean:
	rm -rf _build outputs .pytest_cache
