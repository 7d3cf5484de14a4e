#!/usr/bin/env bash
# Set up, check lint and format (ruff), then run the test suite. Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
cd "$root"
# Lint and format first: a style slip fails in seconds, not after the suite.
"$root/.venv/bin/ruff" check --no-cache .
"$root/.venv/bin/ruff" format --check --no-cache .
exec "$root/.venv/bin/python" -m pytest -q "$@"
