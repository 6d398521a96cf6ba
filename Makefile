# The two commands: `make run` (the whole stack, in the foreground) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench services venv clean

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

test: venv services
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check src tests

bench: venv
	$(BIN)/python bench/dbaas.py

clean:
	rm -rf $(VENV) .run .pytest_cache
