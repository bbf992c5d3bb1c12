# The two quick-start commands: `make reproduce` (the main job) and `make test`.
# Each creates .venv with everything the project needs when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup reproduce test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

reproduce: $(STAMP)
	$(BIN)/mnistlab reproduce --out runs/reproduction --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest

# The unit tests without the real MNIST files, a browser or the slow checks: the quick loop,
# in two pytest-xdist worker processes (most of a unit test's time is single-threaded Python
# and tracing). `make test`, CI's command, runs one process: its timing tests stay quiet.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m "not realdata and not slow and not browser"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools

bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
