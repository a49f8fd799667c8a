#!/usr/bin/env bash
# Install what is missing, then serve an example app with ringserve on http://127.0.0.1:8000.
#
#   ./scripts/serve.sh                   examples/fastapi_app (SQLite under examples/fastapi_app/data/)
#   EXAMPLE=examples/django_app ./scripts/serve.sh      the Django example (its WSGI handler)
#   APP=mymod:app ./scripts/serve.sh     any app importable from the repository root
#   ./scripts/serve.sh --port 9000       extra arguments go to ringserve (--workers 4, --interface ...)
#
# An example's requirements (examples/*/requirements.txt, the same as `pip install -e '.[examples]'`)
# are installed the first time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/install.sh

EXAMPLE=${EXAMPLE:-examples/fastapi_app}
if [ -z "${APP:-}" ] && [ -d "$EXAMPLE" ]; then
    if [ -f "$EXAMPLE/app.py" ]; then
        APP=app:app
        CHECK="import fastapi, python_multipart, aiosqlite"
    elif [ -f "$EXAMPLE/mysite/wsgi.py" ]; then
        APP=mysite.wsgi:application
        CHECK="import django, whitenoise"
    fi
    if [ -n "${APP:-}" ] && [ -f "$EXAMPLE/requirements.txt" ] && ! .venv/bin/python -c "$CHECK" 2>/dev/null; then
        .venv/bin/python -m pip install -q --disable-pip-version-check -r "$EXAMPLE/requirements.txt"
    fi
    export PYTHONPATH="$PWD/$EXAMPLE${PYTHONPATH:+:$PYTHONPATH}"
fi
APP=${APP:-tests.apps.hello:app}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec .venv/bin/python -m ringserve "$APP" --host 127.0.0.1 --port 8000 "$@"
