# Two commands: `make demo` (the whole pipeline, offline, on simulated sample products) and
# `make test` (the test suite). Each creates .venv/ and installs what it needs on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/dagster_home
# Where pip takes torch from. Empty (default): PyPI, which serves the CUDA build on x86_64 Linux
# (about 5.5 GB in the venv). A CPU-only machine can take PyTorch's own CPU wheels instead (a few
# hundred MB): make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
# Port of the Dagster UI started by `make ui`.
UI_PORT ?= 3000
# `dagster dev` warns that it is superseded by `dg dev`, which needs the separate dagster-dg-cli
# package and a dg project; `dagster dev -w workspace.yaml` is what this project runs, so the hint is
# filtered (by the start of its message).
NO_DG_HINT := ignore:Function `dev_command` is superseded

.PHONY: demo test bench ui clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
ifneq ($(strip $(TORCH_INDEX)),)
	$(BIN)/python -m pip install -q --index-url $(TORCH_INDEX) 'torch>=2.4' 'torchvision>=0.19'
endif
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(BIN)/python -m cloudgan_assets.demo

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_scene.py
	$(BIN)/python benchmarks/bench_render.py --full

ui: $(STAMP)
	$(BIN)/python -m cloudgan_assets.demo --init-home
	PYTHONWARNINGS="$${PYTHONWARNINGS:+$$PYTHONWARNINGS,}"'$(NO_DG_HINT)' $(BIN)/dagster dev -w workspace.yaml -p $(UI_PORT)

clean:
	rm -rf storage dagster_home userdata/product_store
