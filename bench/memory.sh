#!/usr/bin/env bash
# Memory and restart cost per tracked credential (issue 6).
#
# Builds release, seeds ledgers of each COUNT live JWT credentials (examples/ledger_seed.rs:
# 10,000 workloads, 50 destinations, 4 purposes, expiries over the next 50 minutes), starts
# `tessera serve` on each as its own process and reports:
#   - restart: seconds from exec until GET /readyz answers 200;
#   - VmRSS / VmHWM after ready and after IDLE seconds idle, raw and per credential after
#     subtracting the same broker on an empty ledger;
#   - ledger file size per credential.
#
#   bench/memory.sh                       # COUNTS="1000000 10000000"
#   COUNTS=100000 X509_PERCENT=5 bench/memory.sh
#
# Needs: cargo, curl, python3 (to pick free ports). Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNTS=${COUNTS:-"1000000 10000000"}
X509_PERCENT=${X509_PERCENT:-0}
IDLE=${IDLE:-10}
WORK=${WORK:-$(mktemp -d /tmp/tessera-memory.XXXXXX)}
mkdir -p "$WORK"

cargo build --release --bin tessera --example ledger_seed >&2

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# kib FIELD PID: a field of /proc/PID/status, in KiB.
kib() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$2/status"; }

# serve LEDGER NAME: starts the broker on LEDGER, waits for /readyz, prints
# "ready_s rss_ready_kib hwm_ready_kib rss_idle_kib hwm_idle_kib", and stops it.
serve() {
  local ledger=$1 name=$2 grpc http config pid start ready_ns
  grpc=$(free_port)
  http=$(free_port)
  config="$WORK/$name.toml"
  sed -e "s|^grpc_addr = .*|grpc_addr = \"127.0.0.1:$grpc\"|" \
      -e "s|^http_addr = .*|http_addr = \"127.0.0.1:$http\"|" \
      -e "s|^issuer = .*|issuer = \"https://127.0.0.1:$http\"|" \
      -e "s|^path = \"tessera-data/ledger.redb\"|path = \"$ledger\"|" \
      certs-dev/tessera.toml > "$config"
  printf '\n[audit]\npath = "%s"\n' "$WORK/$name-audit.log" >> "$config"
  start=$(date +%s%N)
  TESSERA_LOG=${TESSERA_LOG:-warn} target/release/tessera serve --config "$config" \
    2> "$WORK/$name.log" &
  pid=$!
  for _ in $(seq 1 12000); do
    if curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$http/readyz" 2>/dev/null \
        | grep -q '^200$'; then
      break
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "tessera exited early; see $WORK/$name.log" >&2
      tail -5 "$WORK/$name.log" >&2
      return 1
    fi
    sleep 0.01
  done
  ready_ns=$(( $(date +%s%N) - start ))
  local rss_ready hwm_ready
  rss_ready=$(kib VmRSS "$pid")
  hwm_ready=$(kib VmHWM "$pid")
  sleep "$IDLE"
  echo "$(awk -v ns="$ready_ns" 'BEGIN { printf "%.3f", ns / 1e9 }') $rss_ready $hwm_ready $(kib VmRSS "$pid") $(kib VmHWM "$pid")"
  kill -TERM "$pid"
  wait "$pid" || true
}

# The audit log section must not already exist in the dev config.
if grep -q '^\[audit\]' certs-dev/tessera.toml; then
  echo "certs-dev/tessera.toml has an [audit] section; adjust serve()" >&2
  exit 1
fi

read -r _ base_rss _ base_idle _ < <(serve "$WORK/empty.redb" empty)
echo "empty ledger: VmRSS ${base_rss} KiB after ready, ${base_idle} KiB after ${IDLE}s idle"

printf '%-10s %8s %10s %12s %12s %12s %12s %12s %10s\n' count seed/s ready_s \
  rss_ready_KiB hwm_KiB rss_idle_KiB B/cred_rss B/cred_raw disk_B/cred
for count in $COUNTS; do
  ledger="$WORK/seed-$count.redb"
  rm -f "$ledger"
  # Expiries start after a delay that outlasts the seed, so every credential is live when the
  # broker starts (the first expiry pass after a start is measured separately, not here).
  seeded=$(target/release/examples/ledger_seed "$ledger" "$count" "$X509_PERCENT" 10000 \
    "$(( count / 5000 + 60 ))")
  echo "$seeded" >&2
  rate=$(echo "$seeded" | sed -n 's/.*(\([0-9]*\)\/s).*/\1/p')
  size=$(stat -c %s "$ledger")
  read -r ready rss hwm idle_rss idle_hwm < <(serve "$ledger" "seed-$count")
  awk -v c="$count" -v rate="$rate" -v ready="$ready" -v rss="$rss" -v hwm="$hwm" \
      -v idle="$idle_rss" -v base="$base_idle" -v size="$size" 'BEGIN {
    printf "%-10d %8d %10.3f %12d %12d %12d %12.1f %12.1f %10.1f\n", c, rate, ready, rss, hwm, idle,
      (idle - base) * 1024 / c, idle * 1024 / c, size / c
  }'
  echo "  (VmHWM after idle: ${idle_hwm} KiB; ledger file: ${size} bytes)"
done
echo "work files in $WORK (delete when done)"
