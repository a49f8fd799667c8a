#!/usr/bin/env bash
# Install what is missing (liburing-dev included), build, run the whole test suite.
#
#   ./scripts/test.sh                       everything, against ringserve and uvicorn (the oracle)
#   ./scripts/test.sh --server=ringserve    integration tests against ringserve only
#   ./scripts/test.sh -k pipelin -x         any other pytest arguments
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/install.sh
exec .venv/bin/python -m pytest "$@"
