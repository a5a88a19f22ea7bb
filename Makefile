# One command for each thing a developer does. `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DIR ?= local-cluster

.PHONY: help setup system-packages cluster cluster-down test test-fast lint clean

help:
	@echo "make cluster       set up, then start a local cluster (ZooKeeper, 3 nodes, controller, proxy on :6380)"
	@echo "make cluster-down  stop the local cluster"
	@echo "make test          set up, then run ruff and the whole test suite (what CI runs)"
	@echo "make test-fast     the tests without the slow fault tests"

# Debian packages the store needs at run time and in tests: ZooKeeper (coordination),
# redis-server and redis-tools (redis-cli, redis-benchmark, and the reference server the tests compare with).
system-packages:
	@missing=""; \
	[ -f /usr/share/java/zookeeper.jar ] || missing="$$missing zookeeper"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v redis-cli >/dev/null || missing="$$missing redis-tools"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing default-jre-headless; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

setup: system-packages $(VENV)/.installed

cluster: setup
	$(BIN)/kvctl local up --dir $(DIR)

cluster-down:
	$(BIN)/kvctl local down --dir $(DIR)

lint: setup
	$(BIN)/ruff check .

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -q

test-fast: setup
	$(BIN)/pytest -q -m 'not slow'

# Our cluster side by side with Redis; BENCH_ARGS=--quick for a smoke run (see README.md, Benchmarks).
.PHONY: bench
bench: setup
	$(BIN)/kvctl bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
