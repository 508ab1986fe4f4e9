# Two entry points, each sets up .venv on first use:
#   make reproduce   -> the whole study (`shortcutlab reproduce`) into ./artifacts
#   make test        -> the test suite
#   make dashboard   -> the explorers' dashboard (Voila) on http://localhost:8866/
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.shortcutlab-installed
ARGS ?=
PYTEST_ARGS ?=

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	# torchattacks (a test oracle) pins an old `requests` it never imports: install it without dependencies.
	$(BIN)/python -m pip install --quiet --no-deps "torchattacks==3.5.1"
	touch $(STAMP)

.PHONY: setup reproduce test dashboard clean
setup: $(STAMP)

reproduce: $(STAMP)
	$(BIN)/shortcutlab reproduce $(ARGS)

# Two xdist workers suit 2 cores (each worker runs torch on one thread); loadscope keeps a module's tests,
# and its module-scoped fixtures, on one worker, and takes modules in collection order (slowest first: see
# tests/conftest.py). --durations shows where the time goes.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadscope --no-loadscope-reorder --durations=20 $(PYTEST_ARGS)

dashboard: $(STAMP)
	$(BIN)/voila lessons/explore.ipynb $(ARGS)

clean:
	rm -rf $(VENV) artifacts grades .pytest_cache
