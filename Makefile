# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine with
# Python 3.11+ (and redis-server for the integration tests).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench fuzz clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(BIN)/gateway demo

lint: $(STAMP)
	$(BIN)/ruff check gateway tests bench
	$(BIN)/mypy gateway

test: lint
	@if [ "$${CI:-}" = "true" ]; then for bin in redis-server promtool; do command -v $$bin >/dev/null || { \
		echo "FATAL: $$bin is required for the test suite (Debian: apt-get install redis-server prometheus)"; exit 1; }; done; fi
	$(BIN)/pytest -q -p no:cacheprovider

fuzz: $(STAMP)
	FUZZ_EXAMPLES=500 $(BIN)/pytest -q -p no:cacheprovider tests/integration/test_fuzz.py

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
