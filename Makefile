# Two entry points: `make demo` and `make test`. Both install what is missing first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINTED := $(wildcard fusetrace tests bench captures)

.PHONY: demo test deps venv lint typecheck unit clean

deps:
	@scripts/install-deps

# The virtualenv is rebuilt when pyproject.toml (or the compiled forwarding core, built by
# the install) changes. pyfuse3 compiles against libfuse3-dev, so system packages come first.
$(STAMP): pyproject.toml fusetrace/proxy/_core.c | deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

venv: deps $(STAMP)

demo: venv
	@PATH="$(CURDIR)/$(BIN):$$PATH" scripts/demo

lint: venv
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest

test: lint typecheck unit

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
