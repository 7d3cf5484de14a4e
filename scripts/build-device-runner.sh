#!/usr/bin/env bash
# Cross-build runners/device/llama_device_runner (llama.cpp's device runner for phones) as a
# static aarch64 binary, from the llama.cpp that llama-cpp-python vendors (the version
# scripts/llama-cmake-flags.sh pins), with Debian's aarch64 cross compiler and a static libc:
# no NDK, nothing on the phone but the binary. Cached under the edgebench cache by runner
# source and flags (~6 min on 2 idle cores once, ~25 under load; instant after); the CMake
# build folder is kept per flags, so a changed runner source rebuilds only the runner.
# Needs: apt-get install g++-aarch64-linux-gnu cmake ninja-build. Prints the binary's path;
# with --print-path only prints where it goes, building nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${EDGEBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgebench}
source "$root/scripts/llama-cmake-flags.sh"
log() { printf '[device-runner] %s\n' "$*" >&2; }
# Armv8.2-A with dot products: every phone SoC since 2018 (Snapdragon 845, Exynos 9810).
device_args="-DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
-DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ \
-DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod -DGGML_OPENMP=OFF -DBUILD_SHARED_LIBS=OFF \
-DCMAKE_EXE_LINKER_FLAGS=-static -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_COMMON=OFF \
-DCMAKE_BUILD_TYPE=Release"
flags_key=$(printf '%s %s' "$llama_version" "$device_args" | sha256sum | cut -c1-12)
source_key=$(cat "$root/runners/device/llama_device_runner.cpp" "$root/runners/device/CMakeLists.txt" | sha256sum | cut -c1-12)
out="$cache/device-runner-$flags_key-$source_key"

if [ "${1:-}" = "--print-path" ]; then echo "$out/llama_device_runner"; exit 0; fi
if [ -x "$out/llama_device_runner" ]; then echo "$out/llama_device_runner"; exit 0; fi
command -v aarch64-linux-gnu-g++ >/dev/null || { log "needs Debian's aarch64 cross compiler: apt-get install g++-aarch64-linux-gnu"; exit 1; }

python=${EDGEBENCH_PYTHON:-$root/.venv/bin/python}
[ -x "$python" ] || python=python3
sdist="$cache/sdists/llama_cpp_python-$llama_version.tar.gz"
if [ ! -f "$sdist" ]; then
  log "downloading the llama-cpp-python $llama_version source"
  "$python" -m pip download --disable-pip-version-check -q --no-binary :all: --no-deps \
    -d "$cache/sdists" "llama-cpp-python==$llama_version"
fi
work="$cache/device-runner-build-$flags_key"
src="$work/llama_cpp_python-$llama_version/vendor/llama.cpp"
[ -d "$src" ] || { mkdir -p "$work" && tar xzf "$sdist" -C "$work"; }
generator=$(command -v ninja >/dev/null && echo "-G Ninja" || true)
log "building the aarch64 device runner; takes ~6-25 min once"
cmake -S "$root/runners/device" -B "$work/build" $generator $device_args -DLLAMA_SRC="$src" \
  -DEDGEBENCH_LLAMA_VERSION="$llama_version" >"$work/configure.log" 2>&1 \
  || { tail -20 "$work/configure.log" >&2; exit 1; }
cmake --build "$work/build" --target llama_device_runner -j "$(nproc)" >"$work/build.log" 2>&1 \
  || { tail -20 "$work/build.log" >&2; exit 1; }
mkdir -p "$out.partial"
aarch64-linux-gnu-strip -o "$out.partial/llama_device_runner" "$work/build/llama_device_runner"
rm -rf "$out" && mv "$out.partial" "$out"
for older in "$cache/device-runner-$flags_key"-*; do  # builds of earlier runner sources
  [ "$older" = "$out" ] || [ "$older" = "$out.partial" ] || rm -rf "$older"
done
echo "$out/llama_device_runner"
