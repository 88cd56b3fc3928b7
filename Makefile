# cpnode — two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cpnode-installed
DEV    := .cpnode-dev
CONFIG ?= $(DEV)/node.toml
# Test workers: most tests wait on real node processes, so more workers than cores pays off.
# `--dist worksteal`: a worker that runs out of tests takes some from a busy one, so the long tests
# do not pile up at the tail of the run.
TEST_WORKERS ?= 4

.PHONY: venv demo run test test-fast lint docs bench constraints clean screenshots

# constraints.txt pins every package to the version the suite last passed with, so a fresh clone
# installs what CI tested; `make constraints` writes it again after a dependency changes.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' -c constraints.txt
	@touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy node federation connectors ledger dbprep tests bench
	$(BIN)/lint-imports --no-cache

# The documentation site: strict, so a broken link, a missing page or a page left out of the nav fails.
docs: venv
	$(BIN)/mkdocs build --strict --quiet --site-dir site

# Bytecode caches on for the tests even where the environment turns them off
# (PYTHONDONTWRITEBYTECODE=1): each node process the tests start would compile every module again,
# and each test worker rewrite every test module's asserts again (most of collection's time).
test test-fast: export PYTHONDONTWRITEBYTECODE :=

test: lint docs
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal --durations=20 --cov

# The quick loop while working: no test that starts a process (tests/conftest.py marks those
# `slow` by reading their code) and none on PostgreSQL.
test-fast: venv
	$(BIN)/pytest -n $(TEST_WORKERS) -m "not slow and not postgres"

demo: venv
	$(BIN)/python -m node.demo

run: venv
	@test -f $(CONFIG) || $(BIN)/cpnode init $(DEV) --name dev --operator "Local development" --region Local
	$(BIN)/cpnode run --config $(CONFIG)

# A fresh venv with the project's own pins, frozen: the next constraints.txt.
constraints:
	rm -rf .constraints-venv
	$(PYTHON) -m venv .constraints-venv
	.constraints-venv/bin/python -m pip install --quiet --upgrade pip
	.constraints-venv/bin/python -m pip install --quiet -e '.[test]'
	{ echo "# Every package at the version the suite last passed with (make constraints writes this file;"; \
	  echo "# the Makefile installs .[test] with -c constraints.txt)."; \
	  .constraints-venv/bin/python -m pip freeze --exclude-editable; } > constraints.txt
	rm -rf .constraints-venv

# Pictures of every console page (docs/console/), taken in the system's headless Chromium.
screenshots: venv
	$(BIN)/python -m node.console.screenshots --out docs/console

bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis site
