#!/usr/bin/env bash
# Where a mint's CPU goes, per broker thread (issue 16's profile). For each scenario: a fresh
# broker pinned to one core on the dev material, `tessera bench` on the other core at a fixed
# RATE (below the peak, so nothing queues) for DURATION; meanwhile per-thread CPU is read from
# /proc (utime + stime, each thread's delta ÷ requests served = µs per request) and `perf record`
# samples the broker for a flat profile by thread and symbol.
#
#   bench/profile.sh                                   # mint-jwt mint-jwt-mtls mint-x509
#   SCENARIOS="mint-jwt exchange" RATE=1000 bench/profile.sh
# Writes target/bench/profile-<scenario>.{threads,symbols}.txt and prints the per-thread table.
set -euo pipefail
cd "$(dirname "$0")/.."
BROKER_CPU=${BROKER_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
RATE=${RATE:-1500}
DURATION=${DURATION:-10}
SCENARIOS=${SCENARIOS-"mint-jwt mint-jwt-mtls mint-x509"}
OUT=target/bench
GRPC=127.0.0.1:18443
HTTP=127.0.0.1:18444
PROFILE=${PROFILE:-production}  # Cargo.toml: what is deployed
BIN=target/$PROFILE/tessera
cargo build --profile "$PROFILE" --locked --bin tessera
mkdir -p "$OUT"

# Per-thread CPU ticks (1/100 s) of process $1: "tid comm ticks" lines.
thread_ticks() {
  for stat in /proc/"$1"/task/*/stat; do
    [ -r "$stat" ] || continue
    awk '{ s=$0; sub(/^[0-9]+ \(/, "", s); comm=substr(s, 1, index(s, ") ")-1); rest=substr(s, index(s, ") ")+2);
           split(rest, f, " "); gsub(/ /, "_", comm); print FILENAME, comm, f[12]+f[13] }' \
      FILENAME="$(basename "$(dirname "$stat")")" "$stat"
  done
}

for scenario in $SCENARIOS; do
  dir="$OUT/profile-$scenario"
  rm -rf "$dir" && mkdir -p "$dir"
  sed -e "s|127.0.0.1:8443|$GRPC|; s|127.0.0.1:8444|$HTTP|g" \
      -e "s|^path = .*|path = \"$dir/ledger.redb\"|" certs-dev/tessera.toml > "$dir/tessera.toml"
  # `exchange` needs the generator's CI issuer trusted (as bench/run.sh), and more HTTP/1.1
  # connections, since each carries one request at a time.
  http_args=()
  if [ "$scenario" = exchange ]; then
    "$BIN" bench --scenario exchange --ci-issuer-addr 127.0.0.1:9555 --print-broker-config >> "$dir/tessera.toml"
    http_args=(--http1-connections 64)
  fi
  TOKIO_WORKER_THREADS=${WORKERS:-1} TESSERA_LOG=warn taskset -c "$BROKER_CPU" "$BIN" serve --config "$dir/tessera.toml" 2>"$dir/broker.log" &
  pid=$!
  for _ in $(seq 100); do
    curl -sf --cacert certs-dev/tls-ca.pem "https://$HTTP/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  taskset -c "$GEN_CPU" "$BIN" bench --scenario "$scenario" --grpc-addr "$GRPC" --http-addr "$HTTP" \
    --rate "$RATE" --ramp 1 --max-steps 1 --duration "${DURATION}s" --warmup 2s --json "${http_args[@]}" \
    > "$dir/bench.json" 2>"$dir/bench.log" &
  gen=$!
  sleep 3 # past the warm-up
  thread_ticks "$pid" > "$dir/before"
  perf record -F 499 -g -p "$pid" -o "$dir/perf.data" -- sleep $((DURATION - 2)) 2>/dev/null >/dev/null
  thread_ticks "$pid" > "$dir/after"
  wait "$gen" || true
  kill -TERM "$pid"; wait "$pid" || true
  secs=$((DURATION - 2))
  perf report -i "$dir/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null \
    | grep -v "^#" | sed '/^$/d' > "$OUT/profile-$scenario.threads.txt" || true
  perf report -i "$dir/perf.data" --no-children --sort comm,dso,sym --stdio -g none 2>/dev/null \
    | grep -v "^#" | sed '/^$/d' > "$OUT/profile-$scenario.symbols.txt" || true
  echo "## $scenario at $RATE/s (${secs} s sampled)"
  join <(sort "$dir/before") <(sort "$dir/after") | awk -v rate="$RATE" -v secs="$secs" '
    { d=$5-$3; if (d > 0) { byname[$2]+=d } }
    END { for (n in byname) printf "%-20s %6.1f%% of a core  %7.1f µs/request\n", n, byname[n]/secs, byname[n]*10000/(rate*secs) }' | sort -k2 -rn
done
