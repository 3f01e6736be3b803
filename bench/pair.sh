#!/usr/bin/env bash
# Paired CPU per request of two rampart configurations: both gateways run at the same
# time on the proxy CPU, each driven by its own wrk on the load CPU, so this shared VM's
# CPU steal hits both alike (run-to-run noise of bench/run.sh is 10-20%; a pair stays
# within about 1.5%, see bench/README.md). Prints, per round, each gateway's req/s and
# CPU µs per request (utime+stime from /proc over the measured run) and B/A.
#
#   RAMPART_BIN=target/release/rampart bench/pair.sh bench/rampart.toml bench/rampart-ratelimit.toml [ROUNDS] [SECONDS]
#
# Compare configurations whose throughputs stay close: a stage that changes how work is
# batched (the audit writer) is not measured fairly when the pair shares one CPU.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
A=${1:?usage: pair.sh CONFIG_A CONFIG_B [ROUNDS] [SECONDS]}
B=${2:?usage: pair.sh CONFIG_A CONFIG_B [ROUNDS] [SECONDS]}
rounds=${3:-5}
dur=${4:-8}
bin=${RAMPART_BIN:-$here/../target/release/rampart}
base=${BENCH_PORT_BASE:-18380}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
# Under bench/results (not /tmp): a data root must pass the data-root rules.
mkdir -p "$here/results"
out=$(mktemp -d -p "$here/results" pair.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$out"' EXIT

taskset -c "$PROXY_CPU" "$bin" echo --fixed --listen "127.0.0.1:$base" >/dev/null 2>&1 &
# start NAME CONFIG PUBLIC_PORT ADMIN_PORT: sets pid_NAME (started from this shell, not a
# command substitution, so the exit trap stops it).
start() {
  mkdir -m 0700 "$out/data.$1"
  sed -e "s|127.0.0.1:18081|127.0.0.1:$3|" -e "s|127.0.0.1:18082|127.0.0.1:$4|" \
    -e "s|http://127.0.0.1:18080|http://127.0.0.1:$base|" -e "s|@DATA@|$out/data.$1|g" "$2" >"$out/$1.toml"
  if grep -q '^\[signing\]' "$out/$1.toml"; then
    "$bin" keys generate --config "$out/$1.toml" >/dev/null 2>&1
  fi
  taskset -c "$PROXY_CPU" "$bin" serve --config "$out/$1.toml" >"$out/$1.log" 2>&1 &
  printf -v "pid_$1" '%s' "$!"
}
start a "$A" $((base + 1)) $((base + 2))
start b "$B" $((base + 11)) $((base + 12))
pa=$pid_a
pb=$pid_b
for _ in $(seq 1 100); do
  curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$((base + 2))/live" \
    && curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$((base + 12))/live" && break
  sleep 0.2
done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
load() { # SECONDS OUT_A OUT_B
  taskset -c "$LOAD_CPU" wrk -t1 -c32 -d"$1s" "http://127.0.0.1:$((base + 1))/" >"$2" 2>&1 &
  local wa=$!
  taskset -c "$LOAD_CPU" wrk -t1 -c32 -d"$1s" "http://127.0.0.1:$((base + 11))/" >"$3" 2>&1 &
  local wb=$!
  wait "$wa" "$wb"
}
echo "A = $A, B = $B; ${dur}s per round"
for i in $(seq 1 "$rounds"); do
  load 2 /dev/null /dev/null
  a0=$(ticks "$pa"); b0=$(ticks "$pb")
  load "$dur" "$out/wa.txt" "$out/wb.txt"
  a1=$(ticks "$pa"); b1=$(ticks "$pb")
  ra=$(awk '/^Requests\/sec/ {print $2}' "$out/wa.txt")
  rb=$(awk '/^Requests\/sec/ {print $2}' "$out/wb.txt")
  awk -v i="$i" -v ra="$ra" -v rb="$rb" -v ta=$((a1 - a0)) -v tb=$((b1 - b0)) -v d="$dur" \
    -v hz="$(getconf CLK_TCK)" 'BEGIN {
      ca = ta * 1e6 / hz / (ra * d); cb = tb * 1e6 / hz / (rb * d)
      printf "round %d: A %.0f req/s %.2f µs/req, B %.0f req/s %.2f µs/req, B/A CPU %.3f\n", i, ra, ca, rb, cb, cb / ca }'
done
