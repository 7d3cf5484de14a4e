#!/usr/bin/env bash
# The main job: set up, then benchmark the default model on every runtime that works here.
# Extra arguments go to `edgebench run` (e.g. --profile quick).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
cd "$root"
exec "$root/.venv/bin/edgebench" run "$@"
