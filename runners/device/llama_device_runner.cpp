// llama_device_runner: llama.cpp on a device that has no Python (a phone), with the
// harness's clock on the device. Built statically from the llama.cpp that llama-cpp-python
// vendors (scripts/build-device-runner.sh); driven by runners/device_llamacpp.py over adb.
//
// stdin, one JSON object a line: first the load orders the Python worker takes
// ({"artifact", "options": {"threads", "context_tokens", "settings"}}), then requests: a
// generation as runners.base.GenerationRequest has it (chat messages rendered by the host
// through the GGUF's own Jinja template, as the host runner renders them), or {"tokenize":
// TEXT}. stdout, one JSON object a line: "loaded" (stamps, what the context got, llama.cpp's
// log and system info, the chat template); per generation "start" (t0, taken on receipt,
// before tokenizing), one "token" per token (its stamp, id and bytes), and "end" (stamp,
// counts, llama.cpp's perf counters) or "failed"; per tokenize "tokens". Stamps are
// CLOCK_MONOTONIC ns (steady_clock). The runner only stamps; the host turns the stamps into
// figures with bench.run.harness.

#include "gguf.h"
#include "llama.h"
#include "nlohmann/json.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

using json = nlohmann::json;

static int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

static void emit(const json & message) {
    std::string line = message.dump(-1, ' ', false, json::error_handler_t::replace);
    fwrite(line.data(), 1, line.size(), stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

static std::string hex(const std::string & bytes) {
    static const char * digits = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

// llama.cpp's log of the load (the host reads flash attention's resolution and the K/V
// cache types from it, as runners/llamacpp.py does on the host).
static std::string load_log;

static void collect_log(ggml_log_level, const char * text, void *) { load_log += text; }

static ggml_type type_named(const std::string & name) {
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        const char * n = ggml_type_name((ggml_type) t);
        if (n && name == n) return (ggml_type) t;
    }
    throw std::runtime_error("--setting llama.cpp:type_k/type_v=" + name + ": not a ggml type");
}

static enum llama_flash_attn_type flash_attn_named(const std::string & name) {
    if (name == "auto") return LLAMA_FLASH_ATTN_TYPE_AUTO;
    if (name == "on") return LLAMA_FLASH_ATTN_TYPE_ENABLED;
    if (name == "off") return LLAMA_FLASH_ATTN_TYPE_DISABLED;
    throw std::runtime_error("--setting llama.cpp:flash_attn=" + name + ": use one of auto, on, off");
}

struct Runner {
    llama_model * model = nullptr;
    llama_context * ctx = nullptr;
    const llama_vocab * vocab = nullptr;
    int context_tokens = 0;
    std::vector<llama_logit_bias> eog_bias;

    std::vector<llama_token> tokenize(const std::string & text, bool add_bos, bool special) const {
        int n = -llama_tokenize(vocab, text.data(), (int) text.size(), nullptr, 0, add_bos, special);
        std::vector<llama_token> ids(n);
        if (n && llama_tokenize(vocab, text.data(), (int) text.size(), ids.data(), n, add_bos, special) != n)
            throw std::runtime_error("llama.cpp could not tokenize the prompt");
        return ids;
    }

    std::string piece(llama_token token) const {
        char buf[256];
        int n = llama_token_to_piece(vocab, token, buf, sizeof buf, 0, false);
        if (n < 0) {
            std::string big(-n, '\0');
            llama_token_to_piece(vocab, token, big.data(), -n, 0, false);
            return big;
        }
        return std::string(buf, n);
    }

    void decode(std::vector<llama_token> & ids, size_t from, size_t n) {
        if (llama_decode(ctx, llama_batch_get_one(ids.data() + from, (int32_t) n)) != 0)
            throw std::runtime_error("llama_decode failed");
    }

    // One request as runners.base.GenerationRequest has it: max_new_tokens, ignore_eos and
    // exactly one of chat_text (chat messages the host rendered through the GGUF's own Jinja
    // template, as the host runner does), text (raw completion) or token_ids.
    void generate(const json & request) {
        int64_t t0 = now_ns();
        emit({{"event", "start"}, {"t_ns", t0}});
        int max_new = request["max_new_tokens"];
        bool ignore_eos = request.value("ignore_eos", false);
        std::vector<llama_token> prompt;
        if (!request.value("chat_text", json()).is_null()) prompt = tokenize(request["chat_text"], true, true);
        else if (!request.value("text", json()).is_null()) prompt = tokenize(request["text"], true, false);
        else prompt = request["token_ids"].get<std::vector<llama_token>>();
        if (prompt.empty()) throw std::runtime_error("the prompt tokenizes to nothing");
        if ((int) prompt.size() + max_new > context_tokens)
            throw std::runtime_error("prompt of " + std::to_string(prompt.size()) + " tokens + " +
                                     std::to_string(max_new) + " new exceeds the context of " +
                                     std::to_string(context_tokens));
        llama_sampler * sampler = llama_sampler_chain_init(llama_sampler_chain_default_params());
        if (ignore_eos)
            llama_sampler_chain_add(sampler,
                                    llama_sampler_init_logit_bias(llama_vocab_n_tokens(vocab), (int32_t) eog_bias.size(),
                                                                  eog_bias.data()));
        llama_sampler_chain_add(sampler, llama_sampler_init_greedy());
        // Forget the previous prompt: a cached prefix would fake the TTFT.
        llama_memory_clear(llama_get_memory(ctx), true);
        llama_perf_context_reset(ctx);
        std::string stop = "length";
        int produced = 0;
        try {
            size_t batch = llama_n_batch(ctx);
            for (size_t from = 0; from < prompt.size(); from += batch)
                decode(prompt, from, std::min(batch, prompt.size() - from));
            for (; produced < max_new; produced++) {
                llama_token token = llama_sampler_sample(sampler, ctx, -1);
                if (!ignore_eos && llama_vocab_is_eog(vocab, token)) {
                    stop = "eos";
                    break;
                }
                emit({{"event", "token"}, {"t_ns", now_ns()}, {"id", token}, {"hex", hex(piece(token))}});
                if (produced + 1 < max_new) {
                    std::vector<llama_token> next{token};
                    decode(next, 0, 1);
                }
            }
        } catch (...) {
            llama_sampler_free(sampler);
            throw;
        }
        int64_t t_end = now_ns();
        llama_sampler_free(sampler);
        llama_perf_context_data perf = llama_perf_context(ctx);
        emit({{"event", "end"},
              {"t_ns", t_end},
              {"prompt_tokens", prompt.size()},
              {"new_tokens", produced},
              {"stop", stop},
              {"perf",
               {{"t_p_eval_ms", perf.t_p_eval_ms},
                {"n_p_eval", perf.n_p_eval},
                {"t_eval_ms", perf.t_eval_ms},
                {"n_eval", perf.n_eval}}}});
    }

    std::string token_text(llama_token token) const {
        return token == LLAMA_TOKEN_NULL ? "" : llama_vocab_get_text(vocab, token);
    }

    std::string meta(const std::string & key) const {
        char value[256] = "";
        return llama_model_meta_val_str(model, key.c_str(), value, sizeof value) < 0 ? "" : value;
    }

    // What the host computes the roofline and placement from (runners/llamacpp.py reads the
    // same through llama-cpp-python): the GGUF's tensors and their stored bytes, ggml's
    // backend devices, and the K/V bytes one context token takes in the cache types asked.
    json model_facts(const std::string & path, const llama_context_params & cparams) const {
        json tensors = json::array(), devices = json::array();
        gguf_context * gguf = gguf_init_from_file(path.c_str(), {true, nullptr});
        for (int64_t i = 0; gguf && i < gguf_get_n_tensors(gguf); i++)
            tensors.push_back({gguf_get_tensor_name(gguf, i), gguf_get_tensor_size(gguf, i)});
        if (gguf) gguf_free(gguf);
        for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
            ggml_backend_dev_t dev = ggml_backend_dev_get(i);
            devices.push_back({ggml_backend_dev_name(dev), (int) ggml_backend_dev_type(dev),
                               ggml_backend_dev_description(dev)});
        }
        std::string arch = meta("general.architecture");
        int64_t n_head = llama_model_n_head(model), n_head_kv = llama_model_n_head_kv(model);
        std::string k = meta(arch + ".attention.key_length"), v = meta(arch + ".attention.value_length");
        int64_t head_k = k.empty() ? llama_model_n_embd(model) / n_head : std::stoll(k);
        int64_t head_v = v.empty() ? head_k : std::stoll(v);
        size_t kv = llama_model_n_layer(model) *
                    (ggml_row_size(cparams.type_k, head_k * n_head_kv) + ggml_row_size(cparams.type_v, head_v * n_head_kv));
        return {{"tensors", tensors}, {"devices", devices}, {"kv_bytes_per_token", kv}};
    }

    void load(const json & orders) {
        const json & options = orders["options"];
        const json & settings = options["settings"];
        int threads = options["threads"];
        context_tokens = options["context_tokens"];
        int64_t t_start = now_ns();
        llama_log_set(collect_log, nullptr);
        llama_backend_init();
        llama_model_params mparams = llama_model_default_params();
        // as llama-cpp-python maps use_mmap: the default (auto: mmap on the CPU), or no mmap
        if (!settings.value("use_mmap", true)) mparams.load_mode = LLAMA_LOAD_MODE_NONE;
        mparams.n_gpu_layers = 0;  // a CPU build: every layer stays on the CPU
        model = llama_model_load_from_file(orders["artifact"].get<std::string>().c_str(), mparams);
        if (!model) throw std::runtime_error("llama.cpp could not load " + orders["artifact"].get<std::string>());
        llama_context_params cparams = llama_context_default_params();
        cparams.n_ctx = context_tokens;
        cparams.n_batch = settings.value("n_batch", 2048);
        cparams.n_ubatch = settings.value("n_ubatch", 512);
        cparams.n_threads = threads;
        cparams.n_threads_batch = threads;
        cparams.flash_attn_type = flash_attn_named(settings.value("flash_attn", "auto"));
        cparams.type_k = type_named(settings.value("type_k", "f16"));
        cparams.type_v = type_named(settings.value("type_v", "f16"));
        cparams.no_perf = false;
        ctx = llama_init_from_model(model, cparams);
        if (!ctx) throw std::runtime_error("llama.cpp could not create a context (" + load_log.substr(load_log.size() > 200 ? load_log.size() - 200 : 0) + ")");
        vocab = llama_model_get_vocab(model);
        for (llama_token t = 0; t < llama_vocab_n_tokens(vocab); t++)
            if (llama_vocab_is_eog(vocab, t)) eog_bias.push_back({t, -INFINITY});
        json facts = model_facts(orders["artifact"], cparams);
        const char * tmpl = llama_model_chat_template(model, nullptr);
        char file_type[64] = "";
        llama_model_meta_val_str(model, "general.file_type", file_type, sizeof file_type);
        emit({{"event", "loaded"},
              {"t_start_ns", t_start},
              {"t_ns", now_ns()},
              {"runtime_version", EDGEBENCH_LLAMA_VERSION},
              {"file_type", file_type},
              {"n_vocab", llama_vocab_n_tokens(vocab)},
              {"applied",
               {{"n_threads", llama_n_threads(ctx)},
                {"n_threads_batch", llama_n_threads_batch(ctx)},
                {"n_ctx", llama_n_ctx(ctx)},
                {"n_batch", llama_n_batch(ctx)},
                {"n_ubatch", llama_n_ubatch(ctx)}}},
              {"system_info", llama_print_system_info()},
              {"tensors", facts["tensors"]},
              {"devices", facts["devices"]},
              {"kv_bytes_per_token", facts["kv_bytes_per_token"]},
              {"chat_template", tmpl ? json(tmpl) : json()},
              {"bos_text", token_text(llama_vocab_bos(vocab))},
              {"eos_text", token_text(llama_vocab_eos(vocab))},
              {"log", load_log}});
    }
};

int main() {
    Runner runner;
    std::string line;
    try {
        if (!std::getline(std::cin, line)) return 2;
        runner.load(json::parse(line));
    } catch (const std::exception & e) {
        emit({{"event", "load_failed"}, {"error", e.what()}});
        return 1;
    }
    while (std::getline(std::cin, line)) {
        if (line.empty()) continue;
        try {
            json request = json::parse(line);
            if (request.contains("tokenize"))  // the runtime's tokenization, without special tokens
                emit({{"event", "tokens"}, {"ids", runner.tokenize(request["tokenize"], false, false)}});
            else
                runner.generate(request);
        } catch (const std::exception & e) {
            emit({{"event", "failed"}, {"error", e.what()}});
        }
    }
    emit({{"event", "finished"}});
    llama_free(runner.ctx);
    llama_model_free(runner.model);
    return 0;
}
