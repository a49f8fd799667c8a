#!/bin/bash
# Instructions per request on the in-process request path (path_cost.py), counted by callgrind.
# usage: bench/scripts/path_cost.sh [SRC=this checkout] [N=2000]   (APP=module:attr to change app)
# Needs valgrind (apt-get install valgrind). Takes ~20 s.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
src=${1:-$here}
n=${2:-2000}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
PYTHONPATH=$src REPS=1 valgrind --tool=callgrind --collect-atstart=no --toggle-collect=deque_init \
    --callgrind-out-file="$out" "$here/.venv/bin/python" "$here/bench/scripts/path_cost.py" "$n" >/dev/null 2>&1
total=$(callgrind_annotate "$out" | grep -oP '^\s*\K[\d,]+(?= \(100.0%\)\s+PROGRAM TOTALS)' | tr -d ,)
echo "$src: $((total / n)) instructions/request (${APP:-raw_asgi:plaintext} ${URL:-/}, N=$n)"
