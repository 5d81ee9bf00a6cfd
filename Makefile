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
# Multiplies the request counts of `make bench`, e.g. 0.2 for a quick look.
BENCH_SCALE ?= 1
# How many fault schedules `make sim` runs, and from which seed (a random
# one unless given); SIM_FLAGS=-race runs them with the race detector.
SEEDS ?= 10000
ifeq ($(origin SIM_FIRST),undefined)
SIM_FIRST := $(shell echo $$((RANDOM * 32768 + RANDOM)))
endif
SIM_FLAGS ?=
# Cluster sizes `make scale` runs, one after the other. (128 does not converge
# on a 2-core machine yet: SCALE=128 to try.)
SCALE ?= 3,16,32,64

.PHONY: all build run test test-deps soak sim scale bench gobench fuzz clean

all: build

build:
	go build -o bin/dboutique ./cmd/dboutique

run: build
	./bin/dboutique $(ARGS)

# The network-namespace tests (real nodes in namespaces the tests create: mDNS
# discovery, and nodes restarted on new addresses) need root; they run on their
# own, verbosely, so that the output says whether they ran or why they were
# skipped.
NETNS_TESTS := ^(TestLANDiscovery|TestMDNS|TestAddressChangeRejoin)$$

test: test-deps
	go vet ./...
	go test -race -count=1 -skip '$(NETNS_TESTS)' ./...
	@echo '==> network-namespace tests (mDNS discovery, address changes; need root, skipped otherwise)'
	go test -race -count=1 -v -run '$(NETNS_TESTS)' ./cmd/dboutique ./p2p | grep -E '^(--- |ok|FAIL)|skipping|needs root'

# The RESP tests drive the real redis-cli, from Debian's redis-tools. As
# root, with apt-get, it is installed when missing (and a failed install
# fails the run); otherwise those tests are skipped.
test-deps:
	@if ! command -v redis-cli >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo '==> installing redis-tools (redis-cli) for the RESP tests'; \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get install -y -q redis-tools >/dev/null || \
				{ apt-get update -q >/dev/null && apt-get install -y -q redis-tools >/dev/null; }; \
		else \
			echo 'note: redis-cli not found and not root: the redis-cli tests will be skipped (apt-get install redis-tools)'; \
		fi; \
	fi

# The long runs of the churn and partition tests (make test runs them for
# about 30 s each): zero acknowledged writes may be lost.
soak:
	DBOUTIQUE_SOAK=$(SOAK) go test -race -count=1 -timeout 0 -v \
		-run '^(TestChurnLosesNoAcknowledgedWrite|TestPartitionHealCycles)$$' ./testcluster \
		| grep -E '^(=== RUN|--- |ok|FAIL|PASS)|(churn|partition)_test.go'

# Randomized fault schedules (node/sim_test.go) beyond the 200 that make
# test runs: a failing seed prints the command that replays it.
sim:
	@echo '==> $(SEEDS) fault schedules from seed $(SIM_FIRST)'
	DBOUTIQUE_SIM_SEEDS=$(SEEDS) DBOUTIQUE_SIM_FIRST=$(SIM_FIRST) \
		go test $(SIM_FLAGS) -count=1 -timeout 0 -v -run '^TestFaultSchedules$$' ./node \
		| grep -vE '^(=== (RUN|PAUSE|CONT|NAME)|\s+--- PASS)'

# For each size in SCALE, starts that many in-process nodes, adds one, kills
# one and leaves them alone for 10 s (testcluster/scale_test.go): prints the
# times to converge and to drop the killed node, the view changes while
# nothing failed (must be 0), probe and gossip traffic and CPU per node.
# Without the race detector: it measures.
scale:
	DBOUTIQUE_SCALE=$(SCALE) go test -count=1 -timeout 0 -v -run '^TestScale$$' ./testcluster

# Go micro-benchmarks of every package.
gobench:
	go test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

# D-Boutique against redis-server, side by side, on loopback: one node, a
# 3-node cluster and memory per entry (see scripts/bench.sh). Installs Debian's
# redis-server and redis-tools if they are missing (needs root).
bench: build
	BENCH_SCALE='$(BENCH_SCALE)' bash scripts/bench.sh

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
