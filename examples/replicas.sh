#!/usr/bin/env bash
# Three `tessera serve` replicas on one local PostgreSQL database, with the DEV ONLY material of
# certs-dev/. Run from anywhere; Ctrl-C stops the replicas (the database is kept).
#
#   bash examples/replicas.sh
#
# Environment:
#   TESSERA_PG      server URL without a database  (default postgres://postgres@127.0.0.1:5432)
#   TESSERA_PG_DB   database to create and use     (default tessera_replicas)
#   TESSERA_BIN     the tessera binary             (default: cargo build --release, then its output)
#   TESSERA_LOG     log filter of the replicas     (default info)
# Each replica's config, log and audit log go to tessera-data/replicas/.
set -euo pipefail
cd "$(dirname "$0")/.."

PG="${TESSERA_PG:-postgres://postgres@127.0.0.1:5432}"
DB="${TESSERA_PG_DB:-tessera_replicas}"
URL="$PG/$DB?sslmode=disable"
OUT=tessera-data/replicas
# grpc:https port pairs of replicas 1, 2 and 3.
PORTS=("8443:8444" "8453:8454" "8463:8464")

if [[ ! "$DB" =~ ^[a-z_][a-z0-9_]*$ ]]; then
  echo "TESSERA_PG_DB must be a plain lower-case name, not '$DB'" >&2
  exit 2
fi
for tool in psql curl; do
  command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 2; }
done

if [[ -z "${TESSERA_BIN:-}" ]]; then
  cargo build --release --quiet
  TESSERA_BIN="${CARGO_TARGET_DIR:-target}/release/tessera"
fi

# The database: the ledger's tables have plain names, so it gets one of its own.
if [[ -z "$(psql "$PG/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]]; then
  psql "$PG/postgres" -qc "CREATE DATABASE $DB"
  echo "created database $DB"
fi

mkdir -p "$OUT"
pids=()
stop() {
  trap - INT TERM EXIT
  if ((${#pids[@]})); then
    echo
    echo "stopping replicas (SIGTERM: they finish in-flight requests, then exit)"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap 'stop; exit 130' INT TERM
trap stop EXIT

for i in 1 2 3; do
  IFS=: read -r grpc http <<<"${PORTS[$((i - 1))]}"
  config="$OUT/replica-$i.toml"
  # The dev config with this replica's ports, the shared database and its own audit log. The
  # issuer (the `iss` of minted tokens) stays the same on every replica.
  sed -e "s|^grpc_addr = .*|grpc_addr = \"127.0.0.1:$grpc\"|" \
      -e "s|^http_addr = .*|http_addr = \"127.0.0.1:$http\"|" \
      -e "s|^path = \"tessera-data/ledger.redb\"|url = \"$URL\"|" \
      certs-dev/tessera.toml >"$config"
  printf '\n[audit]\npath = "%s/audit-%s.log"\n' "$OUT" "$i" >>"$config"
  TESSERA_LOG="${TESSERA_LOG:-info}" "$TESSERA_BIN" serve --config "$config" \
    2>"$OUT/replica-$i.log" &
  pids+=($!)
done

for i in 1 2 3; do
  IFS=: read -r grpc http <<<"${PORTS[$((i - 1))]}"
  ready=""
  for _ in $(seq 1 100); do
    if curl -sf --cacert certs-dev/tls-ca.pem "https://localhost:$http/readyz" >/dev/null; then
      ready=yes
      break
    fi
    if ! kill -0 "${pids[$((i - 1))]}" 2>/dev/null; then break; fi
    sleep 0.2
  done
  if [[ -z "$ready" ]]; then
    echo "replica $i did not become ready; the end of $OUT/replica-$i.log:" >&2
    tail -n 20 "$OUT/replica-$i.log" >&2
    exit 1
  fi
done

echo "three replicas on $URL"
for i in 1 2 3; do
  IFS=: read -r grpc http <<<"${PORTS[$((i - 1))]}"
  echo "  replica $i: gRPC https://127.0.0.1:$grpc  HTTPS https://127.0.0.1:$http" \
    " (log $OUT/replica-$i.log, pid ${pids[$((i - 1))]})"
done
cat <<EOF

Try (from the repository root):
  curl --cacert certs-dev/tls-ca.pem https://localhost:8454/readyz
  cargo run --example mint_jwt                                  # mints on replica 1
  $TESSERA_BIN ls --server https://127.0.0.1:8463                # lists it on replica 3
  $TESSERA_BIN watch --server https://127.0.0.1:8453             # events of every replica
  $TESSERA_BIN revoke --server https://127.0.0.1:8463 \\
      --workload spiffe://example.org/ns/payments/sa/api --reason test   # on any replica
Ctrl-C stops the replicas.
EOF
wait -n "${pids[@]}" || true
echo "a replica exited; see $OUT/replica-*.log" >&2
