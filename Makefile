# rillet: `make run` runs the demo, `make test` runs the tests. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORE := $(VENV)/.installed-core
STAMP := $(VENV)/.installed
# test processes: the tests wait on brokers and workers a third of the time (11 CPU-minutes in 8 wall-minutes on
# 2 cores with 3), so twice the cores pay: 6m04 against 6m42 for pytest on a fresh clone
TEST_PROCESSES ?= 4

.PHONY: run test test-fast test-durations lint check-schemas bench soak clean

# what the demo and the workers need: no test, browser or Dask tooling
$(CORE): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip
	$(BIN)/python -m pip install -qq -e .
	@touch $(CORE)

# the tests' tooling too, in one pip run (on a fresh clone, one resolve instead of two)
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq -e '.[dev]'
	@touch $(CORE) $(STAMP)

run: $(CORE)
	$(BIN)/rillet demo

test: $(STAMP)
	@command -v chromium >/dev/null || apt-get install -y -qq chromium >/dev/null 2>&1 \
		|| (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1) \
		|| echo "chromium not installed: the console's browser test skips"
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -ra -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder  # whole files each, longest first (tests/durations.json)

test-durations: $(STAMP)  # how long each test file takes: make test runs the longest first
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=0 --durations-min=0 \
		| $(BIN)/python -m tools.durations > tests/durations.json.new && mv tests/durations.json.new tests/durations.json

# the edit-test loop: unit and property tests, no broker or Redis (under a minute)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration" -n 2

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m pip install -qq -e '.[dev,bench]'
	@command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null 2>&1 || echo "wrk not installed: bench.online skips HTTP most req/s"
	$(BIN)/python -m bench.engine
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.online
	$(BIN)/python -m bench.latency
	$(BIN)/python -m bench.historical
	$(BIN)/python -m bench.replay
	$(BIN)/python -m bench.replica_wait
	$(BIN)/python -m bench.restore
	$(BIN)/python -m bench.restart

soak: $(STAMP)
	$(BIN)/python -m bench.soak

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache .hypothesis
