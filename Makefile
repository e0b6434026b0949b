# The two Quickstart commands: `make shell` and `make test`.
PYTHON ?= python3
# The suite mostly waits on sockets: more workers than cores (each test has its own key prefix).
TEST_WORKERS ?= 4
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint shell bench chaos clean contract-slack-sdk

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

# bot/slack/client.py against the newest slack-sdk release (tests/test_slack_sdk_contract.py says
# why): a throwaway venv, the bot, slack-sdk upgraded past the lock and the pin, the two tests.
CONTRACT_VENV ?= $(VENV)/contract-slack-sdk
contract-slack-sdk:
	rm -rf $(CONTRACT_VENV)
	$(PYTHON) -m venv $(CONTRACT_VENV)
	$(CONTRACT_VENV)/bin/python -m pip install --quiet -e . pytest hypothesis trustme
	$(CONTRACT_VENV)/bin/python -m pip install --quiet --upgrade slack-sdk
	$(CONTRACT_VENV)/bin/python -c "import slack_sdk; print('slack_sdk', slack_sdk.version.__version__)"
	$(CONTRACT_VENV)/bin/python -m pytest -p no:cacheprovider -q \
		tests/test_slack_sdk_contract.py tests/test_slack_client.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
