# panoptes: `make demo` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED_ASSETS := $(abspath ../shared/assets)
# Tests and the demo read the shared models when they are there (no download needed).
ifneq ($(wildcard $(SHARED_ASSETS)/models),)
export PANOPTES_MODEL_PATH ?= $(SHARED_ASSETS)/models
endif
DEMO_VIDEOS := $(if $(wildcard $(SHARED_ASSETS)/videos),--videos $(SHARED_ASSETS)/videos)

.PHONY: setup demo test test-all check bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/panoptes demo $(DEMO_VIDEOS)

test: setup
	$(BIN)/python -m pytest

test-all: setup
	$(BIN)/python -m pytest -m "not gpu"

check: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: setup
	$(BIN)/python benchmarks/cpu_pipeline.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
