# Two commands on a fresh machine (Python 3.11, pip, apt): `make demo`, `make test`.
# Both create .venv and install the pinned dependencies they need.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := examples/iris

.PHONY: demo test setup lint typecheck unit wheel-check sshd chromium bench clean

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[infra,test]'
	touch $@

setup: $(STAMP)

## demo: train and score the bundled iris event from scratch, then show the leaderboard
demo: $(STAMP)
	rm -rf $(DEMO)/events
	cd $(DEMO) && ../../$(BIN)/ramp-fleet validate config.yml > /dev/null
	cd $(DEMO) && ../../$(BIN)/ramp-fleet dispatch config.yml
	cd $(DEMO) && ../../$(BIN)/ramp-fleet leaderboard config.yml

## test: lint, type-check, check the installed wheel and run the whole suite
## (real ramp-test, sshd, moto, dask, the report in headless Chromium)
test: $(STAMP) sshd chromium lint typecheck wheel-check unit

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

# The wheel, installed in a scratch venv and run from outside the checkout.
wheel-check: $(STAMP)
	PYTHON=$(PYTHON) .ci/check-wheel

# The AWS tests need a real OpenSSH server on 127.0.0.1; install it when missing.
sshd:
	@if [ ! -x /usr/sbin/sshd ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing openssh-server for the SSH tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null; \
	  else echo "note: /usr/sbin/sshd missing and not root: the SSH tests will be skipped"; fi; \
	fi

# The report's browser test opens the page in Debian's Chromium through Playwright
# (never `playwright install`: no browser downloads from outside the package registries).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing chromium for the report's browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: /usr/bin/chromium missing and not root: the browser test will be skipped"; fi; \
	fi

bench: $(STAMP)
	$(BIN)/python benchmarks/dispatch_local.py

clean:
	rm -rf $(VENV) $(DEMO)/events .pytest_cache .mypy_cache .ruff_cache
