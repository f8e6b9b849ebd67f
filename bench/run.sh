#!/usr/bin/env bash
# Reproduces the load figures of BENCHMARKS.md ("End to end under load").
#
# Builds the `production` binary (Cargo.toml; PROFILE=release for the other), then for each
# scenario starts a fresh broker pinned to one core (taskset -c $BROKER_CPU) on the dev material
# with a fresh ledger, and runs `tessera bench` pinned to the other core (taskset -c $GEN_CPU):
# the crypto ceiling first (same run, idle broker), then rising rates (x$RAMP) until p99 breaks
# $P99_MS ms, then one step at half the peak sustained rate and one at twice it (overload: the
# broker must shed, not collapse). Also runs mint-x509 and mint-jwt with `[ledger] fsync = false`
# to price durability, mint-jwt with `[ledger] journal = false` (redb fsynced at every commit) to
# price the journal, and the oidc-provider peer in bench/peer/ (needs node + npm; skipped when
# missing).
#
# Writes target/bench/results.md and replaces the block between the BEGIN/END markers of
# BENCHMARKS.md with it (machine, date and commit included).
#
# Then (issue 16) `mint-jwt` again with two tokio workers on the broker's one core (CPU per
# request by thread at 1 and 2 workers), the single-thread ceiling of the ledger writer
# (examples/ledger_writer_ceiling), and the PostgreSQL ledger durable and with the server's
# fsync off (bench/postgres.sh, REPLICAS=0; skipped when PostgreSQL is not running).
#
#   bench/run.sh                      # everything, ~30 minutes
#   SCENARIOS="mint-jwt" NOFSYNC= NOJOURNAL= WORKERS2= SERIAL=0 PG=0 PEER=0 bench/run.sh # one scenario
set -euo pipefail
cd "$(dirname "$0")/.."

BROKER_CPU=${BROKER_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
START_RATE=${START_RATE:-1000}
PEER_START_RATE=${PEER_START_RATE:-100}  # the peer saturates below 500/s
RAMP=${RAMP:-1.25}
P99_MS=${P99_MS:-10}
DURATION=${DURATION:-8s}
WARMUP=${WARMUP:-2s}
SCENARIOS=${SCENARIOS-"mint-jwt mint-jwt-mtls mint-x509 exchange revoke"}
NOFSYNC=${NOFSYNC-"mint-jwt mint-x509"}
NOJOURNAL=${NOJOURNAL-"mint-jwt"}
WORKERS2=${WORKERS2-"mint-jwt"}
SERIAL=${SERIAL:-1}
PG=${PG:-1}
PEER=${PEER:-1}
OUT=target/bench
GRPC=127.0.0.1:18443
HTTP=127.0.0.1:18444
PEER_PORT=19600
PROFILE=${PROFILE:-production}  # Cargo.toml: what is deployed
BIN=target/$PROFILE/tessera

cargo build --profile "$PROFILE" --locked --bin tessera
mkdir -p "$OUT"
command -v taskset >/dev/null || { echo "bench/run.sh needs taskset (util-linux)" >&2; exit 1; }

# The dev config on other ports, a fresh ledger, a CI issuer served by the generator, a lower
# max_in_flight so that overload is shed within a bounded queue: 1,024 (256 until issue 16),
# ~0.1 s of work at the peak, so that the generator's catch-up burst after it was itself
# descheduled for ~30 ms (other services on this VM share its core) is queued, not shed. The
# generator allows 4,096 in flight, so that at twice the peak the broker's bound is what holds.
write_config() { # name fsync
  local dir="$OUT/$1"
  rm -rf "$dir" && mkdir -p "$dir"
  sed -e "s|127.0.0.1:8443|$GRPC|; s|127.0.0.1:8444|$HTTP|g" \
      -e "s|^path = .*|path = \"$dir/ledger.redb\"\nfsync = $2\njournal = ${JOURNAL:-true}|" \
      -e "s|^audience = \"tessera\"|audience = \"tessera\"\nmax_in_flight = 1024|" \
      certs-dev/tessera.toml > "$dir/tessera.toml"
  "$BIN" bench --scenario exchange --ci-issuer-addr 127.0.0.1:9555 --print-broker-config \
    >> "$dir/tessera.toml"
  echo "$dir/tessera.toml"
}

BROKER_PID=
start_broker() { # config
  TOKIO_WORKER_THREADS=${WORKERS:-1} TESSERA_LOG=warn taskset -c "$BROKER_CPU" "$BIN" serve --config "$1" 2>"$OUT/broker.log" &
  BROKER_PID=$!
  for _ in $(seq 100); do
    curl -sf --cacert certs-dev/tls-ca.pem "https://$HTTP/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "broker did not become ready; see $OUT/broker.log" >&2
  exit 1
}
stop_broker() {
  [ -n "$BROKER_PID" ] && kill -TERM "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" || true
  BROKER_PID=
}
trap 'stop_broker; [ -n "${PEER_PID:-}" ] && kill "$PEER_PID" 2>/dev/null; true' EXIT

generate() { # scenario extra-args...
  local scenario=$1; shift
  taskset -c "$GEN_CPU" "$BIN" bench --scenario "$scenario" --grpc-addr "$GRPC" \
    --http-addr "$HTTP" --rate "${RATE:-$START_RATE}" --ramp "$RAMP" --p99-limit-ms "$P99_MS" \
    --duration "$DURATION" --warmup "$WARMUP" --max-steps "${MAX_STEPS:-16}" --broker-pid "${BROKER_PID:-0}" \
    --concurrency 4096 "$@"
}

RESULTS="$OUT/results.md"
{
  echo "Run $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo '+'),"
  echo "$(nproc) vCPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB,"
  echo "$(uname -sr), $(rustc --version | cut -d' ' -f1-2). Broker pinned to CPU $BROKER_CPU, generator to CPU $GEN_CPU;"
  echo "steps of $DURATION after $WARMUP warm-up, rate x$RAMP from $START_RATE/s while p99 ≤ $P99_MS ms, goodput ≥ 97% of offered, nothing shed or failed."
  echo
  echo "| scenario | crypto ceiling, one core | peak sustained goodput | of ceiling | p99 at half peak | at 2× peak |"
  echo "|---|---|---|---|---|---|"
} > "$RESULTS"
DETAILS="$OUT/details.md"
: > "$DETAILS"

run_scenario() { # label scenario fsync extra-args...
  local label=$1 scenario=$2 fsync=$3; shift 3
  local config
  config=$(write_config "$label" "$fsync")
  start_broker "$config"
  echo "== $label" >&2
  generate "$scenario" --overload 2 --markdown "$@" > "$OUT/$label.md"
  stop_broker
  local row
  row=$(head -n1 "$OUT/$label.md")
  if [ "$fsync" = false ]; then row=${row/\`$scenario\`/\`$scenario\` (fsync off)}; fi
  if [ "${JOURNAL:-true}" = false ]; then row=${row/\`$scenario\`/\`$scenario\` (no journal: redb fsync per commit)}; fi
  if [ "${WORKERS:-1}" != 1 ]; then row=${row/\`$scenario\`/\`$scenario\` ($WORKERS tokio workers, one core)}; fi
  echo "$row" >> "$RESULTS"
  { echo; echo "#### $label"; echo; tail -n +3 "$OUT/$label.md"; } >> "$DETAILS"
}

# HTTP/1.1 carries one request per connection at a time: give the HTTP scenarios more.
http_args() { case $1 in exchange|peer) echo "--http1-connections 64" ;; esac; }
for s in $SCENARIOS; do run_scenario "$s" "$s" true $(http_args "$s"); done
for s in $NOFSYNC; do run_scenario "$s-nofsync" "$s" false $(http_args "$s"); done
for s in $NOJOURNAL; do JOURNAL=false run_scenario "$s-nojournal" "$s" true $(http_args "$s"); done
for s in $WORKERS2; do WORKERS=2 run_scenario "$s-2workers" "$s" true $(http_args "$s"); done

if [ "$PEER" = 1 ] && command -v node >/dev/null && command -v npm >/dev/null; then
  npm ci --prefix bench/peer --silent
  "$BIN" bench --scenario peer --write-peer-jwks "$OUT/peer-jwks.json"
  taskset -c "$BROKER_CPU" node bench/peer/server.mjs --port "$PEER_PORT" \
    --client-jwks "$OUT/peer-jwks.json" > "$OUT/peer.log" 2>&1 &
  PEER_PID=$!
  for _ in $(seq 100); do grep -q READY "$OUT/peer.log" && break; sleep 0.1; done
  echo "== peer (oidc-provider $(node -p "require('./bench/peer/node_modules/oidc-provider/package.json').version"))" >&2
  RATE=$PEER_START_RATE BROKER_PID=$PEER_PID generate peer --peer-url "http://127.0.0.1:$PEER_PORT/token" \
    --overload 2 --markdown $(http_args peer) > "$OUT/peer.md"
  kill "$PEER_PID"; PEER_PID=
  head -n1 "$OUT/peer.md" | sed 's/`peer`/`peer`: oidc-provider, plain HTTP/' >> "$RESULTS"
  { echo; echo "#### peer (oidc-provider)"; echo; tail -n +3 "$OUT/peer.md"; } >> "$DETAILS"
fi

if [ "$SERIAL" = 1 ]; then
  echo "== ledger writer ceiling" >&2
  cargo build --release --locked --example ledger_writer_ceiling
  { echo; echo "Serial stage: the redb ledger writer alone (\`examples/ledger_writer_ceiling\`, mint-jwt records, fsync on):"; echo;
    taskset -c "$BROKER_CPU" target/release/examples/ledger_writer_ceiling 50000 | tail -n +2; } >> "$RESULTS"
fi
if [ "$PG" = 1 ] && pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
  echo "== PostgreSQL ledger (bench/postgres.sh)" >&2
  REPLICAS=0 FSYNC_OFF=1 bench/postgres.sh >/dev/null
  { echo; echo "The PostgreSQL ledger (\`REPLICAS=0 FSYNC_OFF=1 bench/postgres.sh\`):"; echo;
    tail -n +4 target/bench/postgres/results.md; } >> "$RESULTS"
fi

{ echo; echo "<details><summary>Every step</summary>"; cat "$DETAILS"; echo; echo "</details>"; } >> "$RESULTS"

# Replace the marked block of BENCHMARKS.md.
awk -v results="$RESULTS" '
  /<!-- BEGIN bench\/run.sh -->/ { print; while ((getline line < results) > 0) print line; skip=1; next }
  /<!-- END bench\/run.sh -->/ { skip=0 }
  !skip { print }
' BENCHMARKS.md > "$OUT/BENCHMARKS.md" && mv "$OUT/BENCHMARKS.md" BENCHMARKS.md
echo "wrote $RESULTS and BENCHMARKS.md" >&2
