#!/usr/bin/env bash
# Install what ringserve needs to build, run and test - only what is missing - then build it.
#
#   ./scripts/install.sh            system packages (apt), .venv, pip install -e '.[test]'
#
# Idempotent and fast when everything is in place: apt runs only if a tool or header is missing, and
# pip runs only when the build inputs (pyproject.toml, setup.py, ringserve/core sources) changed or
# the built core does not import. Environment: PYTHON (default python3, any >= 3.10 - a pyenv one is
# fine), VENV (default .venv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
VENV=${VENV:-$ROOT/.venv}
STAMP=$VENV/.ringserve-install-stamp

log() { printf 'install.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root (or sudo) to run: $*"
    fi
}

have_header() {  # have_header liburing.h - can the C compiler find it?
    command -v "${CC:-cc}" >/dev/null 2>&1 &&
        printf '#include <%s>\n' "$1" | "${CC:-cc}" -E -x c - >/dev/null 2>&1
}

python_ok() {  # the interpreter exists and is new enough
    command -v "$PYTHON" >/dev/null 2>&1 &&
        "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null
}

python_has_headers() {
    "$PYTHON" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null
}

missing_packages() {
    local pkgs=()
    command -v "${CC:-cc}" >/dev/null 2>&1 && command -v make >/dev/null 2>&1 || pkgs+=(build-essential)
    have_header liburing.h || pkgs+=(liburing-dev)
    have_header openssl/ssl.h || pkgs+=(libssl-dev)
    command -v "$PYTHON" >/dev/null 2>&1 || pkgs+=(python3)
    python_has_headers || pkgs+=(python3-dev)
    "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1 || pkgs+=(python3-venv)
    echo "${pkgs[@]}"
}

# ---- 1. system packages
read -r -a missing <<<"$(missing_packages)"
if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 ||
        die "missing ${missing[*]} and no apt-get here: install them with your package manager"
    log "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    read -r -a still <<<"$(missing_packages)"
    if [ "${#still[@]}" -gt 0 ]; then
        die "still missing after apt-get: ${still[*]} (is $PYTHON the system python? set PYTHON=/usr/bin/python3)"
    fi
fi
python_ok || die "$PYTHON is missing or older than 3.10 ($("$PYTHON" -V 2>&1 || true))"

# ---- 2. virtualenv
if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "$VENV is broken (its interpreter does not run): recreating it"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $("$PYTHON" -V 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi

# ---- 3. ringserve (editable) and the test dependencies; rebuilt when build inputs change
inputs_hash() {
    {
        "$VENV/bin/python" -V 2>&1
        cat pyproject.toml setup.py 2>/dev/null || true
        cat ringserve/core/ring.c ringserve/core/ring.h ringserve/core/_build.py \
            ringserve/core/tls.c ringserve/core/tls.h ringserve/core/_build_tls.py 2>/dev/null || true
    } | sha256sum | cut -d' ' -f1
}
built_core_imports() {
    [ ! -f ringserve/core/_build.py ] || "$VENV/bin/python" -c 'import ringserve.core._ring, ringserve.core._tls' >/dev/null 2>&1
}
want=$(inputs_hash)
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ] || ! built_core_imports; then
    log "pip install -e '.[test]' (builds the io_uring core)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'
    built_core_imports || die "the io_uring core was built but 'import ringserve.core._ring, ringserve.core._tls' fails"
    echo "$want" >"$STAMP"
fi
