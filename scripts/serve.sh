#!/usr/bin/env bash
# Install what is missing, then serve an example app with ringserve on http://127.0.0.1:8000.
#
#   ./scripts/serve.sh                   examples/fastapi_app if it is there, else tests/apps/hello.py
#   APP=mymod:app ./scripts/serve.sh     any app importable from the repository root
#   ./scripts/serve.sh --port 9000       extra arguments go to ringserve
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/install.sh

EXAMPLE=examples/fastapi_app
if [ -z "${APP:-}" ] && [ -f "$EXAMPLE/app.py" ]; then
    if [ -f "$EXAMPLE/requirements.txt" ]; then
        .venv/bin/python -m pip install -q --disable-pip-version-check -r "$EXAMPLE/requirements.txt"
    fi
    export PYTHONPATH="$PWD/$EXAMPLE${PYTHONPATH:+:$PYTHONPATH}"
    APP=app:app
fi
APP=${APP:-tests.apps.hello:app}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec .venv/bin/python -m ringserve "$APP" --host 127.0.0.1 --port 8000 "$@"
