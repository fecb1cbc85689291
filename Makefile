# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine with
# Python 3.11+ (and redis-server for the integration tests).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit bench clean

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
	@if [ "$${CI:-}" = "true" ] && ! command -v redis-server >/dev/null; then \
		echo "FATAL: redis-server is required for the test suite (Debian: apt-get install redis-server)"; exit 1; fi
	$(BIN)/pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
