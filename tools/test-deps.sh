#!/usr/bin/env bash
# Installs the Debian packages connbeat's tests use: the servers they start
# (redis-server, rabbitmq-server, nginx), the tools they compare against or
# drive (kcat, python3-zmq, conntrack, nftables, wrk, rpm, setcap,
# systemd-analyze, strace, tmux for `connbeat top`, Graphviz's dot for
# `connbeat map`), the Docker Engine the conntrack test publishes a port
# with (docker.io; the project's machines run it already, and apt starts it
# where systemd runs), clang for `make check-generate`, gcc for
# `make test-race` (the race detector needs cgo) and qemu-user for
# `make test-arm64`. Nothing else is started: each test starts its own
# instance on its own port. `make test` runs this
# first, so a newcomer's run and CI's are the same; it does nothing when
# every package is already there.
set -euo pipefail

packages=(
  ca-certificates make git iproute2 procps passwd
  redis-server rabbitmq-server kcat python3 python3-zmq
  nginx wrk nftables conntrack rpm libcap2-bin systemd docker.io
  clang llvm libbpf-dev gcc libc6-dev qemu-user strace
  tmux graphviz
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "test-deps: missing ${missing[*]}, and this is not a Debian-like system with apt-get: install them by hand" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "test-deps: missing ${missing[*]}: run as root (sudo make test), or install them with" >&2
  echo "  sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts some services on install where systemd runs; the tests
# start their own instances on their own ports.
systemctl stop redis-server rabbitmq-server nginx 2>/dev/null || true
