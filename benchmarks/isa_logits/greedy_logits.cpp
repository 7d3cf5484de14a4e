// Greedy decode against one build of llama.cpp, printing per step: step, top id, its logit,
// runner-up id, its logit, the sum of all logits; $DUMP=FILE writes the first step's logits
// (float32) there, $NOREPACK=1 turns weight repacking off. The same source built against the
// host's llama-cpp-python libraries (x86) and the device runner's static aarch64 ones shows
// where the ISAs' arithmetic parts their greedy tokens (benchmarks/isa_logits/compare.sh).
// Usage: greedy_logits MODEL.gguf PROMPT STEPS THREADS [N_UBATCH]
#include "llama.h"
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include <algorithm>
static void quiet(ggml_log_level, const char *, void *) {}
int main(int argc, char ** argv) {
    const char * path = argv[1]; std::string text = argv[2]; int n = atoi(argv[3]); int threads = atoi(argv[4]);
    int ubatch = argc > 5 ? atoi(argv[5]) : 512;
    llama_log_set(quiet, nullptr);
    llama_backend_init();
    auto mp = llama_model_default_params(); if (getenv("NOREPACK")) mp.use_extra_bufts = false;
    llama_model * model = llama_model_load_from_file(path, mp);
    auto cp = llama_context_default_params();
    cp.n_ctx = 256; cp.n_threads = threads; cp.n_threads_batch = threads; cp.n_ubatch = ubatch; cp.n_batch = 2048;
    llama_context * ctx = llama_init_from_model(model, cp);
    const llama_vocab * vocab = llama_model_get_vocab(model);
    int nv = llama_vocab_n_tokens(vocab);
    std::vector<llama_token> ids(512);
    int np = llama_tokenize(vocab, text.data(), text.size(), ids.data(), ids.size(), true, false);
    ids.resize(np);
    llama_decode(ctx, llama_batch_get_one(ids.data(), np));
    for (int i = 0; i < n; i++) {
        float * l = llama_get_logits_ith(ctx, -1);
        int a = 0, b = -1;
        for (int t = 1; t < nv; t++) if (l[t] > l[a]) a = t;
        for (int t = 0; t < nv; t++) if (t != a && (b < 0 || l[t] > l[b])) b = t;
        double sum = 0; for (int t = 0; t < nv; t++) sum += l[t];
        printf("%d %d %.6f %d %.6f %.6f\n", i, a, l[a], b, l[b], sum);
        if (i == 0 && getenv("DUMP")) { FILE * f = fopen(getenv("DUMP"), "wb"); fwrite(l, sizeof(float), nv, f); fclose(f); }
        llama_token tok = a;
        llama_decode(ctx, llama_batch_get_one(&tok, 1));
    }
    return 0;
}
