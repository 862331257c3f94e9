# The two commands of the README do all set-up on a fresh machine:
#   make demo   - create .venv, install pht, run the demo study on synthetic registries
#   make test   - create .venv, install pht with test tools, run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pht demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check pht tests bench
	$(BIN)/ruff format --check pht tests bench
	$(BIN)/mypy pht

clean:
	rm -rf $(VENV) pht-demo .pytest_cache .hypothesis .mypy_cache .ruff_cache
