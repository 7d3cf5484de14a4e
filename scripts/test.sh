#!/usr/bin/env bash
# Set up, check lint and format (ruff), then run the test suite. Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
cd "$root"
# Lint and format first: a style slip fails in seconds, not after the suite.
"$root/.venv/bin/ruff" check --no-cache .
"$root/.venv/bin/ruff" format --check --no-cache .
# The phone tests run the aarch64 device runner, skipped until it is built (~6-25 min once,
# cached in ~/.cache/edgebench after): EDGEBENCH_BUILD_DEVICE_RUNNER=1 builds it first.
if [ "${EDGEBENCH_BUILD_DEVICE_RUNNER:-}" = 1 ]; then bash "$root/scripts/build-device-runner.sh" >/dev/null; fi
exec "$root/.venv/bin/python" -m pytest -q "$@"
