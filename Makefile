# Two entry points, each sets up .venv on first use:
#   make reproduce   -> the whole study (`shortcutlab reproduce`) into ./artifacts
#   make test        -> the test suite (about 4.5 minutes on 2 cores)
#   make test-slow   -> the heavy proofs CI runs too (every mutant under ten seeds, an nbgrader round, every stub,
#                       grading unsandboxed, lessons on their student editions)
#   make test-pythons -> a smoke test on every Python pyenv has in the supported range (downloads torch for each)
#   make dashboard   -> the explorers' dashboard (Voila) on http://localhost:8866/
#   make lab         -> the lessons in JupyterLab, in work/ (a copy `shortcutlab release` never overwrites)
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

.PHONY: setup reproduce test test-slow test-pythons dashboard lab clean
setup: $(STAMP)

reproduce: $(STAMP)
	$(BIN)/shortcutlab reproduce $(ARGS)

lab: $(STAMP)
	$(BIN)/shortcutlab lab $(ARGS)

# Two xdist workers suit 2 cores (each worker runs torch on one thread); loadscope keeps a module's tests,
# and its module-scoped fixtures, on one worker, and takes modules in collection order (slowest first: see
# tests/conftest.py). --durations shows where the time goes.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadscope --no-loadscope-reorder --durations=20 -m "not heavy" $(PYTEST_ARGS)

# The heavy proofs, in three runs: the fairness proof (tests marked heavy: each mutant and correct submission, as
# written and with other comments and names, under seeds 0-9); every stub kind of every graded function; and the
# grading tests with the OS sandbox hidden (SHORTCUTLAB_SANDBOX=none), as on a machine without bubblewrap, so a
# test that only passes with it cannot land.
GRADING_TESTS := tests/test_grading.py tests/test_gradebook.py tests/test_roster.py tests/test_answers.py
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m heavy --durations=5 $(PYTEST_ARGS)
	SHORTCUTLAB_STUB_KINDS=all $(BIN)/python -m pytest -q tests/test_stub_gating.py $(PYTEST_ARGS)
	SHORTCUTLAB_SANDBOX=none $(BIN)/python -m pytest -q -n 2 --dist loadscope $(GRADING_TESTS) $(PYTEST_ARGS)

# Not in CI: each Python but the machine's own downloads a torch of several GB (see .ci/test-pythons).
test-pythons:
	.ci/test-pythons

dashboard: $(STAMP)
	$(BIN)/voila lessons/explore.ipynb $(ARGS)

clean:
	rm -rf $(VENV) artifacts grades .pytest_cache
