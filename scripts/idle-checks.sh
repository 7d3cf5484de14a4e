#!/usr/bin/env bash
# The checks whose verdict needs an idle machine (wall-clock waits, a competing load's onset),
# left out of scripts/test.sh because a CI machine may be busy. Prints their figures; run it
# on a quiet machine after set-up. Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
read -r load _ < /proc/loadavg
echo "load average before the checks: $load (on $(nproc) cores); above ~0.5 the verdicts mean little"
exec "$root/.venv/bin/python" -m pytest -q -s -m idle "$@"
