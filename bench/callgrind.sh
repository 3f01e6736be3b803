#!/usr/bin/env bash
# Instructions per request of a rampart configuration, counted by valgrind's callgrind:
# the same binary and load give the same count whatever else the machine is doing (see
# bench/README.md, "Measuring a change"). Serves N1 and then N2 requests in two runs
# under callgrind and prints (Ir(N2) - Ir(N1)) / (N2 - N1), which removes start-up.
#
#   RAMPART_BIN=target/release/rampart bench/callgrind.sh bench/rampart.toml [PATH] [HEADER]
#
# PATH defaults to /, HEADER (e.g. "Authorization: Bearer …") is sent on every request.
# Only 127.0.0.1 is a target; the upstream is `rampart echo --fixed`, not measured.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
config=${1:?usage: callgrind.sh CONFIG [PATH] [HEADER]}
path=${2:-/}
header=${3:-}
N1=${N1:-2000}
N2=${N2:-12000}
CONNS=${CONNS:-32}
bin=${RAMPART_BIN:-$here/../target/release/rampart}
base=${BENCH_PORT_BASE:-18280}
command -v valgrind >/dev/null || { apt-get install -y -qq valgrind >/dev/null; }
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null; }
# Under bench/results (not /tmp): the data root of a configuration with @DATA@ (audit
# segments, keys) must pass the data-root rules, which refuse world-writable parents.
mkdir -p "$here/results"
out=$(mktemp -d -p "$here/results" callgrind.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

"$bin" echo --fixed --listen "127.0.0.1:$base" >/dev/null 2>&1 &
sed -e "s|127.0.0.1:18081|127.0.0.1:$((base + 1))|" -e "s|127.0.0.1:18082|127.0.0.1:$((base + 2))|" \
    -e "s|http://127.0.0.1:18080|http://127.0.0.1:$base|" -e "s|@DATA@|$out/data|g" "$config" >"$out/rampart.toml"

# wrk sends the header (if any) to PATH until the gateway has counted N requests; the
# count read from /metrics afterwards (not N) is what the instructions are divided by.
cat >"$out/req.lua" <<LUA
local hdr = os.getenv("HDR") or ""
if #hdr > 0 then
  local k, v = hdr:match("^([^:]+):%s*(.*)$")
  wrk.headers[k] = v
end
wrk.path = os.getenv("TARGET_PATH") or "/"
LUA

# Requests counted from the access log (one line each; the configuration must keep
# `access_log = true`): reading it costs the gateway nothing, unlike scraping /metrics.
served() {
  wc -l <"$out/access.$1.jsonl"
}

ir_for() { # N -> "requests instructions"
  local n=$1 f=$out/cg.$1
  rm -rf "$out/data" && mkdir -m 0700 "$out/data"
  if grep -q '^\[signing\]' "$out/rampart.toml"; then
    "$bin" keys generate --config "$out/rampart.toml" >/dev/null 2>&1
  fi
  valgrind --tool=callgrind --callgrind-out-file="$f" "$bin" serve --config "$out/rampart.toml" \
    >"$out/access.$n.jsonl" 2>"$out/vg.$n.log" &
  local pid=$!
  for _ in $(seq 1 600); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$((base + 2))/live" && break
    sleep 0.2
  done
  HDR=$header TARGET_PATH=$path wrk -t1 -c"$CONNS" -d3600s -s "$out/req.lua" \
    "http://127.0.0.1:$((base + 1))" >"$out/wrk.$n.txt" 2>&1 &
  local wrk_pid=$!
  while (($(served "$n") < n)); do sleep 0.5; done
  kill "$wrk_pid"; wait "$wrk_pid" 2>/dev/null || true
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  local got
  got=$(served "$n")
  echo "$got $(grep -h '^totals:' "$f"* | awk '{s += $2} END {printf "%d\n", s}')"
}
read -r r1 i1 < <(ir_for "$N1")
read -r r2 i2 < <(ir_for "$N2")
awk -v r1="$r1" -v i1="$i1" -v r2="$r2" -v i2="$i2" \
  'BEGIN {printf "requests %d -> %d, instructions %d -> %d: %.0f instructions/request\n", r1, r2, i1, i2, (i2 - i1) / (r2 - r1)}'
