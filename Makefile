# The contact ledger. `make run` serves the API on the embedded store;
# `make test` runs every test, starting a throwaway PostgreSQL itself.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: run build test soak lint fuzz bench screenshots

## run: serve the API on the embedded store in ./data (http://localhost:8080)
run:
	$(GO) run ./cmd/ledger serve

## build: a static binary in bin/ledger
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ledger ./cmd/ledger

## test: every test, with the race detector, against the embedded store and a throwaway PostgreSQL (and headless Chromium for the console)
test:
	scripts/ensure-chromium.sh
	scripts/with-postgres.sh $(GO) test -race -count=1 -timeout 20m ./...

## soak: the crash, concurrency, erasure and property tests, longer (LEDGER_SOAK=1), on both stores
soak:
	LEDGER_SOAK=1 RAPID_CHECKS=$${RAPID_CHECKS:-100} scripts/with-postgres.sh $(GO) test -race -count=1 -timeout 60m -v \
		-run 'TestCrashRecovery|TestConcurrentCommands|TestErasureUnderLoad|TestLifecycleProperties|TestServiceProperties' \
		./cmd/ledger/ ./domain/contact/

## lint: go vet and gofmt
lint:
	$(GO) vet ./...
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

## fuzz: run every fuzz target for FUZZTIME each (default 60s); crashers land in testdata/fuzz
fuzz:
	scripts/fuzz.sh

## bench: every benchmark figure on the embedded store and a throwaway PostgreSQL (see BENCHMARKS.md); BENCH_FLAGS=--scale=0.1 for a quick run
bench: build
	scripts/with-postgres.sh bin/ledger bench $(BENCH_FLAGS)

## screenshots: the console's main pages as PNGs in docs/screenshots (desktop 1280x800, phone 390 px)
screenshots:
	scripts/ensure-chromium.sh
	LEDGER_SCREENSHOTS=$(CURDIR)/docs/screenshots $(GO) test -count=1 -run 'TestConsoleLayout' ./cmd/ledger/
