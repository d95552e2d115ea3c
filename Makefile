.PHONY: setup build run test bench conformance install uninstall

# make install [PREFIX=/usr/local] [DESTDIR=...] [CONFIGURATION=release]
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
DESTDIR ?=
CONFIGURATION ?= release

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

# Builds switchboard ($(CONFIGURATION)) and copies it to $(DESTDIR)$(BINDIR).
install:
	swift build -c $(CONFIGURATION) --product switchboard
	install -d "$(DESTDIR)$(BINDIR)"
	install -m 755 "$$(swift build -c $(CONFIGURATION) --show-bin-path)/switchboard" "$(DESTDIR)$(BINDIR)/switchboard"

uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/switchboard"
