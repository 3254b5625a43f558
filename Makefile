# The two commands of the README: `make run` and `make test`. Both set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT PY

.PHONY: setup run test lint bench images docker clean

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

test: setup lint
	scripts/ensure-chromium.sh
	$(VENV)/bin/pytest

bench: setup
	$(PY) bench/execute_latency.py
	$(PY) bench/pages.py

clean:
	rm -rf $(VENV) var
