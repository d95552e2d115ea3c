.PHONY: setup build run test bench conformance

setup:
	scripts/setup.sh --test

build:
	swift build

run:
	scripts/run-example.sh

test:
	scripts/test.sh

bench:
	scripts/bench.sh

# The conformance suite against any implementation: make conformance ARGS='--tcp 127.0.0.1:7400'
conformance:
	python3 conformance/run.py $(ARGS)
