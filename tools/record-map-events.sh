#!/usr/bin/env bash
# Records the connbeat events that servicemap's tests and the README's map
# screenshot read, from a real run: three "hosts" (network namespaces on one
# bridge, each with its own hostname through a UTS namespace), connbeat
# running on two of them, in each event format.
#
#   edge (192.0.2.10, agent)  client: 3 connections to api, 1 to ext
#   app  (192.0.2.20, agent)  api listens on :8080; worker: 2 connections to db on 127.0.0.1:5432
#   ext  (192.0.2.30)         ext listens on :443; no agent, so it shows as an address
#
# The processes are the tests' cbpeer helper copied under those names.
# Addresses are from 192.0.2.0/24 (TEST-NET-1), inside namespaces this
# script creates and deletes. Needs root, ip(8) and unshare(1).
#
#   tools/record-map-events.sh [OUTDIR]   (default servicemap/testdata)
#   CONNBEAT=./connbeat tools/record-map-events.sh   (use a built binary)
# writes OUTDIR/classic.ndjson and OUTDIR/ecs.ndjson.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath "${1:-servicemap/testdata}")
mkdir -p "$out"
export PATH="$PATH:/usr/local/go/bin" GONOSUMDB=github.com/elastic

work=$(mktemp -d)
pids=() agents=()
cleanup() {
  for p in "${pids[@]}" "${agents[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in sw edge app ext; do ip netns del "cbmap-$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

connbeat=${CONNBEAT:-}
if [ -z "$connbeat" ]; then
  connbeat="$work/connbeat"
  go build -o "$connbeat" .
fi
go build -o "$work/cbpeer" ./tests/testdata/peer
for name in client api worker db ext; do cp "$work/cbpeer" "$work/$name"; done

ip netns add cbmap-sw
ip -n cbmap-sw link add br0 type bridge
ip -n cbmap-sw link set br0 up
n=0
for host in edge app ext; do
  n=$((n + 10))
  ip netns add "cbmap-$host"
  ip -n "cbmap-$host" link set lo up
  ip link add "cbm-$host" netns "cbmap-$host" type veth peer name "p-$host" netns cbmap-sw
  ip -n cbmap-sw link set "p-$host" master br0 up
  ip -n "cbmap-$host" addr add "192.0.2.$n/24" dev "cbm-$host"
  ip -n "cbmap-$host" link set "cbm-$host" up
done

# on HOST PROGRAM ARGS...: becomes PROGRAM in HOST's namespaces, hostname
# HOST (run it in the background: $! is then the program's pid).
on() {
  local host=$1; shift
  exec ip netns exec "cbmap-$host" unshare --uts sh -c 'hostname "$0" && exec "$@"' "$host" "$@"
}
# peer HOST NAME ARGS...: starts a peer and waits for its ready line.
peer() {
  local host=$1 name=$2 log="$work/peer-${#pids[@]}.out"; shift 2
  on "$host" "$work/$name" "$@" >"$log" &
  pids+=($!)
  for _ in $(seq 100); do grep -q ready "$log" 2>/dev/null && return; sleep 0.05; done
  echo "record-map-events: $name on $host did not start" >&2; exit 1
}

peer ext ext listen 192.0.2.30:443
peer app api listen 0.0.0.0:8080
peer app db listen 127.0.0.1:5432
peer app worker connect 127.0.0.1:5432 "" 2
peer edge client connect 192.0.2.20:8080 "" 3
peer edge client connect 192.0.2.30:443 "" 1

for format in classic ecs; do
  : >"$out/$format.ndjson"
  agents=()
  for host in edge app; do
    dir="$work/agent-$host-$format"
    mkdir -p "$dir"
    cat >"$dir/connbeat.yml" <<YML
connbeat:
  poll_interval: 200ms
  aggregation: 1s
  event_format: $format
  expose_cmdline: false
output.console:
  codec.json.pretty: false
queue.mem:
  flush.timeout: 50ms
path.home: $dir
logging.level: warning
YML
    on "$host" "$connbeat" -c "$dir/connbeat.yml" --strict.perms=false -e >"$dir/events" 2>"$dir/log" &
    agents+=($!)
  done
  sleep 3.5
  kill "${agents[@]}"
  wait "${agents[@]}" 2>/dev/null || true
  for host in edge app; do cat "$work/agent-$host-$format/events" >>"$out/$format.ndjson"; done
  echo "record-map-events: $(wc -l <"$out/$format.ndjson") $format events in $out/$format.ndjson"
done
