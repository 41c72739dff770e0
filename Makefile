# runlog: `make demo` and `make test` do all set-up on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= $(CURDIR)/.demo

.PHONY: all deps venv lint typecheck unit test demo bench sql clean

all: test

# Debian packages: a Python with venv. Installed only when missing.
deps:
	@if ! $(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y python3 python3-venv; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml | deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

lint: $(STAMP)
	$(PY) -m ruff check engine tests bench migrations
	$(PY) -m ruff format --check engine tests bench migrations

typecheck: $(STAMP)
	$(PY) -m mypy --strict engine

unit: $(STAMP)
	$(PY) -m pytest -q

test: lint typecheck unit

# The main job: a container driven through its whole lifecycle, then its
# history read back from the event log.
demo: $(STAMP)
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	$(PY) -m engine.demo --db $(DEMO_DIR)/events.db --root $(DEMO_DIR)/run

bench: $(STAMP)
	$(PY) bench/run.py

# Regenerate the hot path's SQL from the SQLAlchemy tables.
sql: $(STAMP)
	$(PY) -m engine.eventlog.gensql > engine/eventlog/sql.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .mypy_cache .ruff_cache .pytest_cache build dist
