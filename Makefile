# defender — see README.md.
SHELL := /bin/bash
GO    ?= go
# Every Go module in the tree: the library and its nested test/bench modules.
MODULES := $(shell find . -name go.mod -not -path './.git/*' -exec dirname {} \; | sort)
FUZZTIME ?= 3s

.PHONY: all test deps vet unit fuzz-short fuzz cover run bench loadtest

all: test

## test: install what the tests need, then vet and run every test with -race
test: deps vet unit fuzz-short

deps:
	@bash scripts/install-test-deps.sh

vet:
	@for m in $(MODULES); do echo "== go vet $$m"; (cd $$m && $(GO) vet ./...) || exit 1; done

unit:
	@for m in $(MODULES); do echo "== go test -race $$m"; (cd $$m && $(GO) test -race -count=1 -timeout 30m ./...) || exit 1; done

## fuzz-short: every fuzz target for $(FUZZTIME) (CI-sized); `make fuzz FUZZTIME=1m` for longer
fuzz-short:
	@bash scripts/fuzz.sh $(FUZZTIME)

fuzz:
	@bash scripts/fuzz.sh $(if $(filter 3s,$(FUZZTIME)),1m,$(FUZZTIME))

## cover: statement coverage per library package (target: >= 95%)
cover: deps
	@bash scripts/cover.sh

## run: the demo site on the embedded bbolt store
run:
	$(GO) run ./cmd/defender demo

## bench: every backend with the floors, the peers, benchstat, bench.md and charts (~10 min)
bench: deps
	set -o pipefail; $(GO) test -run '^$$' -bench . -benchmem -count 6 -benchtime 300ms -timeout 60m ./bench/ | tee bench/results/bench.txt
	set -o pipefail; cd bench/peers && $(GO) test -run '^$$' -bench . -benchmem -count 6 -benchtime 300ms -timeout 30m | tee ../results/peers.txt
	cd bench/loadtest && $(GO) tool benchstat ../results/bench.txt > ../results/benchstat.txt && $(GO) tool benchstat ../results/peers.txt > ../results/benchstat-peers.txt
	cd bench/loadtest && $(GO) run . report

## loadtest: the demo under load: 3 scenarios, every backend, no-defender and SQLite baselines (~11 min)
loadtest: deps
	cd bench/loadtest && $(GO) run . run
