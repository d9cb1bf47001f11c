#!/usr/bin/env bash
# Cross-compiles the tests of connbeat's architecture-sensitive pure-Go
# packages for arm64 and runs them under qemu-user (Debian's qemu-user):
# libbeat's seccomp policy with connbeat's change (internal/syscallfilter),
# the decoders of kernel wire formats (netlink, the BPF iterator's records,
# the event capture's ring buffer records),
# the /proc parsers and join, redaction, classification and dedup. Tests
# that need the running kernel (named *Kernel*) are skipped: qemu-user does
# not translate bpf(2) or every netlink family.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
QEMU=${QEMU:-qemu-aarch64}
if ! command -v "$QEMU" >/dev/null; then
  echo "test-arm64: $QEMU not found (Debian package qemu-user; make test-deps installs it)" >&2
  exit 1
fi
pkgs=(
  ./internal/syscallfilter
  ./connections/netlink
  ./connections/bpfiter
  ./capture
  ./procs
  ./procs/redact
  ./classify
  ./dedup
  ./model
)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for pkg in "${pkgs[@]}"; do
  bin="$out/$(echo "$pkg" | tr / _).test"
  CGO_ENABLED=0 GOOS=linux GOARCH=arm64 "$GO" test -c -o "$bin" "$pkg"
  [ -f "$bin" ] || continue # no test files
  echo "== arm64 $pkg"
  (cd "$pkg" && "$QEMU" "$bin" -test.count=1 -test.skip 'Kernel' -test.timeout 5m)
done
