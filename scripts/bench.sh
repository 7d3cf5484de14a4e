#!/usr/bin/env bash
# The main job: set up, prepare each runtime's artifact of the default model (cached: a
# second run exports nothing), then benchmark it on every runtime that works here.
# Extra arguments go to `edgebench run` (e.g. --profile quick).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
cd "$root"
# A runtime whose export fails is reported and left out; the run goes on with the others.
"$root/.venv/bin/edgebench" prepare || echo "[bench] some exports failed (see above); running the runtimes that are ready" >&2
exec "$root/.venv/bin/edgebench" run "$@"
