# Krystal: `make run` shows the graph live in this terminal; `make test` runs the tests.
SHELL := /bin/bash
ENV := tools/krystal-env

.PHONY: setup run test test-stress bench lint clean distclean test-compat test-hosts

setup:
	@tools/setup.sh

run: setup
	@$(ENV) krystal run --view

test: setup
	@$(ENV) python -m pytest $(PYTEST_ARGS)

# The suite with two CPU-burning loops beside it (KRYSTAL_STRESS_LOOPS=N for more): run before submitting.
test-stress: setup
	@tools/test_stress.sh $(MAKE) --no-print-directory test

bench: setup
	@for b in bench/*_bench.py; do $(ENV) python -m bench.$$(basename $$b .py) $(BENCH_ARGS) || exit 1; done

lint: setup
	@$(ENV) ruff check src tests bench launch tools && $(ENV) mypy

clean:
	rm -rf build install log

distclean: clean
	rm -rf .venv .venv-compat-*

# The ROS-free cores on Humble's (Python 3.10) and Jazzy's (Python 3.12) library versions; no ROS needed.
test-compat:
	@tools/test_compat.sh

# The graph across test hosts (network namespaces; root): discovery, partition, kill -9 (also of every
# node in turn under `krystal run --isolate`), and the multi-host and soak benchmarks' quick runs
# (about 7 minutes). Skips with the reason elsewhere.
test-hosts: setup
	@KRYSTAL_TEST_HOSTS=1 $(ENV) python -m pytest tests/test_hosts.py $(PYTEST_ARGS)
	@KRYSTAL_TEST_HOSTS=1 $(ENV) python -m pytest tests/test_supervise.py -k each_node_in_turn $(PYTEST_ARGS)
	@KRYSTAL_TEST_HOSTS=1 $(ENV) python -m pytest tests/test_bench.py -k "hosts_bench or soak_bench" $(PYTEST_ARGS)
