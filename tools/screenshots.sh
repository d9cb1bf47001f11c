#!/usr/bin/env bash
# Makes the README's screenshots from real runs:
#   docs/img/top.png  `connbeat top` in an 80x24 tmux window, captured with
#                     capture-pane, turned into HTML by aha and shot by
#                     headless Chromium
#   docs/img/map.png  `connbeat map --format html` of events recorded by
#                     tools/record-map-events.sh, shot by headless Chromium
# The top scene runs in a network namespace of its own, so the picture
# holds its peers and nothing of the machine it was made on.
# Needs root and the Debian packages tmux, graphviz, aha, chromium and
# fonts-dejavu-core (installed when missing, with apt-get).
#
#   CONNBEAT=./connbeat tools/screenshots.sh    (make screenshots builds it first)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin" GONOSUMDB=github.com/elastic

need=()
for pkg in tmux graphviz aha chromium fonts-dejavu-core; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

work=$(mktemp -d)
ns=cbshot-$$
tmux_socket=cbshot-$$
pids=()
cleanup() {
  tmux -L "$tmux_socket" kill-server 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

connbeat=$(realpath "${CONNBEAT:?set CONNBEAT to a built connbeat (make screenshots does)}")
go build -o "$work/cbpeer" ./tests/testdata/peer
for name in api db worker client; do cp "$work/cbpeer" "$work/$name"; done

# shoot HTML PNG WIDTH HEIGHT
shoot() {
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
    --window-size="$3,$4" --screenshot="$2" "file://$1" >/dev/null 2>&1
  echo "screenshots: $2"
}

# --- top ---
ip netns add "$ns"
ip -n "$ns" link set lo up
# peer NAME ARGS...: a peer in the namespace; waits for its ready line.
peer() {
  local name=$1 log="$work/peer-${#pids[@]}.out"; shift
  ip netns exec "$ns" "$work/$name" "$@" >"$log" &
  pids+=($!)
  for _ in $(seq 100); do grep -q ready "$log" 2>/dev/null && return; sleep 0.05; done
  echo "screenshots: $name did not start" >&2; exit 1
}
peer api listen 127.0.0.1:8080
peer db listen 127.0.0.1:5432
peer client connect 127.0.0.1:8080 127.0.0.2 3
peer worker connect 127.0.0.1:5432 127.0.0.3 2
peer client connect 127.0.0.1:5432 127.0.0.2 1

tmux -L "$tmux_socket" -f /dev/null new-session -d -s top -x 80 -y 24 \
  env TERM=screen-256color ip netns exec "$ns" "$connbeat" top --interval 1s --tcp-info
sleep 3.5
tmux -L "$tmux_socket" capture-pane -e -p -t top >"$work/top.ansi"
{
  echo '<!DOCTYPE html><html><head><meta charset="utf-8"><style>'
  echo 'body { margin: 0; background: #000; }'
  echo 'pre { margin: 0; padding: 8px; color: #ddd; font: 14px/1.2 "DejaVu Sans Mono", monospace; }'
  echo '</style></head><body><pre>'
  aha --no-header --black <"$work/top.ansi"
  echo '</pre></body></html>'
} >"$work/top.html"
shoot "$work/top.html" docs/img/top.png 692 420

# --- map ---
CONNBEAT="$connbeat" tools/record-map-events.sh "$work/events" >/dev/null
"$connbeat" map --format html "$work/events/classic.ndjson" >"$work/map.html" 2>/dev/null
shoot "$work/map.html" docs/img/map.png 900 560
