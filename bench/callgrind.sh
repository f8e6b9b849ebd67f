#!/usr/bin/env bash
# Instructions per request, per broker thread, counted by callgrind: the figure that does not
# move with the machine (issue 16; BENCHMARKS.md item 14). For each scenario a fresh broker runs
# under `valgrind --tool=callgrind` on one core, on the dev material, with counting off; the
# generator (on the other core) offers RATE/s; after the warm-up counting is switched on for
# SECONDS, and the requests served meanwhile are read from `tessera_credentials_issued_total`.
# Each thread's instructions are split into crypto (aws-lc: signatures, hashes, TLS records),
# memory (memcpy/memset/memcmp), allocation and the rest, each ÷ requests.
#
#   bench/callgrind.sh                                   # mint-jwt mint-jwt-mtls mint-x509 exchange
#   SCENARIOS=exchange bench/callgrind.sh
#   BIN=/tmp/tessera-before SCENARIOS=exchange bench/callgrind.sh   # a binary built earlier
#   callgrind_annotate --inclusive=yes target/bench/callgrind-exchange/callgrind.out.<pid>-<n>
#
# Under valgrind aws-lc takes its generic code paths (no ADX/BMI2 for P-256, no SHA extensions),
# so crypto counts more instructions than it does natively: compare crypto between runs of this
# script, never with native timings. The ledger writer's count per request depends on its batch
# size, so on the (low) rate: compare it at the same RATE only.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-100}
SECONDS_ON=${SECONDS_ON:-20}
SCENARIOS=${SCENARIOS-"mint-jwt mint-jwt-mtls mint-x509 exchange"}
OUT=target/bench
GRPC=127.0.0.1:18443
HTTP=127.0.0.1:18444
PROFILE=${PROFILE:-production}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then # else: a binary built earlier, e.g. to compare two commits
  BIN=target/$PROFILE/tessera
  cargo build --profile "$PROFILE" --locked --bin tessera
fi
mkdir -p "$OUT"

metrics() { curl -s --cacert certs-dev/tls-ca.pem "https://$HTTP/metrics"; }
issued() { metrics | awk '/^tessera_credentials_issued_total/ { s += $2 } END { print s + 0 }'; }

# Names a callgrind thread file by what runs in it.
thread_name() {
  if grep -q 'redb::writer::Writer::run' "$1"; then echo ledger-writer
  elif grep -q 'audit::Writer::run' "$1"; then echo audit-writer
  elif grep -q 'scheduler::multi_thread::worker' "$1"; then echo tokio-worker
  else echo other; fi
}

# Prints "total crypto memory allocation other" instructions per request of thread file $1.
split() { # file requests
  callgrind_annotate --threshold=100 "$1" 2>/dev/null | awk '/Auto-annotated source/ { exit } { print }' |
    awk -v n="$2" 'NR > 25 && $1 ~ /^[0-9,]+$/ {
        v = $1; gsub(/,/, "", v)
        if ($0 ~ /aws-lc|aws_lc|nistz256|bignum_|beeu_/) c += v
        else if ($0 ~ /memcpy|memmove|memset|memcmp/) m += v
        else if ($0 ~ /malloc|mi_|free|realloc/) a += v
        else o += v }
      END { printf "%.0f %.0f %.0f %.0f %.0f\n", (c+m+a+o)/n, c/n, m/n, a/n, o/n }'
}

echo "| scenario | thread | instructions per request | crypto | memory | allocation | other |"
echo "|---|---|---|---|---|---|---|"
for scenario in $SCENARIOS; do
  dir="$OUT/callgrind-$scenario"
  rm -rf "$dir" && mkdir -p "$dir"
  sed -e "s|127.0.0.1:8443|$GRPC|; s|127.0.0.1:8444|$HTTP|g" \
      -e "s|^path = .*|path = \"$dir/ledger.redb\"|" certs-dev/tessera.toml > "$dir/tessera.toml"
  "$BIN" bench --scenario exchange --ci-issuer-addr 127.0.0.1:9555 --print-broker-config >> "$dir/tessera.toml"
  http_args=()
  [ "$scenario" = exchange ] && http_args=(--http1-connections 16)
  TOKIO_WORKER_THREADS=1 TESSERA_LOG=warn taskset -c 0 valgrind --tool=callgrind --instr-atstart=no \
    --separate-threads=yes --callgrind-out-file="$dir/callgrind.out.%p" \
    "$BIN" serve --config "$dir/tessera.toml" 2>"$dir/broker.log" &
  pid=$!
  for _ in $(seq 600); do
    curl -sf --cacert certs-dev/tls-ca.pem "https://$HTTP/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  taskset -c 1 "$BIN" bench --scenario "$scenario" --grpc-addr "$GRPC" --http-addr "$HTTP" \
    --rate "$RATE" --ramp 1 --max-steps 1 --duration "$((SECONDS_ON + 10))s" --warmup 5s \
    --concurrency 256 "${http_args[@]}" --json > "$dir/bench.json" 2>"$dir/bench.log" &
  gen=$!
  sleep 8 # past the warm-up
  before=$(issued)
  callgrind_control -i on "$pid" >/dev/null
  sleep "$SECONDS_ON"
  callgrind_control -i off "$pid" >/dev/null
  requests=$(( $(issued) - before ))
  wait "$gen" || true
  kill -TERM "$pid"; wait "$pid" || true
  [ "$requests" -gt 0 ] || { echo "no request was served; see $dir" >&2; exit 1; }
  for f in "$dir"/callgrind.out.*-*; do
    read -r total crypto memory alloc other < <(split "$f" "$requests")
    [ "$total" -ge 1000 ] || continue # threads that did (almost) nothing per request
    echo "| \`$scenario\` | $(thread_name "$f") | $total | $crypto | $memory | $alloc | $other |"
  done
done
