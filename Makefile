# The two commands of the README do all set-up on a fresh machine:
#   make demo   - create .venv, install pht, run the demo study on synthetic registries
#   make test   - create .venv, install pht with test tools, lint (ruff, mypy), start a
#                 Docker engine and build the train images when possible (required
#                 under CI=true), create the vantage6 venv .venv-v6 (python3 >= 3.10,
#                 deploy/vantage6/prepare-venv.sh), run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test test-newest images lint clean

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
	bash deploy/postgres.sh install || test "$$CI" != true
	bash deploy/vantage6/prepare-venv.sh || test "$$CI" != true
	$(BIN)/python -m pytest
	$(MAKE) test-newest

# The core suite again with pht's runtime dependencies at their newest releases, as a
# station that installs pht alone gets them (pandas 3: lifelines pins pandas < 3, so
# the oracle tests that need lifelines or statsmodels are left out here; the docker
# tests already ran above). PHT_EXPECT_PANDAS makes the run fail if pip gave another
# pandas major version.
NEWEST := .venv-newest
NEWEST_STAMP := $(NEWEST)/.installed-stamp
ORACLES := test_cox_oracle test_km_oracle test_r_audit test_rmst_oracle \
	test_glm_algorithms test_equivalence_algorithms test_glm_train \
	test_cox_weighted test_equivalence_study test_iptw test_bench_glm \
	test_nma_algorithms test_nma_inputs test_nma_study

$(NEWEST_STAMP): pyproject.toml
	test -x $(NEWEST)/bin/python || $(PYTHON) -m venv $(NEWEST)
	$(NEWEST)/bin/python -m pip install --quiet --upgrade pip
	$(NEWEST)/bin/python -m pip install --quiet --upgrade -e . 'pytest>=8' 'hypothesis>=6.100'
	touch $(NEWEST_STAMP)

test-newest: $(NEWEST_STAMP)
	PHT_EXPECT_PANDAS=3 $(NEWEST)/bin/python -m pytest -q -m 'not docker and not vantage6' \
		-p no:cacheprovider $(foreach t,$(ORACLES),--ignore=tests/$(t).py)

images: $(STAMP)
	$(BIN)/pht images build

lint: $(STAMP)
	$(BIN)/ruff check pht tests bench train_images
	$(BIN)/ruff format --check pht tests bench train_images
	$(BIN)/mypy pht

clean:
	rm -rf $(VENV) $(NEWEST) .venv-v6 pht-demo .pytest_cache .hypothesis .mypy_cache .ruff_cache
