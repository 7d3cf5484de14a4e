"""LiteRT-LM's own benchmark statistics, printed as `litert_lm_main --benchmark` prints them.

The litert-lm wheel for Linux ships the engine (liblitert-lm.so) but not the litert_lm_main
binary. The engine's C API runs a benchmark session (what the wheel's Benchmark class does),
and its own `operator<<(std::ostream&, const BenchmarkInfo&)` (the function litert_lm_main
uses) writes the statistics to the engine's std::cout: that text is the tool's real output
format, made by the tool's code, not a copy of it.

    python -m tests.support.litert_lm_stats MODEL.litertlm PREFILL_TOKENS DECODE_TOKENS [CACHE_DIR]
"""

from __future__ import annotations

import ctypes
import sys

PRINT_BENCHMARK_INFO = "_ZN6litert2lmlsERNSt3__u13basic_ostreamIcNS1_11char_traitsIcEEEERKNS0_13BenchmarkInfoE"
STD_COUT, FLUSH = "_ZNSt3__u4coutE", "_ZNSt3__u13basic_ostreamIcNS_11char_traitsIcEEE5flushEv"


def main() -> None:
    from litert_lm._ffi import InputDataType, _get_lib

    model, prefill, decode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    lib = _get_lib()
    raw = ctypes.CDLL(lib._name)
    settings = lib.litert_lm_engine_settings_create(model, "cpu", None, None)
    lib.litert_lm_engine_settings_enable_benchmark(settings)
    lib.litert_lm_engine_settings_set_num_threads(settings, 2)
    lib.litert_lm_engine_settings_set_num_prefill_tokens(settings, prefill)
    lib.litert_lm_engine_settings_set_num_decode_tokens(settings, decode)
    if len(sys.argv) > 4:
        lib.litert_lm_engine_settings_set_cache_dir(settings, sys.argv[4])
    engine = lib.litert_lm_engine_create(settings)
    session = lib.litert_lm_engine_create_session(engine, None)
    prompt = b"How are you"
    given = lib.litert_lm_input_data_create(InputDataType.TEXT, prompt, len(prompt))
    lib.litert_lm_session_generate_content(session, (ctypes.c_void_p * 1)(given), 1)
    info = lib.litert_lm_session_get_benchmark_info(session)
    show, flush = raw[PRINT_BENCHMARK_INFO], raw[FLUSH]
    show.argtypes, flush.argtypes = [ctypes.c_void_p, ctypes.c_void_p], [ctypes.c_void_p]
    cout = ctypes.addressof(ctypes.c_void_p.in_dll(raw, STD_COUT))
    show(cout, info)
    flush(cout)


if __name__ == "__main__":
    main()
