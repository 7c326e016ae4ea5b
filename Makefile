# Two commands: `make demo` (the whole pipeline, offline, on simulated sample products) and
# `make test` (the test suite). Each creates .venv/ and installs what it needs on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/dagster_home

.PHONY: demo test bench ui clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(BIN)/python -m cloudgan_assets.demo

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_scene.py

ui: $(STAMP)
	$(BIN)/python -m cloudgan_assets.demo --init-home
	$(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf storage dagster_home userdata/product_store
