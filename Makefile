# runledger: `make run` starts the server, `make test` runs every test tier.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-unit test-property test-integration test-e2e lint format bench bench-quick clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/runledger serve

test: install
	$(BIN)/python -m pytest tests

test-unit: install
	$(BIN)/python -m pytest tests/unit

test-property: install
	$(BIN)/python -m pytest tests/property

test-integration: install
	$(BIN)/python -m pytest tests/integration

test-e2e: install
	$(BIN)/python -m pytest tests/e2e

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Every benchmark, both stores, into bench-results/ (markdown and JSON); bench-quick: < 2 min.
bench: install
	$(BIN)/python scripts/bench.py

bench-quick: install
	$(BIN)/python scripts/bench.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache
