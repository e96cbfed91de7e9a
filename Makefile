# The two commands in the README:
#   make demo   set up, generate a month of data, run every job on it, and serve on localhost
#   make test   install what the tests need (Debian's PostgreSQL and Prometheus included), then
#               lint, type-check and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck unit bench system-packages clean

$(BIN)/python:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || scripts/install-system-packages python3-venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(VENV)/.runtime-installed $@

demo: $(VENV)/.runtime-installed
	$(BIN)/hubmeter demo

system-packages:
	./scripts/install-system-packages

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy app jobs

test: system-packages lint typecheck
	$(BIN)/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

unit: $(VENV)/.dev-installed
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

bench: $(VENV)/.dev-installed system-packages
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .hubmeter-demo .hubmeter-bench benchmarks/.data .pytest_cache .mypy_cache .ruff_cache build *.egg-info
