# The two Quickstart commands: `make shell` and `make test`.
PYTHON ?= python3
# The suite mostly waits on sockets: more workers than cores (each test has its own key prefix).
TEST_WORKERS ?= 4
VENV ?= .venv
PY := $(VENV)/bin/python
# Exact versions with their hashes (`make lock` writes them from pyproject.toml): what the bot
# and its shell need, and that plus the developer tools (tests, linters, validators).
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
# The tool that writes the locks (installed into the venv by `make lock` only).
UV_VERSION ?= 0.13.9
UV_COMPILE = $(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 \
	--generate-hashes --quiet --custom-compile-command 'make lock'

.PHONY: install install-runtime test lint shell bench chaos lock lock-upgrade pin-base clean \
	contract-slack-sdk

$(PY):
	$(PYTHON) -m venv $(VENV)

# Each install: the lock with --require-hashes (every package at its pinned version, its file
# checked), then the project itself with --no-deps (so nothing unlocked comes in).
$(RUNTIME): $(LOCK) pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(DEV): $(DEV_LOCK) $(LOCK) pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@ $(RUNTIME)

install-runtime: $(RUNTIME)

install: $(DEV)

test: $(DEV)
	PYTHON=$(PY) scripts/with-redis $(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The bot and its shell only: no test tools, validators or Huawei SDK (README, Quickstart).
shell: $(RUNTIME)
	$(VENV)/bin/modelarts-bot shell

# The benchmarks: `python -m bench` lists every command (docs/benchmark.md); BENCH_ARGS, e.g. --quick.
bench: $(DEV)
	$(PY) -m bench loopback $(BENCH_ARGS)

# The chaos run (docs/reliability.md); CHAOS_ARGS, e.g. --flows 60 --seconds 30.
chaos: $(DEV)
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

lint: $(DEV)
	$(VENV)/bin/ruff check .

# Re-run after any change to the dependencies in pyproject.toml (tests/test_locks.py fails until
# then). Versions already locked are kept where they still fit; `make lock-upgrade` takes the
# newest of everything. The dev lock is constrained by the runtime one: one version of each.
lock: | $(PY)
	$(PY) -m pip install --quiet uv==$(UV_VERSION)
	$(UV_COMPILE) $(LOCK_ARGS) -o $(LOCK)
	$(UV_COMPILE) $(LOCK_ARGS) --extra dev -c $(LOCK) -o $(DEV_LOCK)

lock-upgrade:
	$(MAKE) lock LOCK_ARGS=--upgrade

# The Dockerfile's base image by digest (asks Docker Hub: needs a machine that reaches it).
pin-base:
	$(PYTHON) scripts/pin_base_image.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
