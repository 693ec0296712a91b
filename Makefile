# Krystal: `make run` shows the graph live in this terminal; `make test` runs the tests.
SHELL := /bin/bash
ENV := tools/krystal-env

.PHONY: setup run test test-stress bench lint clean distclean test-compat

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
