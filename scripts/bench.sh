#!/usr/bin/env bash
# The main job: set up, then benchmark the default model on every runtime that works here.
# `run --prepare` takes the runtime that needs no export (llama.cpp) first, then exports
# each other runtime's artifact just before its turn, cheapest first (cached: a second run
# exports nothing), so results appear early and no export runs while a runtime is measured.
# A runtime whose export fails is reported and left out; the run goes on with the others.
# Extra arguments go to `edgebench run` (e.g. --profile quick, --no-budget).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
cd "$root"
exec "$root/.venv/bin/edgebench" run --prepare "$@"
