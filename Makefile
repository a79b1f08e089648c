# runledger: `make run` starts the server, `make test` runs every test tier.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-unit test-property test-integration test-e2e lint format bench bench-quick bench-tools bench-wrk bench-chromium clean

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

bench-quick: install bench-wrk
	$(BIN)/python scripts/bench.py --quick

# Debian's wrk (the workers benchmark's load generator) and chromium (the dashboard's), when
# apt-get can install them; without them those benchmarks fall back (to Python clients) or
# report the missing browser.
bench-tools: bench-wrk bench-chromium

bench-wrk:
	@command -v wrk >/dev/null || $(call apt_install,wrk)

bench-chromium:
	@[ -x /usr/bin/chromium ] || $(call apt_install,chromium)

# Install a Debian package if apt-get is there (updating its lists if the first try fails);
# say so when it cannot.
define apt_install
{ ! command -v apt-get >/dev/null || { echo "bench: installing $(1) with apt-get"; \
  export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q $(1) >/dev/null 2>&1 || \
  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $(1) >/dev/null 2>&1; }; } \
  || echo "bench: could not install $(1) (apt-get install $(1))"; }
endef

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache
