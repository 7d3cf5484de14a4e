#!/usr/bin/env bash
# Does the aarch64 device runner's llama.cpp pick the x86 host's greedy tokens, and where not,
# why? Builds greedy_logits.cpp twice, against the host's llama-cpp-python libraries and
# against the static aarch64 libraries scripts/build-device-runner.sh built (its cached CMake
# folder), runs both on the default GGUF (aarch64 under qemu-user: ~1.5 min for 6 steps), and
# prints each step's top two side by side and how far the first step's logits differ.
# Needs: the device runner built once, g++-aarch64-linux-gnu, qemu-user-static with binfmt.
# Usage: bash benchmarks/isa_logits/compare.sh [PROMPT] [STEPS] [THREADS]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
python=${EDGEBENCH_PYTHON:-$root/.venv/bin/python}
prompt=${1:-"The pump at the north well stopped twice this morning, so the technician replaced the"}
steps=${2:-6}; threads=${3:-2}
runner=$(bash "$root/scripts/build-device-runner.sh" --print-path)
flags=$(basename "$(dirname "$runner")" | cut -d- -f3)  # device-runner-FLAGS-SOURCE
build=$(dirname "$(dirname "$runner")")/device-runner-build-$flags
src=$(echo "$build"/llama_cpp_python-*/vendor/llama.cpp); libs="$build/build/llama.cpp"
hostlib=$("$python" -c "import llama_cpp, pathlib; print(pathlib.Path(llama_cpp.__file__).parent / 'lib')")
gguf=$("$python" -c "from bench.data import models; print(models.get_model(models.default_model_id()).source_path())")
out=$(mktemp -d)
g++ -O2 -std=c++17 -I"$src/include" -I"$src/ggml/include" "$root/benchmarks/isa_logits/greedy_logits.cpp" \
  -o "$out/x86" -L"$hostlib" -lllama -lggml -lggml-base -Wl,-rpath,"$hostlib"
aarch64-linux-gnu-g++ -O2 -std=c++17 -static -I"$src/include" -I"$src/ggml/include" \
  "$root/benchmarks/isa_logits/greedy_logits.cpp" -o "$out/arm" "$libs/src/libllama.a" "$libs/ggml/src/libggml.a" \
  "$libs/ggml/src/libggml-cpu.a" "$libs/ggml/src/libggml-base.a" -lpthread 2>/dev/null
DUMP="$out/x86.bin" "$out/x86" "$gguf" "$prompt" "$steps" "$threads" > "$out/x86.txt"
DUMP="$out/arm.bin" "$out/arm" "$gguf" "$prompt" "$steps" "$threads" > "$out/arm.txt"
echo "step | x86: top id logit, runner-up id logit | aarch64: the same"
paste -d'|' "$out/x86.txt" "$out/arm.txt" | awk -F'|' '{split($1,a," "); split($2,b," ");
  printf "%s | %s %.3f, %s %.3f (margin %.3f) | %s %.3f, %s %.3f (margin %.3f)\n", a[1], a[2], a[3], a[4], a[5], a[3]-a[5], b[2], b[3], b[4], b[5], b[3]-b[5]}'
"$python" -c "
import numpy as np
a, b = (np.fromfile('$out/' + n, dtype=np.float32) for n in ('x86.bin', 'arm.bin'))
d = np.abs(a - b)
print(f'first step, {a.size} logits: mean |x86 - aarch64| {d.mean():.4f}, max {d.max():.4f}, {(a == b).sum()} equal')"
