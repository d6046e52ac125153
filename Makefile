# Every target installs what it needs: a private uv (in .simfleet/tools), the locked venv, services.
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .simfleet/tools
UV := $(TOOLS)/bin/uv
VENV_STAMP := .venv/.synced
RUN := $(UV) run --frozen --no-sync
CHROMIUM := /usr/bin/chromium
VALIDATORS := tools/contract-validators
VALIDATORS_STAMP := $(VALIDATORS)/node_modules/.installed

.PHONY: install browser-deps kafka-deps kafka-jars contract-validators run demo test test-unit test-integration test-e2e test-browser test-all lint fmt typecheck migrate schemas asyncapi screenshots bench chaos clean

$(UV):
	@$(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV_STAMP): pyproject.toml uv.lock | $(UV)
	@$(UV) sync --frozen --all-groups --quiet
	@touch $(VENV_STAMP)

install: $(VENV_STAMP)

# Browser tests drive Debian's Chromium (never a browser downloaded by Playwright).
browser-deps:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Chromium missing at $(CHROMIUM): as root run 'apt-get install -y chromium' (Debian)" >&2; exit 1; fi; }
	@test -x $(CHROMIUM) || { echo "apt-get finished but $(CHROMIUM) is still missing" >&2; exit 1; }

# The contract tests run validators written elsewhere (@asyncapi/parser, Spectral), pinned in
# $(VALIDATORS)/package-lock.json and installed with npm ci; Node.js from Debian when missing.
$(VALIDATORS_STAMP): $(VALIDATORS)/package.json $(VALIDATORS)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	  else echo "npm missing: as root run 'apt-get install -y nodejs npm' (Debian), or install Node.js 18+" >&2; exit 1; fi; }
	@cd $(VALIDATORS) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

contract-validators: $(VALIDATORS_STAMP)


# Apache Kafka (the broker of make test) runs on Debian's OpenJDK; Maven fetches the pinned broker
# of infra/embedded/kafka-broker/pom.xml once into .simfleet/apache-kafka/<version>/lib.
kafka-deps:
	@command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null; \
	  else echo "Java or Maven missing: as root run 'apt-get install -y openjdk-17-jre-headless maven' (Debian)" >&2; exit 1; fi; }
	@command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1 || { echo "apt-get finished but java or mvn is still missing" >&2; exit 1; }

kafka-jars: install kafka-deps
	@$(RUN) python -c "from infra.embedded.kafka_jars import fetch_jars; fetch_jars()"


# the local demo: development said explicitly (webhooks may reach the sandbox on loopback)
run: install
	SIMFLEET_ENV=$${SIMFLEET_ENV:-development} $(RUN) simfleet run

demo: run

test: install browser-deps kafka-jars contract-validators
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy .
	$(RUN) pytest -m "not slow" tests/unit tests/integration tests/e2e tests/browser

test-unit: install contract-validators
	$(RUN) pytest tests/unit

test-integration: install kafka-jars
	$(RUN) pytest -m "not slow" tests/integration

test-e2e: install
	$(RUN) pytest tests/e2e

test-browser: install browser-deps kafka-jars
	$(RUN) pytest tests/browser

screenshots: install browser-deps
	SIMFLEET_SCREENSHOTS=docs/screenshots $(RUN) pytest tests/browser -k screenshots

test-all: install
	$(RUN) pytest tests

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .

fmt: install
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

typecheck: install
	$(RUN) mypy .

migrate: install
	$(RUN) simfleet migrate

schemas: install
	$(RUN) simfleet schemas export

asyncapi: install
	$(RUN) simfleet docs --write

# every benchmark on the embedded Apache Kafka, then on Tansu (one table: bench/results.md)
bench: install kafka-jars
	$(RUN) python -m bench

chaos: install kafka-jars
	$(RUN) pytest -m slow tests

clean:
	rm -rf .venv .simfleet .mypy_cache .ruff_cache .pytest_cache $(VALIDATORS)/node_modules
