# The contact ledger. `make run` serves the API on the embedded store;
# `make test` runs every test, starting a throwaway PostgreSQL itself.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# Release builds carry every key service (AWS KMS, GCP KMS, Azure Key
# Vault, Vault); `make run` and `make test` build without their SDKs.
RELEASE_TAGS := kms

.PHONY: run dev build release test soak lint complexity fuzz bench screenshots

## run: serve the API on the embedded store in ./data (http://localhost:8080); ARGS="--addr :9090" adds flags
# The binary replaces the recipe's shell (exec), so Ctrl-C reaches the
# ledger alone, which shuts down and exits 0: make has nothing to report.
run: dev
	exec bin/ledger-dev serve $(ARGS)

## dev: a development binary in bin/ledger-dev, without the cloud key services
dev:
	$(GO) build -o bin/ledger-dev ./cmd/ledger

## build: a static release binary in bin/ledger, with every key service
build:
	CGO_ENABLED=0 $(GO) build -tags '$(RELEASE_TAGS)' -trimpath -ldflags '$(LDFLAGS)' -o bin/ledger ./cmd/ledger

## release: the same as build
release: build

## test: every test, with the race detector, against the embedded store and a throwaway PostgreSQL (and headless Chromium for the console); with Node.js (installed as root when missing), the description's lint and generated TypeScript client
test:
	scripts/ensure-chromium.sh
	scripts/ensure-node.sh
	scripts/with-postgres.sh $(GO) test -race -count=1 -timeout 20m ./...

## soak: the crash, concurrency, erasure and property tests, longer (LEDGER_SOAK=1), on both stores
soak:
	LEDGER_SOAK=1 RAPID_CHECKS=$${RAPID_CHECKS:-100} scripts/with-postgres.sh $(GO) test -race -count=1 -timeout 60m -v \
		-run 'TestCrashRecovery|TestWebhookCrash|TestConcurrentCommands|TestErasureUnderLoad|TestLifecycleProperties|TestServiceProperties' \
		./cmd/ledger/ ./domain/contact/

# Linters are pinned in tools.mod (a go.mod of their own, so their
# dependencies never reach the service's build) and run with `go tool`:
# a fresh clone needs nothing installed beyond Go.
TOOL := $(GO) tool -modfile=tools.mod

## lint: go vet, staticcheck, gofmt and the complexity check; the release build's key services and the bench build are vetted too
lint: complexity
	$(GO) vet ./...
	$(TOOL) staticcheck ./...
	$(GO) vet -tags bench ./cmd/ledger/
	$(TOOL) staticcheck -tags bench ./cmd/ledger/
	$(GO) vet -tags '$(RELEASE_TAGS)' ./adapters/keyring/
	$(GO) test -count=1 -tags '$(RELEASE_TAGS)' ./adapters/keyring/
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

## complexity: fail when a function of production code or of the contract suites (internal/storetest) has a cyclomatic complexity over 30 (gocyclo; closures count toward their function; _test.go files are not checked; part of lint)
complexity:
	$(TOOL) gocyclo -over 30 -ignore '_test\.go$$' .

## fuzz: run every fuzz target for FUZZTIME each (default 60s); crashers land in testdata/fuzz
fuzz:
	scripts/fuzz.sh

## bench: every benchmark figure on the embedded store and a throwaway PostgreSQL (see BENCHMARKS.md); BENCH_FLAGS=--scale=0.1 for a quick run
# bin/ledger-bench is the ledger binary with the bench command (tag bench,
# code in internal/bench): the production binary carries no benchmark code.
bench:
	$(GO) build -tags bench -o bin/ledger-bench ./cmd/ledger
	scripts/with-postgres.sh bin/ledger-bench bench $(BENCH_FLAGS)

## screenshots: the console's main pages as PNGs in docs/screenshots (desktop 1280x800, phone 390 px)
screenshots:
	scripts/ensure-chromium.sh
	LEDGER_SCREENSHOTS=$(CURDIR)/docs/screenshots $(GO) test -count=1 -run 'TestConsoleLayout' ./cmd/ledger/
