#!/usr/bin/env bash
# Build llama-bench from the llama.cpp that llama-cpp-python vendors, with the same CMake
# flags as set-up's wheel, so `edgebench selfcheck` can compare the runner with llama.cpp's
# own benchmark like for like. Optional (not part of set-up or CI); ~5-8 min on 2 cores once,
# instant after that. Prints the binary's path; with --print-path, only prints where it
# goes, building nothing (bench/run/llama_bench.py asks it, so the path is computed here only).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${EDGEBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgebench}
source "$root/scripts/llama-cmake-flags.sh"
out="$cache/llama-bench-$flags_key"
log() { printf '[llama-bench] %s\n' "$*" >&2; }

if [ "${1:-}" = "--print-path" ]; then echo "$out/llama-bench"; exit 0; fi
if [ -x "$out/llama-bench" ]; then echo "$out/llama-bench"; exit 0; fi

python=${EDGEBENCH_PYTHON:-$root/.venv/bin/python}
[ -x "$python" ] || python=python3
sdists="$cache/sdists"
sdist="$sdists/llama_cpp_python-$llama_version.tar.gz"
if [ ! -f "$sdist" ]; then
  log "downloading the llama-cpp-python $llama_version source"
  "$python" -m pip download --disable-pip-version-check -q --no-binary :all: --no-deps \
    -d "$sdists" "llama-cpp-python==$llama_version"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/llama-bench-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar xzf "$sdist" -C "$work"
src="$work/llama_cpp_python-$llama_version/vendor/llama.cpp"
log "building llama-bench ($cmake_args); takes ~5-8 min once"
# Static libraries: the cached binary must not depend on the deleted build folder.
cmake -S "$src" -B "$work/build" $cmake_args -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF \
  -DCMAKE_BUILD_TYPE=Release >"$work/configure.log" 2>&1 || { tail -20 "$work/configure.log" >&2; exit 1; }
cmake --build "$work/build" --target llama-bench -j "$(nproc)" >"$work/build.log" 2>&1 \
  || { tail -20 "$work/build.log" >&2; exit 1; }
mkdir -p "$out.partial"
cp "$work/build/bin/llama-bench" "$out.partial/"
rm -rf "$out" && mv "$out.partial" "$out"
echo "$out/llama-bench"
