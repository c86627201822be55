#!/usr/bin/env bash
# The HTTP API against its own OpenAPI document: schemathesis (a property-based API tester
# from PyPI) drives a live `cosmos serve` on loopback with generated requests (valid and
# not), and fails on any 5xx or any response whose status, content type or body the
# document does not describe.
#
#   scripts/api-check.sh [COSMOS_BINARY]     # default target/debug/cosmos
set -euo pipefail
cd "$(dirname "$0")/.."

cosmos=$(realpath "${1:-target/debug/cosmos}")
venv=${SCHEMATHESIS_VENV:-$PWD/target/schemathesis-venv}
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'schemathesis==4.32.5'
fi

home=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$home"
}
trap cleanup EXIT
export COSMOS_HOME=$home

# Something to find: prompts, input sets and runs in every state.
"$cosmos" init >/dev/null
"$cosmos" dev seed --prompts 50 --runs 300 --input-sets 10 >/dev/null

# No worker: generated runs stay queued instead of reaching for targets.
"$cosmos" serve --bind 127.0.0.1:0 --no-worker 2>"$home/serve.log" &
pid=$!
addr=""
for _ in $(seq 1 200); do
    addr=$(sed -n 's|^serving http://\([^/]*\)/api/v1.*|\1|p' "$home/serve.log" | head -n 1)
    [ -n "$addr" ] && break
    sleep 0.05
done
if [ -z "$addr" ]; then
    echo "cosmos serve did not start:" >&2
    cat "$home/serve.log" >&2
    exit 1
fi

# One worker: schemathesis 4.32 with two can trip over its own threads (hypothesis reports an
# "AST constructor recursion depth mismatch" as a runtime error, nothing to do with the API).
"$venv/bin/schemathesis" run "http://$addr/api/v1/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-50}" \
    --workers 1 \
    --seed "${SCHEMATHESIS_SEED:-20261127}" \
    --no-color
