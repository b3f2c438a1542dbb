# Developer commands for sync_pipelines. `make` alone lists them.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := .setup-stamp

# Runs started by the demo, the CLI and the UI share one Dagster home, so they all show in the UI.
DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# Extra arguments for pytest, e.g. `make test PYTEST_ARGS='-k cron -x'`.
PYTEST_ARGS ?=
# A shell started in the background can pass SIGTERM/SIGINT on as ignored; long-running commands get
# the default handling back so that Ctrl-C and `kill` stop them.
WITH_SIGNALS := env --default-signal=TERM,INT DAGSTER_HOME="$(DAGSTER_HOME)"

.PHONY: help setup demo test test-fast lint fmt typecheck ui clean distclean dagster-home bench bench-quick bench-memory bench-history

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(STAMP) ## Create .venv and install the project with its dev tools (skipped when up to date)

$(VENV)/pyvenv.cfg:
	$(PYTHON) -m venv $(VENV)

# Re-installs when pyproject.toml changes or .venv is created anew.
$(STAMP): pyproject.toml requirements/noida-db.txt $(VENV)/pyvenv.cfg
	$(BIN)/python -m pip install --disable-pip-version-check --require-hashes -r requirements/noida-db.txt
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev]'
	touch $@

dagster-home:
	@mkdir -p "$(DAGSTER_HOME)"
	@[ -f "$(DAGSTER_HOME)/dagster.yaml" ] || cp dagster.local.yaml "$(DAGSTER_HOME)/dagster.yaml"

demo: setup dagster-home ## Build the demo databases and run every demo sync through Dagster
	$(WITH_SIGNALS) $(BIN)/sync-pipelines demo

# Every check runs even when an earlier one fails; the target fails if any did.
test: setup ## Start PostgreSQL/MariaDB/RabbitMQ if down, install Chromium if missing, then ruff, mypy and pytest
	scripts/ensure-services
	scripts/ensure-chromium
	@failed=""; \
	echo "== ruff format --check"; $(BIN)/ruff format --check . || failed="$$failed ruff-format"; \
	echo "== ruff check"; $(BIN)/ruff check . || failed="$$failed ruff-check"; \
	echo "== mypy"; $(BIN)/mypy || failed="$$failed mypy"; \
	echo "== pytest"; $(BIN)/pytest $(PYTEST_ARGS) || failed="$$failed pytest"; \
	if [ -n "$$failed" ]; then echo "make test: failed:$$failed" >&2; exit 1; fi

test-fast: setup ## The unit tests not marked slow (under two minutes): pytest -m "unit and not slow"
	scripts/ensure-services
	$(BIN)/pytest -m "unit and not slow" $(PYTEST_ARGS)

lint: setup ## Check formatting and lint rules (no changes)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

fmt: setup ## Format the code and apply safe lint fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: setup ## Type-check the package with mypy
	$(BIN)/mypy

ui: setup dagster-home ## Dagster UI (and daemon) on http://127.0.0.1:3000, the history view on :3001, local ES for host metrics
	$(WITH_SIGNALS) $(BIN)/sync-pipelines ui

clean: ## Remove demo data, the local Dagster home, staging files and caches (keeps .venv)
	rm -rf demo .dagster_home .sync_pipelines .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean ## Also remove .venv
	rm -rf $(VENV) $(STAMP)

bench: setup ## Benchmark at 100k and 1M rows beside COPY and dlt (PostgreSQL target); prints and writes JSON
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev,bench]'
	scripts/ensure-services
	$(WITH_SIGNALS) $(BIN)/python bench/bench_sync.py $(BENCH_ARGS)

bench-quick: setup ## The benchmark at 20k rows (about a minute)
	$(MAKE) bench BENCH_ARGS="--quick $(BENCH_ARGS)"

bench-memory: setup ## Peak RSS of case 1 (engine) at 1M rows, to compare with the 100k figure
	$(MAKE) bench BENCH_ARGS="--sizes 1000000 --sources postgresql --cases 1 --runners engine --runs 1 --no-dlt $(BENCH_ARGS)"

bench-history: setup ## How fast the history view answers for a run of 1M records (PostgreSQL ledger)
	scripts/ensure-services
	$(WITH_SIGNALS) $(BIN)/python bench/bench_history_view.py $(BENCH_ARGS)
