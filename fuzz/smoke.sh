#!/usr/bin/env bash
# Builds the fuzz targets, writes the seed corpus, and runs every target for SECONDS (default 4)
# from it: the CI smoke. A crash, a failed assertion, a leak or a timeout fails the run and leaves
# its input under fuzz/artifacts/<target>/ and the fuzzer's log beside it. Needs nightly and cargo-fuzz (see README.md here).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-4}"
# FUZZ_BUILD_ARGS: extra `cargo fuzz build` flags. CI passes `--dev`: unoptimized targets build
# in about half the time and still run thousands of inputs per target in the smoke.
cargo +nightly fuzz build ${FUZZ_BUILD_ARGS:-}
profile=release
case " ${FUZZ_BUILD_ARGS:-} " in *" --dev "* | *" -D "*) profile=debug ;; esac
bin=target/x86_64-unknown-linux-gnu/$profile
"$bin/seed_corpus" corpus
for target in $(cargo +nightly fuzz list); do
  [ "$target" = seed_corpus ] && continue
  mkdir -p "corpus/$target" "artifacts/$target"
  echo "fuzz: $target for ${seconds}s"
  log="artifacts/$target.log"
  if ! "$bin/$target" "corpus/$target" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix="artifacts/$target/" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz: $target failed; the input is under fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E "^stat::(number_of_executed_units|peak_rss_mb)" "$log" | tr '\n' ' '
  echo
done
