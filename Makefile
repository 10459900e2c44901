# Every target creates .venv on a fresh machine; only Python 3.11+ must be present.
# It installs every extra (`.[dev,all]`): demo, test, bench and loadtest all run from it.
# The interpreter: the distribution's CPython (/usr/bin/python3) when it is 3.11 or newer and
# can make a venv, else the first python3 on PATH. Debian builds its python3 with profile-
# guided and link-time optimisation, linked statically; a plain source build (pyenv's default)
# spends about a sixth more CPU on the server's job path (README, "The interpreter").
# `make PYTHON=...` chooses another; `make clean` first to remake an existing .venv.
SYSTEM_PYTHON := $(shell /usr/bin/python3 -c 'import sys, ensurepip; print(sys.executable if sys.version_info >= (3, 11) else "")' 2>/dev/null)
PYTHON ?= $(or $(SYSTEM_PYTHON),python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench loadtest farm clean

# `imagerouter` is the distribution's name before it became imagerouter-framework: left
# installed in an old .venv, its entry points would register every plugin twice.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip uninstall --quiet -y imagerouter 2>/dev/null || true
	$(BIN)/python -m pip install --quiet -e '.[dev,all]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/imagerouter demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The HTTP benchmarks drive the servers with Debian's wrk (a Python client would saturate first);
# the instruction benchmark counts the server's work under Debian's valgrind.
bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
	command -v valgrind >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind)
	$(BIN)/python -m loadtests.bench

loadtest: $(STAMP)
	$(BIN)/imagerouter loadtest $(or $(SCENARIO),launch-week) $(LOADTEST_ARGS)

farm: $(STAMP)
	$(BIN)/imagerouter farm

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
