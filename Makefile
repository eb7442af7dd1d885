# Two commands matter: `make demo` and `make test`. Both create or update the virtualenv first.
SHELL := /bin/bash
PY ?= python3.11
ROOT := $(abspath .)
VENV := $(ROOT)/.venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AIRFLOW_HOME := $(ROOT)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(ROOT)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(ROOT)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN := sqlite:///$(ROOT)/.airflow/airflow.db
# `airflow dags test` (tests) needs no login; `make standalone` turns this off (below). The demo starts its
# own Airflow in .demo/airflow with named users (scripts/cluster.py).
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS := True
# Named users for `make standalone`: approvals record who responded. Passwords are generated on the
# first start into $(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated (printed by standalone).
STANDALONE_USERS ?= ops_lead:admin,ops_engineer:op,firm_reviewer:viewer
export PYTHONPATH := $(ROOT):$(ROOT)/plugins
export PATH := $(BIN):$(PATH)

# `make browser`: the headless Chromium the scheduler test's report check drives (Debian package).
.PHONY: browser postgres venv test test-unit test-integration lint demo airflow-init standalone sandboxes bench bench-smoke bench-xl bench-xl-records bench-dags-smoke clean test-scheduler

venv: $(STAMP)

$(STAMP): requirements.txt requirements-sandbox.txt requirements-dev.txt constraints.txt
	@command -v $(PY) >/dev/null || { echo "need $(PY) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install -q --no-deps clio-cli==1.0.5
	$(BIN)/pip install -q --no-deps clio-manage-api-client==0.1.5
	touch $(STAMP)

airflow-init: venv
	mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate >/dev/null

lint: venv
	$(BIN)/ruff check .

test: venv browser postgres lint
	$(BIN)/python -m pytest -p no:cacheprovider -n 2 --dist loadfile

test-unit: venv
	$(BIN)/python -m pytest -m "not integration"

test-integration: venv postgres
	$(BIN)/python -m pytest -m integration

demo: venv
	$(BIN)/python -m scripts.demo

sandboxes: venv
	$(BIN)/python -m scripts.sandboxes

standalone: airflow-init
	$(BIN)/python -m scripts.import_settings
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=False \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="$(STANDALONE_USERS)" \
	$(BIN)/airflow standalone

browser:
	@command -v chromium >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

# `make postgres`: the PostgreSQL server binaries (Debian package) with which the tests of the shared Clio
# budget start a throwaway server of their own on loopback (tests/pgserver.py); no server is left running.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

test-scheduler: venv browser
	$(BIN)/python -m pytest -p no:cacheprovider -m scheduler tests/scheduler

bench-smoke: venv
	$(BIN)/python -m benchmarks.run --size tiny

# The isolated benchmarks and the phase DAGs under a real scheduler on the large preset (about an hour).
bench: venv
	$(BIN)/python -m benchmarks.run

# The phase DAGs on the xl preset (≈1M records; hours); merged into benchmarks/results/latest.md.
bench-xl: venv
	$(BIN)/python -m benchmarks.run --only dags_xl

# The same without the firm's documents (extract -> transform -> load of ≈1M records: memory, ledger).
bench-xl-records: venv
	$(BIN)/python -m benchmarks.run --only dags_xl_records

# The DAG-path harness on the tiny preset (a few minutes; results in benchmarks/results/smoke.md).
bench-dags-smoke: venv
	$(BIN)/python -m benchmarks.run --size tiny --only dags

clean:
	rm -rf $(AIRFLOW_HOME) .demo .pytest_cache
