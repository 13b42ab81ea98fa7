# Every target installs what it needs into .venv first, so a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export DO_NOT_TRACK ?= 1
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: install demo test lint bench lock clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Import the bundled Kickstarter sample into ./pledgeflow.db (SQLite) and print the outcome.
demo: $(STAMP)
	$(BIN)/pledgeflow db upgrade
	$(BIN)/pledgeflow import samples/kickstarter-2020.csv --shop demo.example.com --project "Demo Campaign"

## Lint, type-check and run the whole test suite against PostgreSQL, Redis and Prefect.
test: $(STAMP) lint
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

## Re-pin requirements.lock from what pyproject.toml allows today.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet '.[dev]'
	.lock-venv/bin/pip freeze --exclude pledgeflow > requirements.lock
	rm -rf .lock-venv build

clean:
	rm -rf $(VENV) build *.egg-info
