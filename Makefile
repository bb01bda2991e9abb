# Two commands on a fresh machine (Python 3.11, pip, apt): `make demo`, `make test`.
# Both create .venv and install the pinned dependencies they need.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := examples/iris

.PHONY: demo test setup lint layers docs typecheck unit wheel-check system-packages ramp-board-venv bench \
	bench-ramp-board clean

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[all,test,docs]'
	touch $@

setup: $(STAMP)

# ramp-board's side (ramp-database, ramp-utils, ramp-engine and their old pins:
# numpy<2, SQLAlchemy<2) in a second venv, frozen; wheels only, so no compiler
# and no surprise builds.
RB_VENV  := .venv-ramp-board
RB_STAMP := $(RB_VENV)/.installed-stamp

$(RB_STAMP): requirements/ramp-board.txt
	rm -rf $(RB_VENV)
	$(PYTHON) -m venv $(RB_VENV)
	$(RB_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(RB_VENV)/bin/python -m pip install --quiet --only-binary=:all: -r requirements/ramp-board.txt
	touch $@

ramp-board-venv: $(RB_STAMP)

## demo: train and score the bundled iris event from scratch, isolated (bubblewrap is
## installed where it can be), then show the leaderboard
demo: $(STAMP)
	$(DEMO)/demo $(BIN)

## test: lint, type-check, check the installed wheel and run the whole suite
## (real ramp-test, sshd, moto, dask, PostgreSQL with ramp-board's packages,
## the report in headless Chromium)
test: $(STAMP) system-packages ramp-board-venv lint layers typecheck docs wheel-check unit

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The documentation site, strict: a broken link or a config key without a meaning fails.
# Built into a scratch folder: nothing to clean, nothing to commit by mistake.
docs: $(STAMP)
	@site=$$(mktemp -d) && NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict \
		--site-dir "$$site"; status=$$?; rm -rf "$$site"; exit $$status

# The layers of docs/architecture.md, the two doors for processes, a runner of the
# standard library only (the contracts are in pyproject.toml).
layers: $(STAMP)
	$(BIN)/lint-imports

# Every real part is installed by now (system-packages, ramp-board-venv): a test that
# would skip for want of one fails instead (tests/real_parts.py). Two pytest-xdist
# workers: most tests wait on real processes (ramp-test, sshd, dask, PostgreSQL), so two
# at once halve the suite's time on an idle two-core machine, less on a busy one (each
# worker starts its own servers, and a test only ever looks for the processes it
# started). `make unit TEST_WORKERS=0`: one.
TEST_WORKERS ?= 2
unit: $(STAMP)
	RAMP_FLEET_REQUIRE_REAL_PARTS=1 $(BIN)/pytest -n $(TEST_WORKERS)

# The wheel, installed in a scratch venv and run from outside the checkout.
wheel-check: $(STAMP)
	PYTHON=$(PYTHON) .ci/check-wheel

# Debian packages the tests run for real, installed in one apt call when missing
# (root only; otherwise the tests that need them say why they are skipped):
# openssh-server (the instances' sshd), postgresql (ramp-board), chromium (the
# report's browser test; never `playwright install`), bubblewrap (the sandbox
# every run goes through).
system-packages:
	@.ci/system-packages

## bench: the dispatcher against `xargs -P 2 ramp-test`, what hiding the labels costs per run,
## its own cost at 500-10 000 submissions, three events' rush on shared slots (a few minutes
## each; every figure printed)
bench: $(STAMP)
	$(BIN)/python benchmarks/dispatch_local.py
	$(BIN)/python benchmarks/hidden_labels.py
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/rush.py

bench-ramp-board: $(STAMP) $(RB_STAMP) system-packages
	$(BIN)/python benchmarks/ramp_board.py

clean:
	rm -rf $(VENV) $(RB_VENV) $(DEMO)/events $(DEMO)/.demo-unisolated.yml .pytest_cache \
		.mypy_cache .ruff_cache
