# The two commands: `make run` (the whole stack, in the foreground) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run run-ha test test-ha lint bench bench-dbaas bench-failover bench-bootstrap chaos services venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

services:
	sudo_cmd=""; [ "$$(id -u)" = 0 ] || sudo_cmd=sudo; $$sudo_cmd scripts/ensure-services.sh

run: venv services
	$(BIN)/rideshare up

# The stack on a local 3-node RabbitMQ cluster and 3-server ZooKeeper ensemble (rideshare infra).
run-ha: venv services
	$(BIN)/rideshare infra up --nodes 3
	set -a && . $${RIDESHARE_RUN_DIR:-.run}/infra.env && set +a && $(BIN)/rideshare up

test: venv services
	$(BIN)/pytest -q --ignore=tests/ha --ignore=tests/containers/test_compose_ha.py

# On replicated infrastructure (3 RabbitMQ nodes, 3 ZooKeeper servers of the tests' own, and the
# compose file's ha profile): infrastructure nodes killed under load. Run by CI (.ci/run) apart
# from make test, for time.
test-ha: venv services
	$(BIN)/pytest -q tests/ha tests/containers/test_compose_ha.py

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src/rideshare

# Benchmarks start a stack of their own (and remove it); BENCH_ARGS passes options through.
bench: venv services
	$(BIN)/python -m rideshare.bench --start-stack $(BENCH_ARGS)

bench-dbaas: venv services
	$(BIN)/python bench/dbaas.py $(BENCH_ARGS)

bench-failover: venv services
	$(BIN)/python bench/failover.py $(BENCH_ARGS)

# The fault campaign, long: every kind of fault in a seeded round-robin, then the checker.
CHAOS_DURATION ?= 1800
CHAOS_SEED ?= 1
CHAOS_NODES ?= 1
chaos: venv services
	$(BIN)/python -m tests.campaign --duration $(CHAOS_DURATION) --seed $(CHAOS_SEED) --nodes $(CHAOS_NODES)

# 1,000,000 rides: a slave crashed under a steady write load, and what its replacement costs.
bench-bootstrap: venv services
	$(BIN)/python bench/bootstrap.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .run .pytest_cache
