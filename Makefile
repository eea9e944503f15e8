# greenlight — two commands on a fresh machine: `make demo` and `make test`.
# Everything installs into $(VENV) (created on first use, reinstalled when a requirements file changes).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
REQ_HASH := $(shell cat requirements.txt requirements-dev.txt constraints.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.greenlight-installed-$(REQ_HASH)
PYTEST_ARGS ?=

export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export MPLCONFIGDIR := $(CURDIR)/.local/mpl

.PHONY: help airflow-celery venv install test test-unit test-integration test-dags test-e2e lint demo airflow bench clean-local lock

help:
	@echo "make demo     seed a demo QA bucket on a local S3 server and promote it with Airflow"
	@echo "make test     lint + the whole test suite (starts the servers it needs)"
	@echo "make airflow  local Airflow web UI with the DAGs and demo connections (Ctrl-C stops)"
	@echo "make airflow-celery  docker-compose's CeleryExecutor stack (PostgreSQL, Redis, S3, MLflow, 2 workers) as local processes"
	@echo "make bench    benchmarks against aws s3 sync / s5cmd (not part of the tests)"

# The stamp name carries the hash of the requirement files, so a content change reinstalls
# and a fresh clone (new mtimes) of the same files does not.
$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=25"
	$(BIN)/python -m pip install -q -r requirements-dev.txt -c constraints.txt
	@rm -f $(VENV)/.greenlight-installed-*
	@touch $@

# The project itself, editable, with its `greenlight` console script. Redone whenever the venv's
# greenlight is not this checkout's (a cached CI venv is shared by fresh clones in other folders).
install: $(STAMP)
	@env -u PYTHONPATH $(BIN)/python -c "import greenlight, sys; sys.exit(greenlight.__file__ != '$(CURDIR)/include/greenlight/__init__.py')" 2>/dev/null \
	  || $(BIN)/python -m pip install -q --no-deps -e .

venv: install

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	bash .ci/install-browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Each kind of test alone: unit (no servers), integration (real S3/PostgreSQL/Redis/MLflow),
# dags (DagBag, dag.test()), e2e (a real scheduler).
test-unit test-integration test-dags test-e2e: venv
	$(BIN)/python -m pytest tests/$(@:test-%=%) $(PYTEST_ARGS)

demo: venv
	$(BIN)/python -m greenlight.dev.demo run

airflow: venv
	$(BIN)/python -m greenlight.dev.demo airflow

airflow-celery: venv
	$(BIN)/python -m greenlight.dev.celerystack

bench: venv
	$(BIN)/python bench/sync_bench.py

# Regenerate the lock of the full resolved set (run on purpose, then commit constraints.txt).
lock: venv
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^greenlight' > constraints.txt

clean-local:
	rm -rf .local
