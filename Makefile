# connbeat build, test and benchmark entry points. Every target works on a
# fresh Debian machine once .ci/run's packages are installed.

GO       ?= go
VERSION  := $(shell cat VERSION)
BINARY   := connbeat
# The elastic forks are not in the checksum database; go.sum pins them.
export GONOSUMDB := github.com/elastic
GOTEST_FLAGS ?= -count=1 -timeout 25m

.PHONY: all build run test bench fuzz clean

all: build

build:
	$(GO) build -trimpath -ldflags "-s -w" -o $(BINARY) .

# Run with the shipped config (console output), as root so that every
# process's sockets can be joined to it.
run: build
	./$(BINARY) -e -c connbeat.yml --strict.perms=false

# Every test: unit, fuzz seed corpora, integration against the real kernel
# and the servers the tests start themselves.
test:
	$(GO) test $(GOTEST_FLAGS) ./...

# A short fuzzing pass over every parser of kernel text and wire formats.
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf $(BINARY) build dist

# MAKE:performance (bench-overhead, workload benchmarks)

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
