# The two commands: `make run` and `make test`. Both set up .venv from the pinned requirements.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev

.PHONY: run test lint format install install-dev indexes seed soak clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(RUNTIME): $(BIN)/python requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(RUNTIME)

$(DEV): $(RUNTIME) requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(DEV)

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

test: lint
	$(BIN)/python -m pytest

indexes: install
	$(BIN)/python -m scripts.indexes status

seed: install
	$(BIN)/python -m scripts.seed --users $(or $(USERS),1000)

# Ten minutes of mixed traffic against a fresh app; SOAK_SECONDS to change it.
soak: install-dev
	$(BIN)/python -m tests.soak --duration $(or $(SOAK_SECONDS),600)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
