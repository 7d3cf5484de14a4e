# Sourced by setup.sh (the llama-cpp-python wheel) and build-llama-bench.sh (llama-bench from
# the same vendored source), so both are built with the same flags. Sets llama_version,
# cmake_args and flags_key (which keys the cached wheel: a wheel built for one CPU is never
# reused on another).
llama_version=0.3.36
case "$(uname -m)" in
  aarch64|arm64)
    # Arm (Raspberry Pi 5, Jetson, Apple silicon): build for this core. GGML_NATIVE's -mcpu=native
    # is safe here (the -march=native crash below is x86's AMX path), and llama.cpp then probes
    # dotprod, fp16, i8mm and SVE itself; the Features line (asimddp, fphp, i8mm, sve…) keys the wheel.
    cpu_features=$(grep -m1 '^Features' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | xargs || true)
    cmake_args="-DGGML_NATIVE=ON"
    flags_key=$(printf '%s %s %s' "$llama_version" "$cmake_args" "${cpu_features:-$(uname -sm)}" | sha256sum | cut -c1-12)
    ;;
  *)
    # x86: never -march=native (its AMX path segfaults on these CPUs); enable exactly the SIMD
    # sets this CPU has, so the build neither crashes nor dies with SIGILL.
    cpu_flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
    has() { [[ " $cpu_flags " == *" $1 "* ]] && echo ON || echo OFF; }
    cmake_args="-DGGML_NATIVE=OFF -DGGML_AVX2=$(has avx2) -DGGML_FMA=$(has fma) -DGGML_F16C=$(has f16c) -DGGML_AVX512=$(has avx512f)"
    flags_key=$(printf '%s %s' "$llama_version" "$cmake_args" | sha256sum | cut -c1-12)
    ;;
esac
