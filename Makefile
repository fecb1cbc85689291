# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine with
# Python 3.11+ (and, for the test suite, the system packages README.md names).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
DEV := $(VENV)/.dev
PORT ?= 8080

.PHONY: demo test test-fast lint docs bench fuzz clean

$(RUNTIME): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(DEV): $(RUNTIME)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: $(RUNTIME)
	$(BIN)/gateway demo --port $(PORT)

lint: $(DEV)
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench
	$(BIN)/mypy gateway
	$(BIN)/lint-imports

docs: $(DEV)
	$(BIN)/python -c "from gateway.config.reference import render, replace_generated as r; \
		p = 'docs/configuration.md'; t = open(p).read(); open(p, 'w').write(r(t, render()))"

test: lint
	@if [ "$${CI:-}" = "true" ]; then for bin in redis-server promtool chromium; do command -v $$bin >/dev/null || { \
		echo "FATAL: $$bin is required for the test suite (see README.md)"; exit 1; }; done; fi
	$(BIN)/pytest -q -p no:cacheprovider

test-fast: $(DEV)
	$(BIN)/pytest -q -p no:cacheprovider -m "not integration"

fuzz: $(DEV)
	FUZZ_EXAMPLES=500 $(BIN)/pytest -q -p no:cacheprovider tests/integration/test_fuzz.py

bench: $(DEV)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
