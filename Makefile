# runlog: `make demo` and `make test` do all set-up on a fresh Debian machine.
SHELL := /bin/bash
# Debian's interpreter: it starts about 1 ms sooner than a shared-library
# build (every scheduler call pays interpreter start-up), and `make deps`
# installs it where it is missing.
PYTHON ?= /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= $(CURDIR)/.demo

.PHONY: all deps bench-deps venv lint typecheck unit test demo bench stress sql clean install criu

all: test

# Debian packages, installed only when missing: a Python with venv, a
# static busybox for the demo's and the tests' container bundles, and
# libseccomp for linux.seccomp (loaded with ctypes, as runc links it).
DEBS := $(if $(shell $(PYTHON) -c 'import venv, ensurepip' 2>/dev/null && echo ok),,python3 python3-venv)
DEBS += $(if $(shell dpkg -s busybox-static 2>/dev/null | grep -q '^Status: install ok' && echo ok),,busybox-static)
DEBS += $(if $(shell dpkg -s libseccomp2 2>/dev/null | grep -q '^Status: install ok' && echo ok),,libseccomp2)
DEBS += $(if $(shell command -v ps),,procps)
# podman and its conmon, for the tests that run containers under them.
DEBS += $(if $(shell command -v conmon),,conmon)
DEBS += $(if $(shell command -v podman),,podman)
# runc, for the tests that run `runc spec`'s bundle side by side with it
# and for the benchmarks.
DEBS += $(if $(shell command -v runc),,runc)
# CRIU, for checkpoint and restore (`make criu` builds a newer one where
# this one fails its check).
DEBS += $(if $(shell command -v criu),,criu)
# PostgreSQL 15's server, for the tests of the cluster-wide log (runlog ship).
DEBS += $(if $(wildcard /usr/lib/postgresql/15/bin/initdb),,postgresql-15)
# The rootless tests: runc side by side, newuidmap/newgidmap; the Slurm
# tests start a one-node Slurm 22.05 cluster of their own (munged,
# slurmctld, slurmd) and call srun/sbatch.
DEBS += $(if $(shell command -v newuidmap),,uidmap)
DEBS += $(if $(shell command -v munged),,munge)
DEBS += $(if $(shell command -v slurmctld),,slurmctld)
DEBS += $(if $(shell command -v slurmd),,slurmd)
DEBS += $(if $(shell command -v srun),,slurm-client)

# Another apt or dpkg (unattended-upgrades, a second `make`) may hold its
# lock: wait for it, as apt can, rather than fail at once.
APT := apt-get -o DPkg::Lock::Timeout=600

deps:
	@if [ -n "$(strip $(DEBS))" ]; then \
		$(APT) update && DEBIAN_FRONTEND=noninteractive $(APT) install -y $(strip $(DEBS)); \
	fi

# runc, for the side-by-side benchmarks: in `deps` now, as the tests use it.
bench-deps: deps

venv: $(STAMP)

$(STAMP): pyproject.toml | deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,postgres]'
	$(PY) -m engine.entry $(VENV)/bin/runlog
	touch $@

lint: $(STAMP)
	$(PY) -m ruff check engine tests bench migrations
	$(PY) -m ruff format --check engine tests bench migrations

typecheck: $(STAMP)
	$(PY) -m mypy --strict engine

unit: $(STAMP) deps criu
	$(PY) -m pytest -q

# CRIU for checkpoint/restore. Debian 12's criu 3.17 fails `criu check` on
# newer kernels (it cannot read 6.18's vDSO): only there, CRIU is built
# from Debian's newer source package into .criu/ (about 30 s), and the
# tests run it through RUNLOG_CRIU.
CRIU_DIR := $(CURDIR)/.criu
criu: deps
	scripts/build-criu $(CRIU_DIR)

test: lint typecheck unit

# The main job: a container driven through its whole lifecycle, then its
# history read back from the event log.
demo: $(STAMP) deps
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	$(PY) -m engine.demo --db $(DEMO_DIR)/events.db --root $(DEMO_DIR)/run

bench: $(STAMP) bench-deps
	$(PY) -m engine.entry $(VENV)/bin/runlog  # the code file as the sources are now
	$(PY) bench/run.py
	$(PY) bench/containers.py
	$(PY) bench/commands.py
	$(PY) bench/monitors.py
	$(PY) bench/control.py
	$(PY) bench/audit.py
	$(PY) bench/chain.py
	$(PY) bench/cluster.py
	$(PY) bench/rootless.py

# runlog on the PATH without a venv path in oci.conf: a venv of its own under
# $(PREFIX)/lib/runlog, and the fast entry stub (engine/entry.py) as
# $(PREFIX)/bin/runlog. DESTDIR for packagers.
PREFIX ?= /usr/local
INSTALL_VENV = $(DESTDIR)$(PREFIX)/lib/runlog
install: deps
	$(PYTHON) -m venv --clear $(INSTALL_VENV)
	$(INSTALL_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(INSTALL_VENV)/bin/python -m pip install --quiet $(CURDIR)
	mkdir -p $(DESTDIR)$(PREFIX)/bin
	# Outside the checkout: the stub must point at the installed package.
	cd / && $(INSTALL_VENV)/bin/python -m engine.entry $(DESTDIR)$(PREFIX)/bin/runlog

# Churn under load: 64 containers, 8 workers, 8 state pollers; commands
# against events, sequence gaps, leftovers, p50/p99 (DURATION in seconds).
DURATION ?= 300
stress: $(STAMP) deps
	$(PY) bench/stress.py --duration $(DURATION)

# Regenerate the hot path's SQL from the SQLAlchemy tables.
sql: $(STAMP)
	$(PY) -m engine.eventlog.gensql > engine/eventlog/sql.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) $(CRIU_DIR) .mypy_cache .ruff_cache .pytest_cache build dist
