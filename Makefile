# runledger: `make run` starts the server, `make test` runs every test tier.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-unit test-property test-integration test-e2e lint format bench bench-quick bench-tools clean

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
bench: install bench-tools
	$(BIN)/python scripts/bench.py

bench-quick: install bench-tools
	$(BIN)/python scripts/bench.py --quick

# Debian's wrk (the workers benchmark's load generator) and chromium (the dashboard's), when
# apt-get can install them; without them those benchmarks fall back or say what is missing.
bench-tools:
	@for tool in wrk chromium; do \
		command -v $$tool >/dev/null || ! command -v apt-get >/dev/null || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$tool >/dev/null 2>&1 || \
		echo "bench: could not install $$tool (apt-get install $$tool)"; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache
