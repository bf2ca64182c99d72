# The two commands: `make run` and `make test`. Both set up .venv from the pinned requirements.
# `make bench` (QUICK=1 for a smoke run) measures the API against its limits; see docs/performance.md.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
BENCH := $(VENV)/.installed-bench
# wrk and redis-server are Debian packages; root installs them directly, anyone else through sudo.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: run test lint format install install-dev redis-server bench indexes seed soak clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(RUNTIME): $(BIN)/python requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(RUNTIME)

$(DEV): $(RUNTIME) requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(DEV)

$(BENCH): $(DEV) requirements-bench.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $(BENCH)

install: $(RUNTIME)

install-dev: $(DEV)

run: install
	$(BIN)/python -m chat_api

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The suite starts Redis servers of its own (tests/redis_server.py), never the one on 6379: only the binary is needed.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server; }

test: lint redis-server
	$(BIN)/python -m pytest

bench: $(BENCH) redis-server
	@command -v wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }
	$(BIN)/python -m bench.run $(if $(filter-out 0,$(QUICK)),--quick)

indexes: install
	$(BIN)/python -m scripts.indexes status

seed: install
	$(BIN)/python -m scripts.seed --users $(or $(USERS),1000)

# Ten minutes of mixed traffic against a fresh app; SOAK_SECONDS to change it.
soak: install-dev
	$(BIN)/python -m tests.soak --duration $(or $(SOAK_SECONDS),600)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
