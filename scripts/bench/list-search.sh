#!/usr/bin/env bash
# Measures `cosmos list`, `cosmos search` and `cosmos show` on a database of 100k prompts and
# 200k runs, process start to exit (DESIGN.md §7: each under 50 ms).
#
#   scripts/bench/list-search.sh [PROMPTS] [RUNS]
#
# Baseline in the same run: the sqlite3 CLI executing the equivalent raw queries on the same
# file (process start to exit), i.e. what the database alone costs.
#
# Needs hyperfine and sqlite3 (Debian: apt-get install hyperfine sqlite3). Leaves the seeded home in
# $BENCH_HOME (default: a temporary folder, removed at the end).
set -euo pipefail
cd "$(dirname "$0")/../.."

prompts=${1:-100000}
runs=${2:-200000}
for tool in hyperfine sqlite3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install $tool" >&2; exit 2; }
done

cargo build --release --bin cosmos >&2
cosmos=$PWD/target/release/cosmos

home=${BENCH_HOME:-$(mktemp -d)}
[ -n "${BENCH_HOME:-}" ] || trap 'rm -rf "$home"' EXIT
export COSMOS_HOME=$home NO_COLOR=1

if [ ! -f "$home/cosmos.db" ]; then
  echo "seeding $prompts prompts and $runs runs into $home …" >&2
  /usr/bin/time -f "seeded in %e s" "$cosmos" dev seed --prompts "$prompts" --runs "$runs" --input-sets 2000 >&2
fi
ls -l "$home/cosmos.db" >&2

run_id=$("$cosmos" list --limit 1 --json | sed -n 's/^    "id": "\(rs_[0-9a-z]*\)".*/\1/p' | head -n 1)
prompt_id=$("$cosmos" list --limit 1 --json | sed -n 's/^    "prompt_id": "\(ps_[0-9a-z]*\)".*/\1/p' | head -n 1)
[ -n "$run_id" ] && [ -n "$prompt_id" ] || { echo "could not read ids from cosmos list" >&2; exit 1; }

db=$home/cosmos.db
list_sql="SELECT r.*, p.name FROM runs r JOIN prompts p ON p.id = r.prompt_id ORDER BY r.created_at DESC, r.id DESC LIMIT 50"
search_sql="SELECT p.*, snippet(prompts_fts, -1, '[', ']', '…', 16), bm25(prompts_fts, 4.0, 1.0, 0.5) AS s FROM prompts_fts JOIN prompts p ON p.seq = prompts_fts.rowid WHERE prompts_fts MATCH 'harbour dawn' ORDER BY s LIMIT 20"

hyperfine --warmup 5 --runs 50 --shell=none --export-markdown "${BENCH_OUT:-/dev/stdout}" \
  -n "baseline: sqlite3 list query" "sqlite3 $db \"$list_sql\"" \
  -n "baseline: sqlite3 search query" "sqlite3 $db \"$search_sql\"" \
  -n "list --limit 50" "$cosmos list --limit 50" \
  -n "search \"harbour dawn\"" "$cosmos search harbour dawn" \
  -n "search \"robot arm\" --limit 50" "$cosmos search \"robot arm\" --limit 50" \
  -n "show <run>" "$cosmos show ${run_id:0:20}" \
  -n "show <prompt>" "$cosmos show $prompt_id" \
  -n "list --status failed --limit 50" "$cosmos list --status failed --limit 50"
