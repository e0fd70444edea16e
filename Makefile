# Two commands for a new user: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup run test check format unit integration bench clean

# .ci/constraints.txt pins the versions the tests and docs/benchmarks.md were measured with.
$(STAMP): pyproject.toml .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c .ci/constraints.txt -e '.[kafka,dev,bench]'
	touch $(STAMP)

setup: $(STAMP)

## The main job on its embedded default: a synthetic drifting stream, 4 members.
run: setup
	$(VENV)/bin/online-ensemble run $(ARGS)

## Lint, format check and type check.
check: setup
	$(VENV)/bin/ruff format --check actors pipelines tests
	$(VENV)/bin/ruff check actors pipelines tests
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format actors pipelines tests
	$(VENV)/bin/ruff check --fix actors pipelines tests

## Everything CI runs: checks, unit tests (no Ray), integration tests (real Ray, Serve, HTTP).
test: check
	$(PY) -m pytest

unit: setup
	$(PY) -m pytest tests/unit

integration: setup
	$(PY) -m pytest tests/integration

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache report
