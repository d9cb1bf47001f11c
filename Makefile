# connbeat build, test and benchmark entry points. Every target works on a
# fresh Debian machine once .ci/run's packages are installed.

GO       ?= go
VERSION  := $(shell cat VERSION)
BINARY   := connbeat
# The elastic forks are not in the checksum database; go.sum pins them.
export GONOSUMDB := github.com/elastic
GOTEST_FLAGS ?= -count=1 -timeout 25m

.PHONY: all build run test test-deps test-race test-arm64 bench fuzz clean

all: build

build:
	$(GO) build -trimpath -ldflags "-s -w" -o $(BINARY) .

# Run with the shipped config (console output), as root so that every
# process's sockets can be joined to it.
run: build
	./$(BINARY) -e -c connbeat.yml --strict.perms=false

# Every test: unit, fuzz seed corpora, integration against the real kernel
# and the servers the tests start themselves. test-deps installs the Debian
# packages they need first (as root; it does nothing when all are there).
test: test-deps
	$(GO) test $(GOTEST_FLAGS) ./...

test-deps:
	tools/test-deps.sh

# The packages that run goroutines of their own (the poll loop's hand-off
# and shutdown, the parallel fd scan, the outputs' readers and writers)
# under the race detector, which needs cgo and gcc. A subset: each linked
# package is built again with -race.
RACE_PKGS ?= ./beater ./procs ./outputs/zeromq ./outputs/http
test-race:
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 15m $(RACE_PKGS)

# libbeat's seccomp policy and the architecture-sensitive pure-Go packages
# (wire decoders, /proc parsers) built for arm64 and run under qemu-user.
test-arm64:
	GO=$(GO) tools/test-arm64.sh

# A short fuzzing pass over every parser of kernel text and wire formats.
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# The workload benchmark (root): idle loopback connections held by child
# processes (1,000, 10,000, 20,000 and 40,000 connections; each is two
# sockets), connbeat's cold and warm poll per socket source, `ss -tan` and
# `ss -tanp` on the same workload, and the built agent's steady CPU and RSS,
# printed as one table; then 40,000 connections in 50 processes, each in a
# network namespace of its own, against the same in one namespace (-netns).
# BENCH_FLAGS adds tools/bench flags (-h lists them).
BENCH_FLAGS ?=
bench: build
	$(GO) build -o build/connbeat-bench ./tools/bench
	./build/connbeat-bench -n 1000,10000,20000,40000 -netns 50 -agent ./$(BINARY) $(BENCH_FLAGS)

clean:
	rm -rf $(BINARY) build dist

# Generated code: the bpf source's program (connections/bpfiter/iter.bpf.c)
# compiled by bpf2go (a Go tool dependency) into iter_bpfel.o and
# iter_bpfeb.o and the Go that embeds them, all committed. Needs clang,
# llvm-strip and libbpf's headers (Debian: clang llvm libbpf-dev).
.PHONY: generate check-generate
generate:
	$(GO) generate ./...

# CI: regenerates into the tree and fails if that changed or added a file,
# i.e. if the committed objects are not what the committed C compiles to.
# It wants a clean tree to start from (commit or stash first).
# clang's output is byte-for-byte stable for one clang version only, so the
# check needs Debian's clang 14, the one .ci/run installs (bookworm); with
# another clang it stops before comparing.
CLANG_MAJOR := 14
check-generate:
	@clang --version 2>/dev/null | grep -q 'clang version $(CLANG_MAJOR)\.' || \
	  { echo "check-generate: needs clang $(CLANG_MAJOR) (found: $$(clang --version 2>/dev/null | head -1))" >&2; exit 1; }
	$(MAKE) generate
	@if [ -n "$$(git status --porcelain)" ]; then \
	  git status --porcelain; git --no-pager diff --stat; \
	  echo "check-generate: 'make generate' changed the tree: commit what it generates" >&2; exit 1; \
	fi

# The README's pictures of `connbeat top` and `connbeat map`, from real runs
# (root; installs tmux, graphviz, aha and chromium when missing).
.PHONY: screenshots
screenshots: build
	CONNBEAT=./$(BINARY) tools/screenshots.sh

# Deliberate breaks of the agent (tools/mutants/mutants.go), each with the
# test that must catch it, applied one at a time to a temporary copy of the
# tree: one line per mutant, and a failure if any survives. Root, like
# make test (kernel tests). MUTANTS_FLAGS=-fast leaves out the mutants
# whose tests run the agent or rabbitmq-server; -run REGEXP picks some.
MUTANTS_FLAGS ?=
.PHONY: mutants
mutants: test-deps
	$(GO) run ./tools/mutants $(MUTANTS_FLAGS)

# Go benchmark functions of the parsers, the join, classify and dedup, so a
# regression shows in isolation.
.PHONY: bench-go bench-overhead bench-conntrack
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Host overhead (root): Debian's nginx loaded by wrk on loopback, with and
# without connbeat polling every second, interleaved pairs (PAIRS, DURATION).
bench-overhead: build
	tools/bench-overhead.sh ./$(BINARY)

# The conntrack input (root, Debian's conntrack tool): entries created and
# deleted through ctnetlink, no packets, at 10,000, 20,000 and 40,000
# events a second and as fast as the machine allows, while the built agent
# writes them to a file and `conntrack -E` prints them; one table row per
# rate. BENCH_CONNTRACK_FLAGS adds flags (-h lists them).
BENCH_CONNTRACK_FLAGS ?=
bench-conntrack: build
	$(GO) build -o build/connbeat-bench-conntrack ./tools/benchconntrack
	./build/connbeat-bench-conntrack -agent ./$(BINARY) $(BENCH_CONNTRACK_FLAGS)

# Connection lifecycle (root): short loopback connections at 1,000, 5,000
# and 20,000 a second for 10 s from client processes, with and without the
# built agent (defaults; flow_events), in each capture mode: flows
# received per connection, capture losses, connbeat's CPU per 1,000
# connections, the workload's own CPU, private memory; then 40,000 idle
# sockets: connbeat's idle CPU and memory per capture mode beside
# Metricbeat's system/socket (period 1s), which the tool builds outside
# the tree from go.mod's beats version (kept in $TMPDIR between runs).
# BENCH_LIFECYCLE_FLAGS adds flags (-h lists them).
.PHONY: bench-lifecycle
BENCH_LIFECYCLE_FLAGS ?=
bench-lifecycle: build
	$(GO) build -o build/connbeat-bench-lifecycle ./tools/benchlifecycle
	./build/connbeat-bench-lifecycle -agent ./$(BINARY) -gomod go.mod $(BENCH_LIFECYCLE_FLAGS)

# Packages: connbeat_<version>_<arch>.deb, connbeat-<version>.<arch>.rpm and
# connbeat-<version>-linux-<arch>.tar.gz in dist/, for amd64 and arm64, built
# with nfpm (a Go tool dependency) and GNU tar; the version is VERSION's.
.PHONY: package test-package
PACKAGE_ARCHS ?= amd64 arm64
package:
	@for arch in $(PACKAGE_ARCHS); do GO=$(GO) packaging/package.sh $$arch || exit 1; done

# Builds the amd64 packages, then installs the deb (root: dpkg -i, runs it as
# the connbeat user, upgrades and purges it) and inspects the rpm and tar.gz.
test-package:
	GO=$(GO) packaging/package.sh amd64
	CONNBEAT_DIST=$(CURDIR)/dist $(GO) test $(GOTEST_FLAGS) -v ./packaging/
