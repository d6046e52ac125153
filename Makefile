# Every target installs what it needs: a private uv (in .simfleet/tools), the locked venv, services.
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .simfleet/tools
UV := $(TOOLS)/bin/uv
VENV_STAMP := .venv/.synced
RUN := $(UV) run --frozen --no-sync

.PHONY: install run demo test test-unit test-integration test-e2e test-all lint fmt typecheck migrate schemas asyncapi bench chaos clean

$(UV):
	@$(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV_STAMP): pyproject.toml uv.lock | $(UV)
	@$(UV) sync --frozen --all-groups --quiet
	@touch $(VENV_STAMP)

install: $(VENV_STAMP)

run: install
	$(RUN) simfleet run

demo: run

test: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy .
	$(RUN) pytest -m "not slow and not e2e" tests/unit tests/integration

test-unit: install
	$(RUN) pytest tests/unit

test-integration: install
	$(RUN) pytest -m "not slow" tests/integration

test-e2e: install
	$(RUN) pytest tests/e2e

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

bench: install
	$(RUN) python -m bench

chaos: install
	$(RUN) pytest -m slow tests

clean:
	rm -rf .venv .simfleet .mypy_cache .ruff_cache .pytest_cache
