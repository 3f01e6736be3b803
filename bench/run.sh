#!/usr/bin/env bash
# Whole-gateway load test: rampart against nginx and HAProxy doing the same job in front
# of the same loopback upstream, on one machine, in one run. See bench/README.md.
#
#   bench/run.sh                       # build rampart (release) and run everything
#   RAMPART_BIN=path/to/rampart bench/run.sh
#   DURATION=5 CONNS=32 bench/run.sh   # shorter / fewer connections
#
# Only 127.0.0.1 is ever a target; every process started here is stopped on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

# ---- knobs (environment) ------------------------------------------------------------
DURATION=${DURATION:-10}          # seconds of each measured run
WARMUP=${WARMUP:-3}               # seconds of warm-up before each closed-loop run
CONNS=${CONNS:-64}                # connections of the closed-loop and fixed-rate runs
RATE_FRACTION=${RATE_FRACTION:-0.6}  # fixed rate = this x slowest proxy's closed-loop req/s
RATE=${RATE:-}                    # or a fixed rate in req/s
RSS_CONNS=${RSS_CONNS:-1000}      # keep-alive connections for rampart's peak-RSS run (0: skip it)
RSS_DURATION=${RSS_DURATION:-10}
BENCH_PORT_BASE=${BENCH_PORT_BASE:-18080}
BENCH_TARGETS=${BENCH_TARGETS:-"upstream rampart nginx haproxy"}
BENCH_UPSTREAM=${BENCH_UPSTREAM:-rampart}
# rampart's configuration (bench/rampart.toml; bench/rampart-audit.toml and
# bench/rampart-ratelimit.toml add the audit trail and the rate limiter to it).
RAMPART_CONFIG=${RAMPART_CONFIG:-$here/rampart.toml}   # "rampart" (rampart echo) or "nginx" stand-in
PROXY_CPU=${PROXY_CPU:-0}         # proxy under test and upstream
LOAD_CPU=${LOAD_CPU:-1}           # load generator

port_upstream=$BENCH_PORT_BASE
port_rampart=$((BENCH_PORT_BASE + 1))
port_admin=$((BENCH_PORT_BASE + 2))
port_nginx=$((BENCH_PORT_BASE + 3))
port_haproxy=$((BENCH_PORT_BASE + 4))

run_id=$(date +%Y%m%dT%H%M%S)
[[ -e $here/results/$run_id ]] && run_id=$run_id-$$
out=$here/results/$run_id
mkdir -p "$out"
ln -sfn "$run_id" "$here/results/latest"

say() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 2; }
has_target() { [[ " $BENCH_TARGETS " == *" $1 "* ]]; }

# ---- cleanup: every process started here is stopped on exit -------------------------
pids=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      local alive=0 p
      for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      ((alive)) || break
      sleep 0.2
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- tools --------------------------------------------------------------------------
apt_missing=()
command -v wrk >/dev/null 2>&1 || apt_missing+=(wrk)
command -v taskset >/dev/null 2>&1 || apt_missing+=(util-linux)
command -v curl >/dev/null 2>&1 || apt_missing+=(curl)
command -v python3 >/dev/null 2>&1 || apt_missing+=(python3)
{ has_target nginx || [[ $BENCH_UPSTREAM == nginx ]]; } && ! command -v nginx >/dev/null 2>&1 && apt_missing+=(nginx-light)
has_target haproxy && ! command -v haproxy >/dev/null 2>&1 && apt_missing+=(haproxy)
if ((${#apt_missing[@]})); then
  say "installing from Debian: ${apt_missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi

# ---- rampart binary ---------------------------------------------------------------
need_rampart=0
{ has_target rampart || [[ $BENCH_UPSTREAM == rampart ]]; } && need_rampart=1
bin=""
if ((need_rampart)); then
  if [[ -n ${RAMPART_BIN:-} ]]; then
    bin=$RAMPART_BIN
    [[ -x $bin ]] || die "RAMPART_BIN=$bin is not an executable file"
  else
    say "building rampart (cargo build --release -p rampart)"
    (cd "$root" && cargo build --release --locked -p rampart) >"$out/build.log" 2>&1 \
      || { tail -30 "$out/build.log" >&2; die "release build of rampart failed (log: $out/build.log)"; }
    bin=$root/target/release/rampart
    [[ -x $bin ]] || die "no rampart binary at $bin after the build"
  fi
  bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
  if has_target rampart && ! "$bin" serve --help >/dev/null 2>&1; then
    die "$bin has no 'serve' subcommand yet (drop rampart from BENCH_TARGETS to bench the peers only)"
  fi
  if [[ $BENCH_UPSTREAM == rampart ]] && ! "$bin" echo --help >/dev/null 2>&1; then
    die "$bin has no 'echo' subcommand yet; BENCH_UPSTREAM=nginx uses an nginx stand-in upstream"
  fi
fi

# oha: a fixed-rate load generator with latency correction (wrk2 is not in Debian).
OHA_VERSION=1.16.0
FIXED=${FIXED:-1}                 # 0: skip the fixed-rate runs (and installing oha)
oha=$(command -v oha || true)
[[ -n $oha ]] || oha=$here/.tools/bin/oha
if [[ $FIXED != 0 && ! -x $oha ]]; then
  say "installing oha $OHA_VERSION into bench/.tools (compiles once, a few minutes on 2 cores)"
  cargo install oha --version "$OHA_VERSION" --locked \
    --root "$here/.tools" >"$out/oha-install.log" 2>&1 \
    || { tail -20 "$out/oha-install.log" >&2; die "cargo install oha failed"; }
fi

# ---- limits, ports ---------------------------------------------------------------
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
(($(ulimit -n) >= RSS_CONNS + 256)) || say "warning: ulimit -n is $(ulimit -n), too low for $RSS_CONNS connections"
for p in "$port_upstream" "$port_rampart" "$port_admin" "$port_nginx" "$port_haproxy"; do
  if ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
    die "127.0.0.1:$p is already in use (set BENCH_PORT_BASE to move the five ports)"
  fi
done
clk_tck=$(getconf CLK_TCK)

# ---- machine and versions ------------------------------------------------------------
{
  echo "run: $run_id"
  echo "host: $(uname -srm), $(nproc) cpus"
  grep -m1 'model name' /proc/cpuinfo || true
  echo "knobs: DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS RATE_FRACTION=$RATE_FRACTION RATE=${RATE:-auto} RSS_CONNS=$RSS_CONNS"
  echo "pinning: proxies+upstream cpu $PROXY_CPU, load generator cpu $LOAD_CPU"
  echo "upstream: $BENCH_UPSTREAM"
  [[ -n $bin ]] && echo "rampart: $bin ($("$bin" --version 2>/dev/null || echo '?'))"
  command -v nginx >/dev/null && echo "nginx: $(nginx -v 2>&1)"
  command -v haproxy >/dev/null && echo "haproxy: $(haproxy -v 2>&1 | head -1)"
  echo "wrk: $(wrk -v 2>&1 | head -1)"
  [[ $FIXED == 0 ]] || echo "oha: $("$oha" --version 2>&1 | head -1)"
} >"$out/meta.txt"

# ---- processes ---------------------------------------------------------------------
render() { # template output: replace @VARS@
  sed -e "s|@PREFIX@|$3|g" -e "s|@UPSTREAM_PORT@|$port_upstream|g" \
      -e "s|@NGINX_PORT@|$port_nginx|g" -e "s|@HAPROXY_PORT@|$port_haproxy|g" "$1" >"$2"
}

wait_ready() { # name pid url
  local _
  for _ in $(seq 1 100); do
    kill -0 "$2" 2>/dev/null || { tail -20 "$out/$1".*log >&2 2>/dev/null || true; die "$1 exited during start-up"; }
    curl -s -o /dev/null --max-time 1 "$3" && return 0
    sleep 0.1
  done
  die "$1 did not answer $3 within 10 s"
}

declare -A pid_of
start_upstream() {
  if [[ $BENCH_UPSTREAM == nginx ]]; then
    local prefix=$out/upstream-nginx
    mkdir -p "$prefix"
    render "$here/upstream-nginx.conf.in" "$prefix/nginx.conf" "$prefix"
    taskset -c "$PROXY_CPU" nginx -p "$prefix" -c "$prefix/nginx.conf" >"$out/upstream.log" 2>&1 &
  else
    taskset -c "$PROXY_CPU" "$bin" echo --fixed --listen "127.0.0.1:$port_upstream" >"$out/upstream.log" 2>&1 &
  fi
  pid_of[upstream]=$!
  pids+=("$!")
  wait_ready upstream "$!" "http://127.0.0.1:$port_upstream/"
}

start_rampart() {
  # @DATA@ in the configuration: a private data root for this run (audit segments, keys).
  mkdir -m 0700 -p "$out/data"
  sed -e "s|127.0.0.1:18081|127.0.0.1:$port_rampart|" -e "s|127.0.0.1:18082|127.0.0.1:$port_admin|" \
      -e "s|http://127.0.0.1:18080|http://127.0.0.1:$port_upstream|" -e "s|@DATA@|$out/data|g" \
      "$RAMPART_CONFIG" >"$out/rampart.toml"
  if grep -q '^\[signing\]' "$out/rampart.toml"; then
    "$bin" keys generate --config "$out/rampart.toml" >"$out/keys.log" 2>&1 \
      || { cat "$out/keys.log" >&2; die "rampart keys generate failed"; }
  fi
  # stdout carries the JSON access log: written to a real file, as in production.
  taskset -c "$PROXY_CPU" "$bin" serve --config "$out/rampart.toml" \
    >"$out/rampart.access.jsonl" 2>"$out/rampart.stderr.log" &
  pid_of[rampart]=$!
  pids+=("$!")
  wait_ready rampart "$!" "http://127.0.0.1:$port_rampart/"
}

start_nginx() {
  local prefix=$out/nginx
  mkdir -p "$prefix"
  render "$here/nginx.conf.in" "$prefix/nginx.conf" "$prefix"
  taskset -c "$PROXY_CPU" nginx -p "$prefix" -c "$prefix/nginx.conf" >"$out/nginx.log" 2>&1 &
  pid_of[nginx]=$!
  pids+=("$!")
  wait_ready nginx "$!" "http://127.0.0.1:$port_nginx/"
}

start_haproxy() {
  render "$here/haproxy.cfg.in" "$out/haproxy.cfg" "$out"
  haproxy -c -q -f "$out/haproxy.cfg" >"$out/haproxy.check.log" 2>&1 \
    || { cat "$out/haproxy.check.log" >&2; die "haproxy rejected $out/haproxy.cfg"; }
  # -db: foreground; stdout is the access log.
  taskset -c "$PROXY_CPU" haproxy -db -f "$out/haproxy.cfg" >"$out/haproxy.access.log" 2>"$out/haproxy.stderr.log" &
  pid_of[haproxy]=$!
  pids+=("$!")
  wait_ready haproxy "$!" "http://127.0.0.1:$port_haproxy/"
}

url_of() {
  case $1 in
    upstream) echo "http://127.0.0.1:$port_upstream/" ;;
    rampart) echo "http://127.0.0.1:$port_rampart/" ;;
    nginx) echo "http://127.0.0.1:$port_nginx/" ;;
    haproxy) echo "http://127.0.0.1:$port_haproxy/" ;;
  esac
}

# CPU ticks (utime+stime, all threads) of a process and its direct children (nginx workers).
cpu_ticks() {
  local total=0 p t
  for p in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
    # Fields after "comm)": state is field 3, so utime (14) and stime (15) are $12, $13.
    t=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || t=0
    total=$((total + ${t:-0}))
  done
  echo "$total"
}

start_upstream
has_target rampart && start_rampart
has_target nginx && start_nginx
has_target haproxy && start_haproxy

# A request through each proxy, headers kept: shows at a glance that they do the same job.
for t in $BENCH_TARGETS; do
  curl -s -D - -o /dev/null "$(url_of "$t")" >"$out/$t.headers.txt" || true
  [[ $t == upstream ]] && continue
  curl -s -o /dev/null -w '%{http_code}\n' -H 'Host: evil.example' "$(url_of "$t")" >"$out/$t.badhost.txt" || true
done

# ---- closed loop -------------------------------------------------------------------------
wrk_rps() { awk '/^Requests\/sec:/ {print $2}' "$1"; }
for t in $BENCH_TARGETS; do
  url=$(url_of "$t")
  pid=${pid_of[$t]}
  say "$t: warm-up ${WARMUP}s, closed loop ${DURATION}s x $CONNS connections"
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$url" >"$out/$t.warmup.txt" 2>&1
  before=$(cpu_ticks "$pid")
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$url" >"$out/$t.closed.txt" 2>&1
  after=$(cpu_ticks "$pid")
  echo "ticks_before=$before ticks_after=$after clk_tck=$clk_tck" >"$out/$t.cpu.txt"
  say "$t: $(wrk_rps "$out/$t.closed.txt") req/s"
done

# ---- fixed rate ------------------------------------------------------------------------
if [[ $FIXED != 0 ]]; then
  if [[ -z $RATE ]]; then
    slowest=""
    for t in $BENCH_TARGETS; do
      [[ $t == upstream ]] && continue
      r=$(wrk_rps "$out/$t.closed.txt")
      if [[ -z $slowest ]] || awk -v a="$r" -v b="$slowest" 'BEGIN{exit !(a < b)}'; then slowest=$r; fi
    done
    [[ -n $slowest ]] || slowest=$(wrk_rps "$out/upstream.closed.txt")
    RATE=$(awk -v r="$slowest" -v f="$RATE_FRACTION" 'BEGIN{printf "%d", r * f}')
  fi
  echo "$RATE" >"$out/rate.txt"
  for t in $BENCH_TARGETS; do
    say "$t: fixed rate $RATE req/s for ${DURATION}s (latency-corrected)"
    taskset -c "$LOAD_CPU" "$oha" --no-tui --output-format json --latency-correction \
      -z "${DURATION}s" -c "$CONNS" -q "$RATE" "$(url_of "$t")" >"$out/$t.fixed.json" 2>"$out/$t.fixed.err" \
      || say "warning: oha against $t failed (see $out/$t.fixed.err)"
  done
fi

# ---- rampart's peak RSS under many keep-alive connections -------------------------------
if has_target rampart && ((RSS_CONNS > 0)); then
  say "rampart: $RSS_CONNS keep-alive connections for ${RSS_DURATION}s (peak RSS)"
  grep -E '^Vm(HWM|RSS)' "/proc/${pid_of[rampart]}/status" >"$out/rampart.rss-before.txt"
  taskset -c "$LOAD_CPU" wrk -t1 -c"$RSS_CONNS" -d"${RSS_DURATION}s" --latency "$(url_of rampart)" \
    >"$out/rampart.rss-run.txt" 2>&1
  grep -E '^Vm(HWM|RSS)' "/proc/${pid_of[rampart]}/status" >"$out/rampart.rss.txt"
  kill -0 "${pid_of[rampart]}" 2>/dev/null || die "rampart died during the $RSS_CONNS-connection run"
fi

# ---- report ------------------------------------------------------------------------------
python3 "$here/summarize.py" "$out" | tee "$out/summary.md"
say "raw outputs in $out"
