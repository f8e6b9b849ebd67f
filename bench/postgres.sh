#!/usr/bin/env bash
# Reproduces the PostgreSQL figures of BENCHMARKS.md ("Replicas on PostgreSQL").
#
# 1. mint-jwt throughput, the broker pinned to CPU $BROKER_CPU and the generator to $GEN_CPU, on
#    the embedded redb ledger and then on PostgreSQL, in the same run: rising rates (x$RAMP)
#    until p99 breaks $P99_MS ms. The database server runs on CPU $PG_CPU — by default the
#    broker's: on a 2-core machine the generator needs the other core, and it spins (it sends on
#    time to the microsecond), which starves a database sharing its core.
# 2. examples/replica_bench: two replicas on one database — restart with $COUNT live
#    credentials, revoke on A → refused by B's introspection and seen by B's watcher
#    ($REVOKES revokes while both replicas mint), revoke by workload covering $COUNT.
#
# With FSYNC_OFF=1, also mint-jwt on PostgreSQL with the server's `fsync = off` (ALTER SYSTEM,
# reloaded, reset on exit): what durability costs on this ledger, as `[ledger] fsync = false`
# prices it on redb.
#
#   bench/postgres.sh                 # ~10 minutes
#   COUNT=100000 bench/postgres.sh    # smaller
set -euo pipefail
cd "$(dirname "$0")/.."

BROKER_CPU=${BROKER_CPU:-0}
PG_CPU=${PG_CPU:-$BROKER_CPU}
GEN_CPU=${GEN_CPU:-1}
START_RATE=${START_RATE:-500}
RAMP=${RAMP:-1.25}
P99_MS=${P99_MS:-10}
DURATION=${DURATION:-8s}
WARMUP=${WARMUP:-2s}
COUNT=${COUNT:-1000000}
REVOKES=${REVOKES:-1000}
OUT=target/bench/postgres
GRPC=127.0.0.1:18443
HTTP=127.0.0.1:18444
PROFILE=${PROFILE:-production}  # Cargo.toml: what is deployed
BIN=target/$PROFILE/tessera
DB=tessera_bench_throughput
PG_ADMIN="psql -h 127.0.0.1 -U postgres -d postgres -qtA"

cargo build --profile "$PROFILE" --locked --bin tessera
cargo build --release --locked --example replica_bench
mkdir -p "$OUT"
command -v taskset >/dev/null || { echo "bench/postgres.sh needs taskset (util-linux)" >&2; exit 1; }
pg_isready -h 127.0.0.1 -p 5432 >/dev/null || { echo "PostgreSQL is not running on 127.0.0.1:5432" >&2; exit 1; }

write_config() { # name ledger-line
  local dir="$OUT/$1"
  rm -rf "$dir" && mkdir -p "$dir"
  sed -e "s|127.0.0.1:8443|$GRPC|; s|127.0.0.1:8444|$HTTP|g" \
      -e "s|^path = .*|$2|" \
      -e "s|^audience = \"tessera\"|audience = \"tessera\"\nmax_in_flight = 1024|" \
      certs-dev/tessera.toml > "$dir/tessera.toml"
  printf '\n[audit]\npath = "%s/audit.log"\n' "$dir" >> "$dir/tessera.toml"
  echo "$dir/tessera.toml"
}

BROKER_PID=
start_broker() { # config
  TESSERA_LOG=warn taskset -c "$BROKER_CPU" "$BIN" serve --config "$1" 2>"$OUT/broker.log" &
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
pin_postgres() { # cpu-list
  for pid in $(pgrep -x postgres || pgrep -f 'postgres:' || true); do taskset -a -p -c "$1" "$pid" >/dev/null 2>&1 || true; done
}
pg_fsync() { # on|off
  if [ "$1" = on ]; then $PG_ADMIN -c "ALTER SYSTEM RESET fsync" -c "SELECT pg_reload_conf()" >/dev/null
  else $PG_ADMIN -c "ALTER SYSTEM SET fsync = off" -c "SELECT pg_reload_conf()" >/dev/null; fi
}
trap 'stop_broker; [ "${FSYNC_OFF:-0}" = 1 ] && pg_fsync on; pin_postgres 0-$(($(nproc) - 1)); $PG_ADMIN -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1; true' EXIT

ramp() { # label
  taskset -c "$GEN_CPU" "$BIN" bench --scenario mint-jwt --grpc-addr "$GRPC" --http-addr "$HTTP" \
    --rate "$START_RATE" --ramp "$RAMP" --p99-limit-ms "$P99_MS" --duration "$DURATION" \
    --warmup "$WARMUP" --max-steps 14 --broker-pid "$BROKER_PID" --markdown > "$OUT/$1.md"
  head -n1 "$OUT/$1.md"
}

RESULTS="$OUT/results.md"
{
  echo "Run $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD), $(nproc) vCPU, PostgreSQL $($PG_ADMIN -c 'SHOW server_version'),"
  echo "broker on CPU $BROKER_CPU, generator on CPU $GEN_CPU, PostgreSQL's server processes on CPU $PG_CPU."
  echo
  echo "| ledger | crypto ceiling, one core | peak sustained goodput | of ceiling | p99 at half peak | at 2× peak |"
  echo "|---|---|---|---|---|---|"
} > "$RESULTS"

echo "== mint-jwt on redb" >&2
start_broker "$(write_config redb "path = \"$OUT/redb/ledger.redb\"")"
ramp redb | sed 's/`mint-jwt`/redb/' >> "$RESULTS"
stop_broker

echo "== mint-jwt on PostgreSQL" >&2
$PG_ADMIN -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
pin_postgres "$PG_CPU"
start_broker "$(write_config postgres "url = \"postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable\"")"
pin_postgres "$PG_CPU"
ramp postgres | sed 's/`mint-jwt`/PostgreSQL/' >> "$RESULTS"
stop_broker

if [ "${FSYNC_OFF:-0}" = 1 ]; then
  echo "== mint-jwt on PostgreSQL, server fsync off" >&2
  $PG_ADMIN -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
  pg_fsync off
  start_broker "$(write_config postgres-nofsync "url = \"postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable\"")"
  pin_postgres "$PG_CPU"
  ramp postgres-nofsync | sed 's/`mint-jwt`/PostgreSQL, server fsync off/' >> "$RESULTS"
  stop_broker
  pg_fsync on
fi
pin_postgres "0-$(($(nproc) - 1))"

if [ "${REPLICAS:-1}" = 1 ]; then
  echo "== replicas (examples/replica_bench, $COUNT credentials, $REVOKES revokes)" >&2
  { echo; echo '```'; target/release/examples/replica_bench "$COUNT" "$REVOKES" 2>/dev/null; echo '```'; } >> "$RESULTS"
fi
cat "$RESULTS"
