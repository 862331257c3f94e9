# The two commands of the README do all set-up on a fresh machine:
#   make demo   - create .venv, install pht, run the demo study on synthetic registries
#   make test   - create .venv, install pht with test tools, lint (ruff, mypy), start a
#                 Docker engine and build the train images when possible (required
#                 under CI=true), run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test images lint clean

DEMO_STAMP := $(VENV)/.demo-stamp

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

# the demo needs pht's runtime dependencies only (no test or lint tools)
$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(DEMO_STAMP)

install: $(STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/pht demo

test: lint
	bash deploy/prepare-containers.sh
	$(BIN)/python -m pytest

images: $(STAMP)
	$(BIN)/pht images build

lint: $(STAMP)
	$(BIN)/ruff check pht tests bench train_images
	$(BIN)/ruff format --check pht tests bench train_images
	$(BIN)/mypy pht

clean:
	rm -rf $(VENV) pht-demo .pytest_cache .hypothesis .mypy_cache .ruff_cache
