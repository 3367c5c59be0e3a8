# mdp: two commands for a newcomer — `make run` and `make test`. Each sets itself up.
SHELL := /bin/bash
PYTHON ?= python3.11
# `make test PYTHON=python3.12` works with pyenv too: its `python3.12` shim fails unless a version is
# selected, so fall back to the newest matching interpreter under $(pyenv root)/versions.
PYTHON_EXE := $(shell $(PYTHON) -c 'import sys; print(sys.executable)' 2>/dev/null || \
	ls -d "$$(pyenv root 2>/dev/null)"/versions/$(patsubst python%,%,$(notdir $(PYTHON))).*/bin/$(notdir $(PYTHON)) \
	2>/dev/null | sort -V | tail -1)
# One virtual environment per interpreter: .venv for the default, .venv-python3.12 for PYTHON=python3.12.
VENV ?= $(if $(filter python3.11,$(PYTHON)),.venv,.venv-$(notdir $(PYTHON)))
BIN := $(VENV)/bin
STAMP := $(VENV)/.mdp-installed
KERNELS_STAMP := $(VENV)/.mdp-kernels
KERNELS_SOURCES := kernels/pyproject.toml kernels/CMakeLists.txt $(wildcard kernels/csrc/*) \
	$(wildcard kernels/python/mdp_kernels/*.py) scripts/build-kernels.sh
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export DO_NOT_TRACK := true
export SCARF_NO_ANALYTICS := true
export UNSTRUCTURED_DISABLE_NOTICE := 1
export HF_HUB_OFFLINE := 1

.PHONY: setup setup-cuda run test ui bench bench-quick lint doctor clean dagster-home services

$(BIN)/python:
	@test -n "$(PYTHON_EXE)" || { echo "no interpreter for PYTHON=$(PYTHON) (on PATH or under pyenv)" >&2; exit 1; }
	$(PYTHON_EXE) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel

$(STAMP): pyproject.toml packaging/en_core_web_sm/pyproject.toml examples/mdp-parser-example/pyproject.toml scripts/system-deps.sh | $(BIN)/python
	./scripts/system-deps.sh
	$(BIN)/pip install -q -e '.[dev]' ./packaging/en_core_web_sm -e ./examples/mdp-parser-example
	touch $(STAMP)

# The fused CPU kernels, compiled here against the venv's MLX; a failed build falls back (never fails).
$(KERNELS_STAMP): $(STAMP) $(KERNELS_SOURCES)
	./scripts/build-kernels.sh $(BIN)/python
	touch $(KERNELS_STAMP)

dagster-home:
	@mkdir -p $(DAGSTER_HOME)
	@cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

setup: $(STAMP) $(KERNELS_STAMP) dagster-home

# MLX's CUDA backend (Linux + NVIDIA driver for CUDA 13). mlx-cpu and mlx-cuda-13 both ship
# mlx/lib/libmlx.so: the CUDA wheel is reinstalled last so that its library is the one loaded.
setup-cuda: setup
	@test "$$(uname -s)" = Linux || { echo "setup-cuda is for Linux with an NVIDIA GPU; Metal needs nothing extra" >&2; exit 1; }
	$(BIN)/pip install -q -e '.[dev,cuda]'
	$(BIN)/pip install -q --force-reinstall --no-deps "mlx-cuda-13==$$($(BIN)/python -c 'from importlib.metadata import version; print(version("mlx"))')"
	$(BIN)/mdp doctor || true

run: setup
	$(BIN)/mdp run

# PostgreSQL on 127.0.0.1 and Debian's Chromium for the operations tests (needs root; else they skip).
services:
	@./scripts/ci-services.sh >/dev/null || echo "services: could not start PostgreSQL/Chromium; their tests will skip" >&2

test: setup services
	$(BIN)/pytest -q

ui: setup
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

bench: setup
	$(BIN)/mdp bench

bench-quick: setup
	$(BIN)/mdp bench --quick

lint: setup
	$(BIN)/ruff check .

doctor: setup
	$(BIN)/mdp doctor

clean:
	rm -rf var .dagster_home .pytest_cache
