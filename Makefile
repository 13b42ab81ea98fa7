# Every target installs what it needs into .venv first, so a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export DO_NOT_TRACK ?= 1
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: install clients demo test check lint bench lock clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev,bench]'
	touch $(STAMP)

install: $(STAMP)

## The web app's TypeScript client (clients/typescript): its npm packages, pinned by
## package-lock.json and installed inside the clone, the Prisma Client and JSON types generated,
## compiled. `prisma generate` runs offline: Prisma Client 7 needs no native engine, and the CLI
## only checks that PRISMA_SCHEMA_ENGINE_BINARY names an existing file (it never runs it here).
NODE_DIR := clients/typescript
NODE_MODULES := $(NODE_DIR)/node_modules/.installed-stamp
NODE_STAMP := $(NODE_DIR)/dist/.built-stamp
PRISMA_SCHEMA_ENGINE_BINARY ?= $(CURDIR)/$(NODE_DIR)/package.json
$(NODE_MODULES): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(NODE_STAMP): $(NODE_MODULES) $(NODE_DIR)/tsconfig.json $(wildcard $(NODE_DIR)/src/*.ts) \
		clients/prisma/schema.prisma clients/prisma/prisma.config.ts $(wildcard clients/json-schema/*.json)
	cd $(NODE_DIR) && PRISMA_SCHEMA_ENGINE_BINARY="$(PRISMA_SCHEMA_ENGINE_BINARY)" \
		CHECKPOINT_DISABLE=1 PRISMA_HIDE_UPDATE_MESSAGE=1 npm run --silent generate
	cd $(NODE_DIR) && npm run --silent build
	touch $@

clients: $(NODE_STAMP)

## Import the bundled Kickstarter sample into ./pledgeflow.db (SQLite) and print the outcome.
demo: $(STAMP)
	$(BIN)/pledgeflow db upgrade
	$(BIN)/pledgeflow import samples/kickstarter-2020.csv --shop demo.example.com --project "Demo Campaign"

## Lint, type-check and run the whole test suite against PostgreSQL, Redis and Prefect (what CI
## runs), on TEST_WORKERS pytest-xdist processes, each with its own database and Prefect harness.
## Four on two cores: much of the suite waits on servers and subprocesses. Tests sharing a costly
## fixture form one xdist group (tests/conftest.py), so it is started once. `--durations=15`
## lists the slowest tests at the end, so that CI's log shows where the time goes.
TEST_WORKERS ?= 4
test: $(STAMP) $(NODE_STAMP) lint
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=15 --hypothesis-profile=suite

## The quick loop: ruff and the plain-function tests, which need no service and are not slow.
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q -m "not services and not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

## Re-pin requirements.lock from what pyproject.toml allows today.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet '.[dev,bench]'
	.lock-venv/bin/pip freeze --exclude pledgeflow > requirements.lock
	rm -rf .lock-venv build

clean:
	rm -rf $(VENV) build *.egg-info $(NODE_DIR)/node_modules $(NODE_DIR)/dist $(NODE_DIR)/src/generated
