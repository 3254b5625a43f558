# The two commands of the README: `make run` and `make test`. Both set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT PY

.PHONY: setup run test lint bench images docker clean compose-check

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

docker:
	scripts/ensure-docker.sh

setup: $(VENV)/.installed docker
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py tako_images build default

run: setup
	scripts/run.sh

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The tests that touch storage, queueing and live updates, again on PostgreSQL + Redis.
SCALEOUT_TESTS := tests/test_jobs.py tests/test_jobs_api.py tests/test_executions.py tests/test_indexes.py \
	tests/test_recovery.py tests/test_resilience.py tests/test_consumers.py tests/test_prune.py \
	tests/test_pool.py tests/test_scaleout.py tests/test_load.py tests/test_pages.py

test: setup lint compose-check
	scripts/ensure-chromium.sh
	$(VENV)/bin/pytest
	scripts/ensure-pg-redis.sh > var/scaleout.env
	. ./var/scaleout.env && test -n "$$DATABASE_URL" && $(VENV)/bin/pytest $(SCALEOUT_TESTS)

# deploy/compose.yaml must stay valid (Debian ships Compose v1 as docker-compose; v2 where present).
compose-check:
	scripts/check-compose.sh

bench: setup
	$(PY) bench/execute_latency.py
	$(PY) bench/scaleout_throughput.py
	$(PY) bench/pages.py

clean:
	rm -rf $(VENV) var
