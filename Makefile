# primus-bridge: `make demo` and `make test` set up .venv first when it is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PY          := $(VENV)/bin/python
PIP         := $(PY) -m pip
# Python 3.12: pyenv's 3.12.1 where pyenv has it (its `python3.12` shim fails unless selected), else python3.12.
PYENV_PY    := $(shell command -v pyenv >/dev/null 2>&1 && echo "$$(pyenv root)/versions/3.12.1/bin/python3.12")
PYTHON312   ?= $(if $(wildcard $(PYENV_PY)),$(PYENV_PY),python3.12)
STAMP       := $(VENV)/.setup-done
ENGINE      ?= hf
PYTEST_ARGS ?=
# make test / test-fast: two pytest-xdist workers; each module runs whole on one worker (its module fixtures are
# built once), the long ones first (tests/conftest.py orders them). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
XDIST_ARGS  := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

.PHONY: help setup demo test test-fast test-gpu lint clean
help:
	@echo "make demo   - fine-tune the tiny model on the shipped data (CPU), export, generate, report"
	@echo "make test   - run the test suite on $(TEST_WORKERS) workers (GPU tests are skipped without a GPU)"
	@echo "make test-fast - the unit tests only: no SLURM, no training runs, no multi-process workers (~1 min)"
	@echo "make setup  - create $(VENV) with Python 3.12 and the pinned dependencies (done by demo/test)"
	@echo "make lint   - ruff over the code and tests (the rules in pyproject.toml)"
	@echo "make test-gpu - only the gpu-marked tests (on a GPU machine)"

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@echo "== setup: Python 3.12 venv in $(VENV) (interpreter: $(PYTHON312))"
	@test -x $(PY) || $(PYTHON312) -m venv $(VENV)
	@echo "== setup: pip, wheel"
	@$(PIP) install -q --upgrade pip wheel
	@echo "== setup: project + pinned dependencies (constraints.txt)"
	@$(PIP) install -q -c constraints.txt -e ".[megatron,test,report,bench,logging]"
	@echo "== setup: megatron-bridge (--no-deps; its imports are in the [megatron] extra)"
	@$(PIP) install -q -c constraints.txt --no-deps megatron-bridge
	@touch $(STAMP)
	@echo "== setup: done ($(VENV))"

test: setup
	$(PY) -m pytest $(XDIST_ARGS) $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow and not gpu" $(XDIST_ARGS) $(PYTEST_ARGS)

test-gpu: setup
	$(PY) -m pytest -m gpu $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check primus_bridge tests recipes benchmarks

demo: setup
	$(PY) -m primus_bridge.demo --engine $(ENGINE)

clean:
	rm -rf .cache runs outputs .pytest_cache

# Container images (docker/images.mk) and other target groups live beside the code they build.
-include docker/images.mk
