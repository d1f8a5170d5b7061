# Kiln developer entry points. Everything installs into .venv/ at the repo root.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# `make test` runs the tests in this many processes (pytest-xdist; all of a file's tests in one, so a module's
# fixtures are built once). Most of a test's time is single-threaded (graph tracing, ONNX conversion, process
# start-up), so two processes take about a third off the suite's time on 2 cores.
TEST_WORKERS ?= 2

.PHONY: install demo test test-fast lint bench bench-data bench-quality bench-label-flips bench-image-recipe bench-text-recipe bench-predict bench-render k8s-check clean

# Re-install only when the dependency list changes.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Kiln needs Python 3.11, found {sys.version.split()[0]}; set PYTHON=/path/to/python3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[train,k8s,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/kiln demo --workdir .kiln/demo

# Tests marked `serial` bound the server's latency under load, so they run afterwards, alone (tests/conftest.py's
# --phase; exit code 5: PYTEST_ARGS selected no test of that phase).
test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --phase parallel $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(BIN)/python -m pytest --phase serial $(PYTEST_ARGS) || [ $$? -eq 5 ]

test-fast: install
	$(BIN)/python -m pytest -m "not slow and not e2e" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile

# Each benchmark writes its JSON under docs/bench/ and re-renders docs/BENCHMARKS.md from all of them (bench-render
# does only the rendering). bench: the sample models, their variants and the HTTP service, then the data pipeline
# (50,000 generated JPEGs) and quality (every data set against a classic peer, default and tuned; hours on 2 cores).
QUALITY_TRIALS ?= 5
BENCH_DIR := docs/bench
bench: install
	$(BIN)/python -m bench.serving --out $(BENCH_DIR)/training.json --http-out $(BENCH_DIR)/http.json
	$(BIN)/python -m bench.data_pipeline --out $(BENCH_DIR)/data_pipeline.json
	$(BIN)/python -m bench.quality --trials $(QUALITY_TRIALS) --out $(BENCH_DIR)/quality.json

bench-quality: install
	$(BIN)/python -m bench.quality --trials $(QUALITY_TRIALS) --out $(BENCH_DIR)/quality.json

# The label audit against 5% planted flips on every set; report vs exclude runs on two image and two text sets.
LABEL_FLIP_RUNS ?= notmnist sample_digits subj snips
bench-label-flips: install
	$(BIN)/python -m bench.label_flips --runs $(LABEL_FLIP_RUNS) --out $(BENCH_DIR)/label_flips.json

# Image training recipes (the previous default, one change at a time, the current default) on Kiln's own splits
# of the image sets' train files: how the image training defaults were chosen (issue 17).
bench-image-recipe: install
	$(BIN)/python -m bench.image_recipe --out $(BENCH_DIR)/image_recipe.json

# Text training recipes on Kiln's own splits of the text sets' train files: how text training defaults are chosen.
bench-text-recipe: install
	$(BIN)/python -m bench.text_recipe --out $(BENCH_DIR)/text_recipe.json

# `kiln predict` on 1,000,000 short texts and 100,000 small images against ONNX Runtime alone (issue 21).
bench-predict: install
	$(BIN)/python -m bench.predict --out $(BENCH_DIR)/predict.json

bench-data: install
	$(BIN)/python -m bench.data_pipeline --out $(BENCH_DIR)/data_pipeline.json

bench-render: install
	$(BIN)/python -m bench.render --dir $(BENCH_DIR) --out docs/BENCHMARKS.md

# Render each Kubernetes overlay and the multi-worker training Job with kustomize, and the Job the work pool's worker
# makes for a scheduled retrain with prefect-kubernetes' own code (flows/pool_job.py); validate every object against
# the Kubernetes schema offline, and run checkov (zero failures; each waiver is an annotation with its reason next
# to the resource). Run by .ci/run after the tests.
K8S_VENV := .venv-k8s
K8S_STAMP := $(K8S_VENV)/.installed
K8S_VERSION ?= 1.31.0
# monitoring (a PrometheusRule, a CRD the validators have no schema for) is only rendered here; tests/test_deploy.py
# checks its structure, its PromQL and the metric names it reads.
OVERLAYS := overlays/cpu overlays/gpu multi-worker monitoring dask
$(K8S_STAMP): deploy/k8s/check-requirements.txt
	$(PYTHON) -m venv $(K8S_VENV)
	$(K8S_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(K8S_VENV)/bin/python -m pip install --quiet -r deploy/k8s/check-requirements.txt
	touch $(K8S_STAMP)

k8s-check: $(K8S_STAMP) install
	@mkdir -p .kiln/k8s
	@for kustomization in $(OVERLAYS); do \
		kubectl kustomize deploy/k8s/$$kustomization > .kiln/k8s/$$(basename $$kustomization).yaml || exit 1; \
	done
	@$(BIN)/python -m flows.pool_job --template deploy/k8s/retraining/work-pool-job-template.json \
		--worker deploy/k8s/retraining/prefect-worker.yaml --out .kiln/k8s/pool-job.yaml
	@# The pool Job is checked beside the overlay it runs in (its NetworkPolicy is there).
	@for rendered in cpu gpu multi-worker "pool-job cpu" dask; do \
		set -- $$rendered; echo "== $$1"; \
		$(K8S_VENV)/bin/kubernetes-validate --strict --quiet -k $(K8S_VERSION) .kiln/k8s/$$1.yaml || exit 1; \
		BC_SKIP_MAPPING=TRUE $(K8S_VENV)/bin/checkov $$(for f in "$$@"; do echo "-f .kiln/k8s/$$f.yaml"; done) --framework kubernetes \
			--compact --quiet --skip-download || exit 1; \
	done

clean:
	rm -rf .kiln .pytest_cache .mypy_cache .ruff_cache
