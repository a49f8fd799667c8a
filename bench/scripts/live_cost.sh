#!/bin/bash
# Instructions per request of a real server process under wrk, counted by callgrind: the whole
# user-space cost (ring dispatch, event loop, pool threads, request path), which path_cost.sh's
# in-process loop does not see. Counters are zeroed after a warm-up and dumped after the run.
# usage: bench/scripts/live_cost.sh [SRC=this checkout] [APP=raw_asgi:plaintext] [ringserve flags...]
#        e.g. bench/scripts/live_cost.sh "" raw_wsgi:plaintext --interface wsgi
# Env: C=64 (connections), D=10 (seconds measured), URL=/, PORT=8719.
# Needs valgrind and wrk. Takes ~60 s. Under callgrind the server is ~50x slower, so each loop
# iteration sees a full batch: compare two checkouts with each other, not with a live bench.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
src=${1:-$here}
app=${2:-raw_asgi:plaintext}
shift $(( $# < 2 ? $# : 2 ))
port=${PORT:-8719}
url=http://127.0.0.1:$port${URL:-/}
out=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; sleep 2; kill -9 "$pid" 2>/dev/null || true; fi
    rm -rf "$out"
}
trap cleanup EXIT
cd "$here/bench/apps"
PYTHONPATH=$src:. taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
    "$here/.venv/bin/python" -m ringserve "$app" --port "$port" --no-access-log "$@" >"$out/log" 2>&1 &
pid=$!
for _ in $(seq 240); do curl -s -o /dev/null "$url" && break; sleep 0.5; done
taskset -c 0 wrk -t1 -c"${C:-64}" -d3s "$url" >/dev/null
callgrind_control -z "$pid" >/dev/null 2>&1
taskset -c 0 wrk -t1 -c"${C:-64}" -d"${D:-10}"s "$url" >"$out/wrk"
callgrind_control -d "$pid" >/dev/null 2>&1
sleep 1
requests=$(grep -oP '^\s+\K\d+(?= requests in)' "$out/wrk")
total=0
for f in "$out"/cg.*; do
    n=$(grep -oP '^(summary|totals): \K\d+' "$f" | head -1)
    total=$((total + n))
done
echo "$src: $((total / requests)) instructions/request ($app $* ${URL:-/}, c=${C:-64}, $requests requests)"
