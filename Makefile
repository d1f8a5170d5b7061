# Kiln developer entry points. Everything installs into .venv/ at the repo root.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test test-fast lint bench bench-data bench-quality clean

# Re-install only when the dependency list changes.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Kiln needs Python 3.11, found {sys.version.split()[0]}; set PYTHON=/path/to/python3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[train,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/kiln demo --workdir .kiln/demo

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow and not e2e" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

# The full benchmark rewrites docs/BENCHMARKS.md; bench-data (50,000 generated JPEGs) and bench-quality
# (every data set against a classic peer, default and tuned; hours on 2 cores) add their sections.
QUALITY_TRIALS ?= 5
bench: install
	$(BIN)/python -m flows.bench --out docs/BENCHMARKS.md
	$(BIN)/python -m flows.bench_data --out docs/BENCHMARKS.md
	$(BIN)/python -m flows.bench_quality --trials $(QUALITY_TRIALS) --out docs/BENCHMARKS.md

bench-quality: install
	$(BIN)/python -m flows.bench_quality --trials $(QUALITY_TRIALS) --out docs/BENCHMARKS.md

bench-data: install
	$(BIN)/python -m flows.bench_data --out docs/BENCHMARKS.md

clean:
	rm -rf .kiln .pytest_cache .mypy_cache .ruff_cache
