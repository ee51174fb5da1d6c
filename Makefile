# The README's two commands are `make run` and `make test`; everything they
# need is installed here from the project's own files.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= conf/openclaw.json5

.PHONY: run test lint typecheck unit deps cli-compat bench fuzz clean

# System packages the suite needs, installed from Debian when missing and we
# are root (scripts/ensure-debian-packages.sh); add yours with +=.
# chromium + chromium-driver: the Control UI's browser tests.
DEBIAN_PACKAGES += chromium chromium-driver
# the Redis session store's tests (issue 12) start a real redis-server
DEBIAN_PACKAGES += redis-server

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required, found " + sys.version.split()[0]' \
		|| { echo "error: $(PYTHON) is older than 3.11; run: make PYTHON=python3.11 ..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/twistd --nodaemon --pidfile= openclaw --config $(CONFIG)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

deps:
	@sh scripts/ensure-debian-packages.sh $(DEBIAN_PACKAGES)

# Two pytest runs: trial-style TestCases (most of the suite) and the
# pytest-twisted tests, which must not share a process with async trial tests.
# The first is spread over TEST_JOBS worker processes (pytest-xdist), a whole
# file per worker so a class's shared gateway stays in one process: most tests
# wait on real gateways, Redis and Chromium, so two workers halve the wall time
# on two cores. TEST_JOBS=0 runs it in one process. Coverage follows the workers
# (and every subprocess) through `patch = ["subprocess"]`.
TEST_JOBS ?= 2

unit: $(STAMP) deps
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest -p no:twisted -n $(TEST_JOBS) --dist loadfile --ignore=tests/pytest_twisted -q tests
	$(BIN)/coverage run -m pytest -q tests/pytest_twisted
	$(BIN)/coverage combine -q
	$(BIN)/coverage report

test: lint typecheck unit

# The real OpenClaw CLI (npm openclaw@2026.9.6, installed into .cache/ on first
# use) driving this gateway: the WebSocket issue's acceptance checks.
cli-compat: $(STAMP)
	$(BIN)/python scripts/real_cli_check.py

clean:
	rm -rf $(VENV) build *.egg-info .coverage .coverage.* .mypy_cache .pytest_cache .ruff_cache

include bench/bench.mk
include fuzz/fuzz.mk
