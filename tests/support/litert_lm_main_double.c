/* TEST DOUBLE of LiteRT-LM's litert_lm_main --benchmark, for the phone tests only: it runs no
   model. It checks its flags and model file, then prints BenchmarkInfo in the format LiteRT-LM's
   engine prints it (tests/unit/run/test_runtime_stats.py captures the real engine's), with the token
   counts it was asked for and fixed durations. */
#include <stdio.h>
#include <string.h>
int main(int argc, char ** argv) {
    int prefill = -1, decode = -1, threads = 0, benchmark = 0;
    const char * model = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--benchmark")) benchmark = 1;
        else if (!strncmp(argv[i], "--model_path=", 13)) model = argv[i] + 13;
        sscanf(argv[i], "--benchmark_prefill_tokens=%d", &prefill);
        sscanf(argv[i], "--benchmark_decode_tokens=%d", &decode);
        sscanf(argv[i], "--num_cpu_threads=%d", &threads);
    }
    if (!benchmark || !model || prefill < 1 || decode < 1 || threads < 1) {
        fprintf(stderr, "usage: litert_lm_main --model_path=M --benchmark --benchmark_prefill_tokens=N "
                        "--benchmark_decode_tokens=N --num_cpu_threads=N\n");
        return 2;
    }
    FILE * f = fopen(model, "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", model); return 1; }
    fclose(f);
    const char * rule = "--------------------------------------------------";
    printf("BenchmarkInfo:\n  Init Phases (1):\n    - Init Total: 1768.86 ms\n%s\n  Time to first token: 1.02 s\n%s\n", rule, rule);
    printf("  Prefill Turns (Total 1 turns):\n    Prefill Turn 1: Processed %d tokens in 744.551869ms duration.\n"
           "      Prefill Speed: %.2f tokens/sec.\n%s\n", prefill, prefill / 0.744551869, rule);
    printf("  Decode Turns (Total 1 turns):\n    Decode Turn 1: Processed %d tokens in 2.220158268s duration.\n"
           "      Decode Speed: %.2f tokens/sec.\n%s\n", decode, decode / 2.220158268, rule);
    return 0;
}
