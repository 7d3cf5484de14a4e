# Sourced by setup.sh (the llama-cpp-python wheel) and build-llama-bench.sh (llama-bench from
# the same vendored source), so both are built with the same flags. Sets llama_version,
# cmake_args and flags_key.
# Never -march=native (its AMX path segfaults on these CPUs); enable exactly the SIMD sets
# this CPU has, so the build neither crashes nor dies with SIGILL.
llama_version=0.3.36
cpu_flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { [[ " $cpu_flags " == *" $1 "* ]] && echo ON || echo OFF; }
cmake_args="-DGGML_NATIVE=OFF -DGGML_AVX2=$(has avx2) -DGGML_FMA=$(has fma) -DGGML_F16C=$(has f16c) -DGGML_AVX512=$(has avx512f)"
flags_key=$(printf '%s %s' "$llama_version" "$cmake_args" | sha256sum | cut -c1-12)
