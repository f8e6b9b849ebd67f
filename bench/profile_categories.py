#!/usr/bin/env python3
"""Groups a `perf report --sort comm,sym` of the broker by thread and by what the time is for
(crypto, TLS, HTTP/2 + gRPC, allocation, kernel, ...): bench/profile.sh's second table.

    python3 bench/profile_categories.py target/bench/profile-mint-jwt/perf.data
"""
import re
import subprocess
import sys
from collections import defaultdict

CATEGORIES = [
    ("crypto (ECDSA, SHA, AES-GCM)", r"nistz256|aws_lc|bignum|sha256|sha512|aes|gcm|aead|beeu|ecdsa|p256|BN_|bn_|Lbignum|ec_GFp"),
    ("kernel (syscalls, fsync, network, scheduling)", r"^\[k\]"),
    ("allocation and copies", r"malloc|free|_int_|calloc|realloc|rdl_|memmove|memcpy|memset|unlink_chunk|consolidate"),
    ("TLS records (rustls)", r"rustls"),
    ("HTTP/2, gRPC (h2, hyper, tonic, prost)", r"h2::|hyper|tonic|prost|http::|hpack"),
    ("redb", r"redb::"),
    ("JSON (serde_json)", r"serde_json|serde::"),
    ("base64", r"base64"),
    ("tokio runtime", r"tokio::|mio::|epoll"),
    ("metrics, tracing", r"prometheus|tracing"),
    ("tessera code", r"tessera"),
]

def main(path):
    out = subprocess.run(
        ["perf", "report", "-i", path, "--no-children", "--sort", "comm,sym", "--stdio", "-g", "none"],
        capture_output=True, text=True, check=True).stdout
    by_thread = defaultdict(lambda: defaultdict(float))
    totals = defaultdict(float)
    for line in out.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+(.*)$", line)
        if not m:
            continue
        pct, comm, sym = float(m.group(1)), m.group(2), m.group(3).strip()
        cat = next((name for name, rx in CATEGORIES if re.search(rx, sym)), "other")
        by_thread[comm][cat] += pct
        totals[comm] += pct
    for comm in sorted(totals, key=totals.get, reverse=True):
        print(f"{comm} ({totals[comm]:.1f}% of samples)")
        for cat, pct in sorted(by_thread[comm].items(), key=lambda kv: -kv[1]):
            print(f"  {cat:48s} {100 * pct / totals[comm]:5.1f}%")

if __name__ == "__main__":
    main(sys.argv[1])
