# frugalml: `make run` trains the default chain on the real corpus; `make test` runs the test suite.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false

.PHONY: install run test test-fast guardrails bench ui server lint clean

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	# torch first, pinned: a CPU build here; an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the pinned dependencies

run: install  ## fetch the corpus and run the whole default chain (one MLflow run)
	$(BIN)/kedro run

test: guardrails  ## guardrails, then the whole test suite, benchmark smoke runs included (what CI runs)
	$(BIN)/python -m pytest -q tests

test-fast: guardrails  ## guardrails, then the tests not marked slow (minutes instead of a quarter hour)
	$(BIN)/python -m pytest -q -m "not slow" tests

guardrails: install  ## formatting, lint (complexity rules on), import contracts, types
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: install  ## every benchmark on the full corpus (see docs/benchmarks.md)
	$(BIN)/python -m benchmarks.baseline
	$(BIN)/python -m benchmarks.quality
	$(BIN)/python -m benchmarks.audit
	$(BIN)/python -m benchmarks.privacy
	$(BIN)/python -m benchmarks.weak_labels
	$(BIN)/python -m benchmarks.cleaning
	$(BIN)/python -m benchmarks.generality
	$(BIN)/python -m benchmarks.efficiency
	$(BIN)/python -m benchmarks.compression
	$(BIN)/python -m benchmarks.kernels

ui: install  ## the MLflow UI on http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --host 127.0.0.1 --port 5000

server: install  ## MLflow basic-auth server on loopback; needs FRUGALML_ADMIN_PASSWORD (see docs/server.md)
	@test -n "$$FRUGALML_ADMIN_PASSWORD" || { echo "set FRUGALML_ADMIN_PASSWORD (no default password)"; exit 1; }
	$(BIN)/python -m frugalml.governance.server start

lint: guardrails  ## the same checks as guardrails

clean:
	rm -rf data/0*/* mlruns/* .pytest_cache
