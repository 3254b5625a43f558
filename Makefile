# The two commands of the README: `make run` and `make test`. Both set everything up first, with
# scripts/setup.sh (system packages, services, the locked Python dependencies, the default image).
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT PY VENV

.PHONY: setup setup-test run test test-unit lint bench docker clean compose-check lock editor

setup:
	scripts/setup.sh run

setup-test:
	scripts/setup.sh test

run: setup
	scripts/run.sh

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The tests that touch storage, queueing and live updates, again on PostgreSQL + Redis.
SCALEOUT_TESTS := tests/test_jobs.py tests/test_jobs_api.py tests/test_executions.py tests/test_indexes.py \
	tests/test_recovery.py tests/test_resilience.py tests/test_consumers.py tests/test_prune.py \
	tests/test_pool.py tests/test_scaleout.py tests/test_load.py tests/test_pages.py tests/test_fair_sharing.py \
	tests/test_fair_sharing_service.py tests/test_key_lifecycle.py tests/test_audit.py

# Set-up comes first, whole: nothing below it installs anything.
test: setup-test
	$(MAKE) lint compose-check
	$(VENV)/bin/pytest
	. ./var/scaleout.env && test -n "$$DATABASE_URL" && $(VENV)/bin/pytest $(SCALEOUT_TESTS)

# The fast unit tier alone (FakeSandbox and the database; no engine, no processes): about a minute.
test-unit:
	$(VENV)/bin/pytest -m "not docker and not system"

# deploy/compose.yaml must stay valid (Debian ships Compose v1 as docker-compose; v2 where present).
compose-check:
	scripts/check-compose.sh

# Rewrites the hashed lock files (requirements.txt, requirements-dev.txt) after a change to pyproject.toml's dependencies.
lock:
	scripts/lock.sh

# Rebuilds static/vendor/codemirror/ (committed) from frontend/editor/ after a change there (needs node; the service does not).
editor:
	scripts/build-editor.sh

bench: setup
	$(PY) manage.py tako_images build data-processing  # (the pandas rows)
	$(PY) bench/execute_latency.py
	$(PY) bench/scaleout_throughput.py
	$(PY) bench/input_files.py
	$(PY) bench/pages.py

clean:
	rm -rf $(VENV) var
