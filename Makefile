# Two commands for a fresh clone: `make run` (the pipeline) and `make test` (lint + tests).
# Both create .venv with the pinned dependencies first. Nothing here needs the network
# beyond the package index: data comes from a mirror or the embedded sample.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
PIP := "$(BIN)/python" -m pip --disable-pip-version-check --quiet
# Stage commands in dvc.yaml run `python`: make it the venv's.
export PATH := $(BIN):$(PATH)

.PHONY: help venv run serve preset test test-fast coverage lint format validate audit ci clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): requirements.lock pyproject.toml
	test -x "$(BIN)/python" || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.lock
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $@

venv: $(STAMP)  ## create .venv with the pinned dependencies

run: $(STAMP)  ## run the pipeline (dvc repro) and show the metrics (dvc metrics show)
	"$(BIN)/dvc" repro
	"$(BIN)/dvc" metrics show

# The trained model (models/model.onnx, written by `make run`) over HTTP on 127.0.0.1 with
# a draw-a-digit page; PORT=8001 for another port.
serve: $(STAMP)  ## serve the model on http://127.0.0.1:8000/ (draw a digit; POST /predict)
	"$(BIN)/python" -m mnist_pipeline serve --port $(or $(PORT),8000)

# `make preset P=cnn ARGS="-S data.dataset=fashion-mnist -S data.source=mirror
# -S data.mirror=/usr/share/datasets/fashion-mnist"`: ARGS go to `dvc exp run` as they are.
# P reaches the command as one word, its text unexpanded by make or the shell.
override P := $(value P)
export P
preset: $(STAMP)  ## run a presets.yaml preset as a DVC experiment: P=<name> [ARGS="<dvc exp run args>"]
	PYTHONPATH="$(CURDIR)/src" "$(BIN)/python" -m mnist_pipeline preset "$$P" $(ARGS)

# Two pytest workers (one per core here). A module's tests stay on one worker, so its
# module-scoped fixtures (a trained model, a server) are built once, except the modules
# tests/conftest.py spreads test by test (SPREAD); the reproduced pipeline is built once
# per session for both. The ten slowest tests are listed at the end, so a new slow one
# shows the day it lands.
test: $(STAMP)  ## ruff (lint + format check) and the whole pytest suite
	"$(BIN)/ruff" check .
	"$(BIN)/ruff" format --check .
	"$(BIN)/python" -m pytest -n 2 --dist loadgroup --durations=10

test-fast: $(STAMP)  ## pytest without the slow tests: the loop for everyday edits
	"$(BIN)/python" -m pytest -n 2 --dist loadgroup -m "not slow"

# [tool.coverage] in pyproject.toml: the stage and tool processes the tests start count too.
coverage: $(STAMP)  ## the whole pytest suite with line coverage of src/mnist_pipeline
	"$(BIN)/python" -m pytest -n 2 --dist loadgroup --cov --cov-report=term-missing:skip-covered

lint: $(STAMP)  ## ruff only
	"$(BIN)/ruff" check .
	"$(BIN)/ruff" format --check .

format: $(STAMP)  ## apply ruff's fixes and formatting
	"$(BIN)/ruff" check --fix .
	"$(BIN)/ruff" format .

# PYTHONPATH: validate this checkout's code. Whether dvc.lock is up to date: `dvc status`.
validate: $(STAMP)  ## check each stage's deps and params.yaml; one line per problem
	PYTHONPATH="$(CURDIR)/src" "$(BIN)/python" -m mnist_pipeline validate

# zizmor (pinned in requirements.lock) audits the workflow offline: actions pinned to
# commit SHAs, no persisted checkout credentials, no template injection.
audit: $(STAMP)  ## audit .github/workflows with zizmor (offline)
	"$(BIN)/zizmor" --offline .github/workflows/pipeline.yml

# The CI job (.github/workflows/pipeline.yml runs the same steps): the tests, a smoke run in a
# throwaway clone, so this checkout and its `git status` stay as they were; then the
# offline-plots test in headless Chromium (.ci/plots.sh installs chromium where it can).
ci: validate audit test  ## validate, audit the workflow, lint + tests, smoke-run the pipeline (embedded data, 2 epochs), diff vs CI_BASE, render plots offline
	.ci/pipeline.sh
	.ci/plots.sh

clean:  ## remove the venv and pipeline outputs (the DVC cache stays)
	rm -rf $(VENV) data models reports .pytest_cache .ruff_cache .coverage .coverage.*
