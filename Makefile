# MovieRec — the two commands a newcomer needs are `make run` and `make test`.
# Everything else here is a step those two call, or a tool for developers.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: bench-snapshot bench-scale help venv install data java-check system-check test test-fast lint format run bench bench-train clean css css-check bench-recs bench-catalog audit test-compose bench-kernel

help:
	@echo "make run    start the whole stack on this machine (no Docker needed)"
	@echo "make test   install test dependencies and run every test"
	@echo "make bench  run every benchmark and write bench/REPORT.md"

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "MovieRec needs Python 3.11+"' \
	  || { echo "error: Python 3.11 or newer is required (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PIP) install -q -e '.[test]'
	@touch $(STAMP)

venv: $(PY)
install: $(STAMP)

# make data DATASET=ml-1m fetches another MovieLens release into data/<DATASET> (ml-100k, ml-1m,
# ml-10m, ml-20m, ml-25m, ml-32m, ml-latest-small; README "Data sources and formats"), and
# `make run DATASET=...` serves it (DATA_DIR points there unless set).
DATASET ?=
ifneq ($(DATASET),)
export DATA_DIR ?= $(CURDIR)/data/$(DATASET)
endif
data: $(PY)
	$(PY) scripts/fetch_data.py $(if $(DATASET),--dataset $(DATASET))

java-check:
	@command -v java >/dev/null 2>&1 || { echo "error: Java 17+ is required for Spark. Install it, e.g. 'sudo apt-get install -y openjdk-17-jre-headless', then re-run."; exit 1; }
	@java -version 2>&1 | awk -F'"' '/version/ {split($$2,v,"."); if (v[1] < 17) {print "error: Java " $$2 " found; Spark needs Java 17+"; exit 1}}'

# The whole stack on this machine: embedded MongoDB, Spark master + worker, both APIs, the
# trainer worker and nginx (scripts/stack.toml describes them). Ctrl-C stops everything.
run: java-check install data
	$(PY) scripts/run_stack.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The system programs the tests need (java, nginx, chromium, npm): installed with apt-get when
# this user may (root or passwordless sudo), otherwise one error naming the command, at once.
system-check:
	@scripts/ensure_system.sh

test: system-check install data java-check css-check audit
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: install data
	$(VENV)/bin/pytest -m "not spark and not browser and not slow" $(PYTEST_ARGS)

clean:
	rm -rf var test-output .pytest_cache .ruff_cache

# docker-compose.yml for real, on podman (root): local base images from Debian packages, the
# project's images through the compose file's build sections, `up`, the whole user flow through
# nginx, retrain on the Spark cluster, rollback, scale, `down -v` (tests/compose/). `make test`
# runs the same test when podman is there; here a missing tool is an error, not a skip.
test-compose: install data
	scripts/podman/install_packages.sh
	MOVIEREC_REQUIRE_COMPOSE=1 $(VENV)/bin/pytest -m compose tests/compose $(PYTEST_ARGS)

# --- web front: Tailwind CSS (the built file is committed; CI checks it is current) ---
FRONTEND := frontend
TAILWIND := cd $(FRONTEND) && ./node_modules/.bin/tailwindcss -i src/input.css --minify

$(FRONTEND)/node_modules/.package-lock.json: $(FRONTEND)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "error: npm is required to build the CSS (sudo apt-get install -y npm)"; exit 1; }
	cd $(FRONTEND) && npm ci --no-audit --no-fund --loglevel=error

css: $(FRONTEND)/node_modules/.package-lock.json $(PY)
	$(TAILWIND) -o site/assets/app.css
	$(PY) $(FRONTEND)/stamp_assets.py

css-check: $(FRONTEND)/node_modules/.package-lock.json $(PY)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  ( $(TAILWIND) -o "$$tmp/app.css" 2>/dev/null ) && \
	  cmp -s "$$tmp/app.css" $(FRONTEND)/site/assets/app.css || \
	  { echo "error: frontend/site/assets/app.css is stale: run 'make css' and commit it"; exit 1; }
	@$(PY) $(FRONTEND)/stamp_assets.py --check
	@echo "css-check: frontend/site/assets/app.css and asset hashes are current"

# Recommender latency (known user, fold-in, similar) under a fixed-rate loopback load, in-process
# compute, and the similar-movie factor choice; writes bench/out/recs.md.
bench-recs: install data
	$(PY) bench/bench_recs.py $(BENCH_RECS_ARGS)

# Catalog API requests/s and p50/p99 (search, popular, rating writes) under a bounded loopback
# load against the embedded server, plus an exact-stats audit; writes bench/out/catalog.md.
bench-catalog: install data
	$(PY) bench/bench_catalog.py $(BENCH_CATALOG_ARGS)

# Training: local vs our Spark engine vs MLlib ALS vs a naive Spark loop (fit s, RMSE, MAE,
# peak RSS) and the top-10 ranking table; writes bench/out/train.md.
# BENCH_TRAIN_ARGS="--sizes small,10m" adds the seeded synthetic 10M-rating set (long).
BENCH_TRAIN_ARGS ?= --sizes small
bench-train: install data java-check
	$(PIP) install -q -e '.[test,bench]'  # the peers (implicit, Surprise): benchmark only
	$(PY) bench/bench_train.py $(BENCH_TRAIN_ARGS)

# Dependency vulnerability audit (pip-audit against PyPI's advisory data). Fails on a known
# vulnerability that scripts/audit_ignore.toml does not explain; says loudly when the advisory
# API was unreachable and nothing could be audited (AUDIT_STRICT=1 makes that fail too).
audit: install
	$(PY) scripts/audit.py

# The ALS kernel against implicit's ALS (conjugate gradient), same rank and iterations, on
# ml-latest-small and a 5M-rating synthetic set. implicit is a benchmark-only peer: installed
# into the venv here, never a runtime dependency. Prints the table (bench/REPORT.md quotes it).
bench-kernel: install data
	$(PIP) install -q implicit==0.7.3
	$(PY) bench/bench_kernel.py $(BENCH_KERNEL_ARGS)

# The retrain snapshot's MongoDB read: one cursor against userId ranges, and the stall another
# client of the embedded server sees meanwhile; writes bench/out/snapshot_read.md.
bench-snapshot: install
	$(PY) bench/bench_snapshot_read.py $(BENCH_SNAPSHOT_ARGS)

# MovieLens-25M scale, end to end (issue 16): import, a serving stack, retrain, recommender and
# catalog latency, our Spark engine vs MLlib on a 2-worker standalone cluster, local engine vs
# implicit; writes bench/out/scale.md and its section of bench/REPORT.md. The data set is a
# parameter: SCALE_DATASET=synthetic-1m (minutes), synthetic-10m, ml-25m once downloaded.
SCALE_DATASET ?= synthetic-25m
BENCH_SCALE_ARGS ?=
bench-scale: install java-check
	$(PIP) install -q implicit==0.7.3  # benchmark-only peer
	$(PY) scripts/fetch_data.py --dataset $(SCALE_DATASET)
	$(PY) bench/bench_scale.py --data-dir data/$(SCALE_DATASET) $(BENCH_SCALE_ARGS)

# Every benchmark, then bench/REPORT.md (machine, one table per area, ratios to references).
# BENCH_ARGS is passed to bench/run_all.py (e.g. BENCH_ARGS="--quick" or "--skip train").
bench: install data java-check
	$(PY) bench/run_all.py $(BENCH_ARGS)
