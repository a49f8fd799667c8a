#!/usr/bin/env bash
# One command for the benchmark: prepares bench/.venv and the apt tools, then runs bench/run.py.
#   bench/run.sh [--quick] [--only SERVER...] [--apps APP...] [--rounds N] [--duration S] ...
#   BENCH_SKIP_INSTALL=1 bench/run.sh ...   reuse the venv as it is (no pip, no apt)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="${BENCH_RINGSERVE_SRC:-$(dirname "$HERE")}"
VENV="$HERE/.venv"
PY="${BENCH_PYTHON:-python3}"   # pyenv's 3.11 on the project machines
LOG="$HERE/results/raw"
mkdir -p "$LOG"

if [[ "${BENCH_SKIP_INSTALL:-0}" != 1 ]]; then
  missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v perf >/dev/null || missing+=(linux-perf)
  command -v strace >/dev/null || missing+=(strace)
  command -v taskset >/dev/null || missing+=(util-linux)
  if ((${#missing[@]})); then
    echo "apt: installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  echo "pip: installing peers into bench/.venv (log: results/raw/pip.log)"
  "$VENV/bin/pip" install -q --upgrade pip >"$LOG/pip.log" 2>&1
  "$VENV/bin/pip" install -q 'uvicorn[standard]' granian gunicorn gunicorn_h1c uvicorn-worker hypercorn \
    fastapi django matplotlib >>"$LOG/pip.log" 2>&1
  echo "pip: installing ringserve (editable) from $REPO (log: results/raw/ringserve-install.log)"
  if "$VENV/bin/pip" install -e "$REPO" >"$LOG/ringserve-install.log" 2>&1 \
     && "$VENV/bin/python" -c "import ringserve" >>"$LOG/ringserve-install.log" 2>&1; then
    export RINGSERVE_INSTALL="ok (pip install -e)"
  else
    "$VENV/bin/pip" uninstall -y -q ringserve >/dev/null 2>&1 || true
    export RINGSERVE_INSTALL="failed: ringserve did not install or import (see results/raw/ringserve-install.log)"
    echo "note: $RINGSERVE_INSTALL; it is reported as n/a"
  fi
fi
exec "$VENV/bin/python" "$HERE/run.py" "$@"
