#!/usr/bin/env bash
# Host overhead of connbeat: nginx (Debian's) serving a small response on a
# loopback port, loaded by wrk, with and without connbeat polling every
# second. Runs interleave (A B, then B A, ...) so that drift in the machine's
# load hits both sides alike; it prints each pair and the throughput ratio.
#
# usage: tools/bench-overhead.sh ./connbeat     (as root, from the repo root)
# env:   PAIRS (default 6), DURATION of each wrk run (default 10s),
#        THREADS/CONNS of wrk (default 1/32), PORT (default 18080)
set -euo pipefail

agent=${1:?usage: $0 path/to/connbeat}
agent=$(readlink -f "$agent")
PAIRS=${PAIRS:-6}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-1}
CONNS=${CONNS:-32}
PORT=${PORT:-18080}
for bin in nginx wrk; do
  command -v "$bin" >/dev/null || { echo "bench-overhead: $bin not installed (apt-get install nginx wrk)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/connbeat-overhead.XXXXXX)
nginx_pid=""
agent_pid=""
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# nginx with its own config, pid file, logs and temp paths: nothing of the
# system's nginx is touched. One worker, as the machine has few cores.
mkdir -p "$work/nginx/logs"
cat >"$work/nginx/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  server {
    listen 127.0.0.1:$PORT;
    location / { return 200 "connbeat overhead benchmark\n"; }
  }
}
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
nginx_pid=$!
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done

# connbeat: default options but a 1 s poll, events thrown away.
mkdir -p "$work/agent"
cat >"$work/agent/connbeat.yml" <<CONF
connbeat:
  poll_interval: 1s
output.discard:
  enabled: true
path.home: $work/agent
path.data: $work/agent/data
path.logs: $work/agent/logs
logging.level: warning
logging.to_files: false
CONF

start_agent() {
  "$agent" -e -c "$work/agent/connbeat.yml" --strict.perms=false >"$work/agent/out.log" 2>&1 &
  agent_pid=$!
  sleep 3 # startup and the first (cold) poll
  kill -0 "$agent_pid" 2>/dev/null || { echo "bench-overhead: connbeat exited:" >&2; cat "$work/agent/out.log" >&2; exit 1; }
}
stop_agent() {
  kill "$agent_pid" && wait "$agent_pid" 2>/dev/null || true
  agent_pid=""
}

# run prints wrk's requests per second.
run() {
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$PORT/" |
    awk '/^Requests\/sec:/ { print $2 }'
}

run >/dev/null # warm nginx and the page cache
echo "pair  without(req/s)  with(req/s)  with/without"
ratios=()
agent_ticks=0
# run_with runs wrk with the agent polling, adding the agent's CPU time
# (utime+stime, clock ticks) over the run to agent_ticks.
run_with() {
  start_agent
  local t0 t1
  t0=$(awk '{ print $14 + $15 }' "/proc/$agent_pid/stat")
  with=$(run)
  t1=$(awk '{ print $14 + $15 }' "/proc/$agent_pid/stat")
  agent_ticks=$((agent_ticks + t1 - t0))
  stop_agent
}
for i in $(seq "$PAIRS"); do
  if [ $((i % 2)) = 1 ]; then
    without=$(run)
    run_with
  else
    run_with
    without=$(run)
  fi
  ratio=$(awk -v a="$with" -v b="$without" 'BEGIN { printf "%.4f", a / b }')
  ratios+=("$ratio")
  printf "%4d  %14s  %11s  %12s\n" "$i" "$without" "$with" "$ratio"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '
  { r[NR] = $1; s += $1 }
  END {
    med = (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
    printf "throughput with connbeat / without: median %.4f (%+.2f%%), mean %.4f, min %.4f, max %.4f over %d pairs\n",
      med, (med - 1) * 100, s / NR, r[1], r[NR], NR
  }'
secs=${DURATION%s} # DURATION in seconds, as wrk takes it ("10s")
awk -v t="$agent_ticks" -v hz="$(getconf CLK_TCK)" -v n="$PAIRS" -v d="$secs" 'BEGIN {
  ms = t * 1000 / hz
  printf "connbeat CPU during the loaded runs: %.0f ms over %d s, %.2f%% of one core\n", ms, n * d, ms / (n * d * 10)
}'
