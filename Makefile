# The README's two commands are `make serve` and `make test`; everything else is a helper.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# make serve HOST=0.0.0.0 PORT=9000 (or ALGOSPEAK_HOST / ALGOSPEAK_PORT, as the image uses)
HOST   ?= $(or $(ALGOSPEAK_HOST),127.0.0.1)
PORT   ?= $(or $(ALGOSPEAK_PORT),8000)
# One single-threaded worker process per CPU: the layout measured fastest (README: Performance).
WORKERS ?= $(or $(ALGOSPEAK_WORKERS),$(shell nproc 2>/dev/null || echo 1))

# Models live under $ALGOSPEAK_HOME/models (artifacts/locations.py): for make, this checkout.
export ALGOSPEAK_HOME ?= $(CURDIR)

.PHONY: serve worker model test lint format bench base image-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# One stamp per set of extras: reinstalls when pyproject.toml changes.
$(VENV)/.serve: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[serve]'
	touch $@

# torch first, pinned, so pip takes the CPU wheel on a CPU machine instead of a CUDA build.
TORCH ?= torch==2.13.0

# What building the default model needs: training and conversion on top of serving.
$(VENV)/.build: pyproject.toml | $(BIN)/python
	$(BIN)/pip install '$(TORCH)'
	$(BIN)/pip install -e '.[serve,train,convert]'
	touch $@ $(VENV)/.serve

$(VENV)/.dev: $(VENV)/.build
	$(BIN)/pip install -e '.[serve,train,convert,dev]'
	touch $@

# Serves ALGOSPEAK_MODEL_PATH when set; otherwise the shipped default model: the base from its
# package with the adapter in models/default merged in, prepared once (no training, no torch).
serve: $(VENV)/.serve
	@if [ -z "$$ALGOSPEAK_MODEL_PATH" ]; then $(BIN)/python -m artifacts.shipped >/dev/null; fi
	ALGOSPEAK_HOST=$(HOST) ALGOSPEAK_PORT=$(PORT) ALGOSPEAK_WORKERS=$(WORKERS) $(BIN)/python -m service

# The moderation-queue worker (README: Moderation queue worker): serving plus the redis client.
$(VENV)/.worker: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[serve,worker]'
	touch $@ $(VENV)/.serve

# Classifies posts from the Redis at ALGOSPEAK_REDIS_URL (default redis://127.0.0.1:6379/0) with
# the same model as `make serve`, until SIGTERM or Ctrl-C.
worker: $(VENV)/.worker
	@if [ -z "$$ALGOSPEAK_MODEL_PATH" ]; then $(BIN)/python -m artifacts.shipped >/dev/null; fi
	$(BIN)/python -m service.worker

# Retrain the shipped default model from scratch (hours on 2 cores; an interrupted run resumes
# from its last checkpoint) and write models/default/: adapter, manifest, report.
model: $(VENV)/.build
	$(BIN)/python -m recipes.default_model

test: $(VENV)/.dev
	$(BIN)/pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Every benchmark runs; the target fails at the end if any missed its goal.
BENCHES := normalize normalize_quality train convert load classify calibration worker backfill
bench: $(VENV)/.dev
	@status=0; for name in $(BENCHES); do \
		echo "== bench/$$name.py"; $(BIN)/python bench/$$name.py || status=1; \
	done; exit $$status

# The image and the compose stack built and run for real (deploy/image-test.sh): needs root and
# Debian's docker.io, docker-compose and debootstrap; starts a Docker engine if none runs.
image-test: $(VENV)/.serve
	VENV_PYTHON=$(BIN)/python bash deploy/image-test.sh

# Fetch the SmolLM2 base GGUF (sha256-checked) into models/bases/; prints its path.
base: $(VENV)/.serve
	$(BIN)/python -m artifacts.bases fetch smollm2-135m-instruct

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
