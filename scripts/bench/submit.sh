#!/usr/bin/env bash
# Measures queueing a sweep of N runs in one submission (`cosmos run PROMPT --seeds 1..N
# --no-wait`), process start to exit, and how long the database's write lock is held for it.
#
#   scripts/bench/submit.sh [N] [BASELINE_COSMOS]
#
# Each measurement uses a fresh home holding one prompt on a small scene. With a second
# argument (a `cosmos` binary built from another commit), both are measured in the same run,
# alternating, three times each.
set -euo pipefail
cd "$(dirname "$0")/../.."

n=${1:-10000}
baseline=${2:-}
command -v ffmpeg >/dev/null || { echo "ffmpeg is missing: apt-get install ffmpeg" >&2; exit 2; }
cargo build --release --bin cosmos >&2
current=$PWD/target/release/cosmos

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ffmpeg -loglevel error -f lavfi -i testsrc=size=64x36:rate=24 -frames:v 24 -pix_fmt yuv420p \
  "$work/color.mp4"

# Prints the wall time of queueing N runs with cosmos binary $1, in a fresh home.
measure() {
  local bin=$1 home
  home=$(mktemp -d -p "$work")
  COSMOS_HOME=$home "$bin" prompt create "a harbour at dawn" --inputs "$work" --name bench \
    >/dev/null 2>&1
  local start end
  start=$(date +%s.%N)
  COSMOS_HOME=$home COSMOS_LOG=cosmos_store=debug "$bin" run bench --seeds "1..$n" --no-wait \
    >/dev/null 2>"$home/stderr"
  end=$(date +%s.%N)
  # The store says how long it held the write lock (binaries that do not say, say nothing).
  grep -o 'write lock was held [0-9.]* ms' "$home/stderr" >&2 || true
  local queued
  queued=$(COSMOS_HOME=$home "$bin" list --status queued --limit 100000 --json | grep -c '"id": "rs_' || true)
  [ "$queued" = "$n" ] || { echo "expected $n queued runs, found $queued" >&2; exit 1; }
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }'
}

for round in 1 2 3; do
  if [ -n "$baseline" ]; then
    t=$(measure "$baseline")
    awk -v n="$n" -v t="$t" 'BEGIN { printf "baseline  %d runs: %6.2f s  (%6.0f runs/s)\n", n, t, n / t }'
  fi
  t=$(measure "$current")
  awk -v n="$n" -v t="$t" 'BEGIN { printf "current   %d runs: %6.2f s  (%6.0f runs/s)\n", n, t, n / t }'
done
