# The two Quickstart commands: `make shell` and `make test`.
PYTHON ?= python3
# The suite mostly waits on sockets: more workers than cores (each test has its own key prefix).
TEST_WORKERS ?= 4
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint shell bench chaos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	PYTHON=$(PY) scripts/with-redis $(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

shell: $(STAMP)
	$(VENV)/bin/modelarts-bot shell

# The benchmarks: `python -m bench` lists every command (docs/benchmark.md); BENCH_ARGS, e.g. --quick.
bench: $(STAMP)
	$(PY) -m bench loopback $(BENCH_ARGS)

# The chaos run (docs/reliability.md); CHAOS_ARGS, e.g. --flows 60 --seconds 30.
chaos: $(STAMP)
	$(PY) -m bench chaos $(CHAOS_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
