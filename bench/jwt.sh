#!/usr/bin/env bash
# JWT verification under load: rampart's JWT stage against HAProxy 2.6+ `jwt_verify` doing
# the same job (bench/jwt/haproxy.cfg.in, bench/jwt/rampart.toml) in front of the same
# loopback upstream, in one run. See bench/README.md ("JWT").
#
#   RAMPART_BIN=target/release/rampart bench/jwt.sh
#   DURATION=5 ALGS=ES256 bench/jwt.sh
#
# For each algorithm (RS256, ES256) and each proxy, three closed-loop runs:
#   repeated  one valid token on every request (rampart's verified-token cache)
#   fresh     every request a token never seen before (TOKENS pre-minted, taken in turn)
#   badsig    one token signed by the wrong key on every request (all answers 401)
# Reported: req/s, p50/p99, CPU µs per request of the proxy, rampart's CPU ratio to HAProxy.
# Only 127.0.0.1 is ever a target; every process started here is stopped on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
ALGS=${ALGS:-"RS256 ES256"}
MODES=${MODES:-"repeated fresh badsig"}
TARGETS=${TARGETS:-"rampart haproxy"}
# Request path. With TARGETS="rampart rampart-rbac" REQ_PATH=/tenants/acme/jobs the run
# compares JWT alone (bench/jwt/rampart.toml, catch-all route, RBAC off) with JWT + RBAC +
# tenant check (bench/jwt/rampart-rbac.toml: `/tenants/{tenant}/jobs` needing scope `jobs`).
REQ_PATH=${REQ_PATH:-/}
export REQ_PATH
# Enough distinct tokens that no fresh-token run wraps around (checked and reported).
TOKENS=${TOKENS:-200000}
# Pre-signed requests per device algorithm for the modes `hmac` and `ed25519` (target
# rampart-sig: bench/jwt/rampart-sig.toml, JWT and signed requests on one gateway).
SIGNED=${SIGNED:-100000}
BENCH_PORT_BASE=${BENCH_PORT_BASE:-18180}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

port_upstream=$BENCH_PORT_BASE
port_rampart=$((BENCH_PORT_BASE + 1))
port_admin=$((BENCH_PORT_BASE + 2))
port_haproxy=$((BENCH_PORT_BASE + 4))
port_jwks=$((BENCH_PORT_BASE + 5))

run_id=jwt-$(date +%Y%m%dT%H%M%S)
out=$here/results/$run_id
mkdir -p "$out"
ln -sfn "$run_id" "$here/results/latest-jwt"

say() { printf '[bench-jwt %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '[bench-jwt] error: %s\n' "$*" >&2; exit 2; }

pids=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    sleep 0.5
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

apt_missing=()
command -v wrk >/dev/null 2>&1 || apt_missing+=(wrk)
command -v haproxy >/dev/null 2>&1 || apt_missing+=(haproxy)
command -v taskset >/dev/null 2>&1 || apt_missing+=(util-linux)
command -v curl >/dev/null 2>&1 || apt_missing+=(curl)
if ((${#apt_missing[@]})); then
  say "installing from Debian: ${apt_missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi
python3 -c 'import cryptography' 2>/dev/null || python3 -m pip install -q cryptography 2>/dev/null \
  || python3 -m pip install -q --break-system-packages cryptography

if [[ -n ${RAMPART_BIN:-} ]]; then
  bin=$RAMPART_BIN
else
  say "building rampart (cargo build --release -p rampart)"
  (cd "$root" && cargo build --release --locked -p rampart) >"$out/build.log" 2>&1 \
    || { tail -30 "$out/build.log" >&2; die "release build failed (log: $out/build.log)"; }
  bin=$root/target/release/rampart
fi
[[ -x $bin ]] || die "no rampart binary at $bin"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

ulimit -n 65536 2>/dev/null || true
for p in "$port_upstream" "$port_rampart" "$port_admin" "$port_haproxy" "$port_jwks"; do
  ss -Hltn "sport = :$p" 2>/dev/null | grep -q . && die "127.0.0.1:$p is in use (set BENCH_PORT_BASE)"
done
clk_tck=$(getconf CLK_TCK)

say "minting keys and $TOKENS tokens per algorithm"
python3 "$here/jwt/mint.py" "$out/keys" "$TOKENS"
{
  echo "run: $run_id"
  echo "host: $(uname -srm), $(nproc) cpus"
  echo "knobs: DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS TOKENS=$TOKENS"
  echo "rampart: $bin ($("$bin" --version 2>/dev/null || echo '?'))"
  echo "haproxy: $(haproxy -v 2>&1 | head -1)"
} >"$out/meta.txt"

wait_ready() { # name pid url [header]
  for _ in $(seq 1 100); do
    kill -0 "$2" 2>/dev/null || die "$1 exited during start-up (see $out)"
    curl -s -o /dev/null --max-time 1 ${4:+-H "$4"} "$3" && return 0
    sleep 0.1
  done
  die "$1 did not answer $3 within 10 s"
}

declare -A pid_of
# The JWKS for rampart (not measured; on the load generator's CPU).
(cd "$out/keys" && exec taskset -c "$LOAD_CPU" python3 -m http.server "$port_jwks" --bind 127.0.0.1) \
  >"$out/jwks.log" 2>&1 &
pids+=("$!")
wait_ready jwks "$!" "http://127.0.0.1:$port_jwks/jwks.json"

taskset -c "$PROXY_CPU" "$bin" echo --fixed --listen "127.0.0.1:$port_upstream" >"$out/upstream.log" 2>&1 &
pids+=("$!")
wait_ready upstream "$!" "http://127.0.0.1:$port_upstream/"

one_token=$(head -1 "$out/keys/ES256.one.txt")
port_of_variant=$((BENCH_PORT_BASE + 10))
declare -A url_by
for t in $TARGETS; do
  [[ $t == rampart* ]] || continue
  conf=$here/jwt/$t.toml
  [[ -f $conf ]] || die "no configuration $conf for target $t"
  port_pub=$port_of_variant
  port_adm=$((port_of_variant + 1))
  port_of_variant=$((port_of_variant + 2))
  mkdir -m 0700 -p "$out/data-$t"
  head -c 32 /dev/urandom | base64 >"$out/data-$t/kek"
  chmod 0600 "$out/data-$t/kek"
  sed -e "s|127.0.0.1:18081|127.0.0.1:$port_pub|" -e "s|127.0.0.1:18082|127.0.0.1:$port_adm|" \
      -e "s|http://127.0.0.1:18080|http://127.0.0.1:$port_upstream|" \
      -e "s|http://127.0.0.1:18085|http://127.0.0.1:$port_jwks|" -e "s|@DATA@|$out/data-$t|g" \
      "$conf" >"$out/$t.toml"
  if grep -q '"signature"' "$out/$t.toml"; then
    # Signed-request runs: two devices, then SIGNED pre-signed requests of each kind.
    python3 "$here/jwt/presign.py" "$out/keys" 0 x
    "$bin" device create --name bench-hmac --tenant acme --scopes "jobs metrics" --alg hmac-sha256 \
      --format json --config "$out/$t.toml" 2>"$out/device.log" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])' >"$out/keys/hmac.secret"
    "$bin" device create --name bench-ed --tenant acme --scopes "jobs metrics" --alg ed25519 \
      --public-key "$out/keys/device.pub" --config "$out/$t.toml" >>"$out/device.log" 2>&1
    say "pre-signing $SIGNED requests per device algorithm"
    python3 "$here/jwt/presign.py" "$out/keys" "$SIGNED" "http://127.0.0.1:$port_pub$REQ_PATH" sign
  fi
  taskset -c "$PROXY_CPU" "$bin" serve --config "$out/$t.toml" \
    >"$out/$t.access.jsonl" 2>"$out/$t.stderr.log" &
  pid_of[$t]=$!
  pids+=("$!")
  url_by[$t]="http://127.0.0.1:$port_pub"
  wait_ready "$t" "$!" "${url_by[$t]}$REQ_PATH" "Authorization: Bearer $one_token"
done
if [[ " $TARGETS " == *" haproxy "* ]]; then
  sed -e "s|@PREFIX@|$out/keys|g" -e "s|@UPSTREAM_PORT@|$port_upstream|g" \
      -e "s|@HAPROXY_PORT@|$port_haproxy|g" "$here/jwt/haproxy.cfg.in" >"$out/haproxy.cfg"
  haproxy -c -q -f "$out/haproxy.cfg" >"$out/haproxy.check.log" 2>&1 \
    || { cat "$out/haproxy.check.log" >&2; die "haproxy rejected $out/haproxy.cfg"; }
  taskset -c "$PROXY_CPU" haproxy -db -f "$out/haproxy.cfg" >"$out/haproxy.access.log" 2>"$out/haproxy.stderr.log" &
  pid_of[haproxy]=$!
  pids+=("$!")
  wait_ready haproxy "$!" "http://127.0.0.1:$port_haproxy/"
fi
url_by[haproxy]="http://127.0.0.1:$port_haproxy"
url_of() { echo "${url_by[$1]}$REQ_PATH"; }

# Both proxies must do the job before anything is measured: valid → 200, bad → 401.
for t in $TARGETS; do
  for alg in $ALGS; do
    good=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(head -1 "$out/keys/$alg.one.txt")" "$(url_of "$t")")
    bad=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(head -1 "$out/keys/$alg.badsig.txt")" "$(url_of "$t")")
    none=$(curl -s -o /dev/null -w '%{http_code}' "$(url_of "$t")")
    echo "$t $alg valid=$good badsig=$bad missing=$none" | tee -a "$out/sanity.txt" >&2
    [[ $good == 200 && $bad == 401 && $none == 401 ]] || die "$t does not do the job for $alg (see $out/sanity.txt)"
  done
done

cpu_ticks() {
  local total=0 p t
  for p in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
    t=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || t=0
    total=$((total + ${t:-0}))
  done
  echo "$total"
}

# Fresh-token runs start where the previous run of that algorithm stopped (warm-ups
# included), so no token is sent twice to one proxy while the file lasts.
declare -A next_token
for alg in $ALGS; do
  for mode in $MODES; do
    for t in $TARGETS; do
      case $mode in
        repeated) file=$out/keys/$alg.one.txt ;;
        fresh) file=$out/keys/$alg.fresh.txt ;;
        badsig) file=$out/keys/$alg.badsig.txt ;;
        hmac | ed25519)
          # Signed requests: only the target that knows the devices.
          grep -q '"signature"' "$out/$t.toml" 2>/dev/null || continue
          file=$out/keys/$mode.signed.txt ;;
      esac
      key="$t.$(basename "$file")"
      start=${next_token[$key]:-0}
      name="$t.$alg.$mode"
      say "$name: warm-up ${WARMUP}s, closed loop ${DURATION}s x $CONNS connections"
      taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP}s" -s "$here/jwt/tokens.lua" "$(url_of "$t")" \
        -- "$file" "$start" >"$out/$name.warmup.txt" 2>&1
      used=$(awk '/requests in/ {print $1}' "$out/$name.warmup.txt")
      start=$((start + ${used:-0} + CONNS))
      before=$(cpu_ticks "${pid_of[$t]}")
      taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$here/jwt/tokens.lua" \
        "$(url_of "$t")" -- "$file" "$start" >"$out/$name.closed.txt" 2>&1
      after=$(cpu_ticks "${pid_of[$t]}")
      used=$(awk '/requests in/ {print $1}' "$out/$name.closed.txt")
      [[ $mode == repeated || $mode == badsig ]] || next_token[$key]=$((start + ${used:-0} + CONNS))
      echo "ticks_before=$before ticks_after=$after clk_tck=$clk_tck" >"$out/$name.cpu.txt"
      say "$name: $(awk '/^Requests\/sec:/ {print $2}' "$out/$name.closed.txt") req/s"
    done
  done
done

python3 "$here/jwt/summarize.py" "$out" | tee "$out/summary.md"
say "raw outputs in $out"
