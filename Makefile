# D-Boutique development tasks. Needs Go 1.26+ and bash.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

# Arguments passed to the node by `make run`, e.g. make run ARGS='--listen :5050'
ARGS ?=
# Time each benchmark runs (go test -benchtime), e.g. 1s or 100x.
BENCHTIME ?= 1s
# Time each fuzz target runs in `make fuzz`.
FUZZTIME ?= 10s
# How long `make soak` runs the churn test and the partition/heal cycles, each.
SOAK ?= 10m

.PHONY: all build run test soak bench fuzz clean

all: build

build:
	go build -o bin/dboutique ./cmd/dboutique

run: build
	./bin/dboutique $(ARGS)

# The network-namespace tests (real mDNS discovery between nodes in namespaces
# the tests create) need root; they run on their own, verbosely, so that the
# output says whether they ran or why they were skipped.
NETNS_TESTS := ^(TestLANDiscovery|TestMDNS)$$

test:
	go vet ./...
	go test -race -count=1 -skip '$(NETNS_TESTS)' ./...
	@echo '==> network-namespace tests (mDNS discovery; need root, skipped otherwise)'
	go test -race -count=1 -v -run '$(NETNS_TESTS)' ./cmd/dboutique ./p2p | grep -E '^(--- |ok|FAIL)|skipping|needs root'

# The long runs of the churn and partition tests (make test runs them for
# about 30 s each): zero acknowledged writes may be lost.
soak:
	DBOUTIQUE_SOAK=$(SOAK) go test -race -count=1 -timeout 0 -v \
		-run '^(TestChurnLosesNoAcknowledgedWrite|TestPartitionHealCycles)$$' ./testcluster \
		| grep -E '^(=== RUN|--- |ok|FAIL|PASS)|(churn|partition)_test.go'

bench:
	go test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

# Runs every fuzz target of every package for FUZZTIME each, one at a time
# (go test -fuzz takes one target in one package per run).
fuzz:
	@dirs=$$(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.Dir}}{{end}}' ./...); \
	for dir in $$dirs; do \
		targets=$$(cd "$$dir" && go test -list '^Fuzz' .); \
		for name in $$(grep -E '^Fuzz[[:alnum:]_]*$$' <<<"$$targets" || true); do \
			echo "==> $$name in $$dir for $(FUZZTIME)"; \
			(cd "$$dir" && go test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) .); \
		done; \
	done

clean:
	rm -rf bin
