"""The LiteRT runners: one litert-torch conversion, run raw (`litert`) and through LiteRT-LM
(`litert-lm`). The tiny random model goes through the real converter and both runtimes;
the default model's fp32 conversion checks that both runners produce the same text."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from tests.conftest import edgebench, read_jsonl

pytest.importorskip("ai_edge_litert")
pytest.importorskip("litert_lm")
pytest.importorskip("litert_torch")

from runners.base import GenerationRequest, RunnerOptions  # noqa: E402
from runners.litert import LiteRTRunner, prefill_chunks  # noqa: E402
from runners.litert_artifact import EXPORTER  # noqa: E402
from runners.litert_export import part_aware_template  # noqa: E402
from runners.litert_lm import LiteRTLMRunner  # noqa: E402

RUNNERS = (LiteRTRunner, LiteRTLMRunner)
CHAT = ({"role": "system", "content": "You answer in one sentence."},
        {"role": "user", "content": "What is the capital of France?"})


def test_prefill_uses_the_smallest_signature_that_holds_the_prompt():
    assert prefill_chunks(20, 0, (32, 128, 512, 1024), 2048) == [(32, 20)]
    assert prefill_chunks(127, 0, (32, 128, 512, 1024), 2048) == [(128, 127)]


def test_a_longer_prompt_is_prefilled_in_chunks_that_end_inside_the_cache():
    assert prefill_chunks(1500, 0, (32, 128, 512, 1024), 2048) == [(1024, 1024), (512, 476)]
    assert prefill_chunks(40, 900, (32, 128), 1060) == [(128, 40)]
    assert prefill_chunks(40, 990, (32, 128), 1060) == [(32, 32), (32, 8)]  # 128 would overrun the cache
    with pytest.raises(ValueError, match="KV cache"):
        prefill_chunks(40, 1000, (32, 128), 1050)  # the last 32-token chunk would end past slot 1050


def test_the_part_aware_template_renders_like_the_original(default_checkpoint):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    stock = (default_checkpoint / "chat_template.jinja").read_text()
    rewritten = part_aware_template(stock, "<|im_start|>")
    for messages in (list(CHAT), list(CHAT[1:])):
        expected = env.from_string(stock).render(messages=messages, bos_token="<|im_start|>", add_generation_prompt=True)
        assert env.from_string(rewritten).render(messages=messages, bos_token="<|im_start|>",
                                                 add_generation_prompt=True) == expected
        # LiteRT-LM's way: content as parts, bos_token empty, the start token added as an id.
        parts = [{**m, "content": [{"type": "text", "text": m["content"]}]} for m in messages]
        as_litert_lm = env.from_string(rewritten).render(messages=parts, bos_token="", add_generation_prompt=True)
        assert "<|im_start|>" + as_litert_lm == expected


def test_both_runners_share_one_exporter_and_one_cache_folder():
    from bench.prepare import artifact_stage

    assert LiteRTRunner.exporter is LiteRTLMRunner.exporter is EXPORTER
    assert artifact_stage("litert", EXPORTER) == artifact_stage("litert-lm", EXPORTER) == "litert"


@pytest.fixture(scope="session")
def tiny_litert(tiny_checkpoint, artifact_cache) -> dict[str, Path]:
    """The tiny model converted by the real converter, fp32 and int8, through prepare."""
    from bench import models, prepare

    model = models.get_model(str(tiny_checkpoint))
    return {q: prepare.prepare_artifact(model, "litert", EXPORTER, q, artifact_cache).path for q in ("fp32", "int8")}


def test_the_artifact_holds_both_models_the_tokenizer_and_a_template(tiny_litert):
    for folder in tiny_litert.values():
        assert {"model.tflite", "model.litertlm", "tokenizer.json", "chat_template.jinja", "litert.json"} <= \
            {p.name for p in folder.iterdir()}
        meta = json.loads((folder / "litert.json").read_text())
        assert meta["cache_length"] >= 1024 and max(meta["prefill_lengths"]) >= 1024
        assert meta["start_token_ids"] == [1] and meta["stop_token_ids"] == [2]
    assert (tiny_litert["int8"] / "model.tflite").stat().st_size < (tiny_litert["fp32"] / "model.tflite").stat().st_size


def _generate(cls, artifact: Path, requests) -> list[tuple[list[int], int, str]]:
    runner = cls()
    runner.load(artifact, RunnerOptions(threads=2, context_tokens=2048))
    try:
        results = []
        for request in requests:
            events = list(runner.generate(request))
            info = runner.generation_info()
            results.append(([e.token_id for e in events], info.prompt_tokens, info.stop_reason))
        return results
    finally:
        runner.close()


@pytest.mark.parametrize("quant", ["fp32", "int8"])
def test_fixed_length_mode_gives_exactly_n_tokens_on_both_runners(tiny_litert, quant):
    tokenizer = Tokenizer.from_file(str(tiny_litert[quant] / "tokenizer.json"))
    fill = tuple(tokenizer.encode("The pump at the north well stopped twice. " * 40, add_special_tokens=False).ids[:300])
    requests = [GenerationRequest(24, token_ids=fill, ignore_eos=True), GenerationRequest(5, text="Hello", ignore_eos=True)]
    raw, lm = (_generate(cls, tiny_litert[quant], requests) for cls in RUNNERS)
    for (ids, prompt_tokens, stop), request in zip(raw + lm, requests * 2):
        assert len(ids) == request.max_new_tokens and stop == "length"
    assert [r[1] for r in raw] == [r[1] for r in lm] == [300, 2]


def test_both_runners_agree_on_prompt_tokens_and_greedy_tokens_of_fp32(tiny_litert):
    requests = [GenerationRequest(12, messages=CHAT), GenerationRequest(12, messages=CHAT[1:]),
                GenerationRequest(12, text="The capital of France is")]
    raw, lm = (_generate(cls, tiny_litert["fp32"], requests) for cls in RUNNERS)
    assert raw == lm


def test_run_time_imports_neither_torch_nor_tensorflow(tiny_litert):
    code = ("import sys; from pathlib import Path\n"
            "from runners.base import GenerationRequest, RunnerOptions\n"
            "from runners.litert import LiteRTRunner\nfrom runners.litert_lm import LiteRTLMRunner\n"
            "for cls in (LiteRTRunner, LiteRTLMRunner):\n"
            "    r = cls(); r.load(Path(sys.argv[1]), RunnerOptions(threads=1, context_tokens=256))\n"
            "    list(r.generate(GenerationRequest(3, text='Hi'))); r.close()\n"
            "print(sorted(m for m in ('torch', 'tensorflow', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(tiny_litert["int8"])], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_one_prepare_serves_both_runners_in_a_run(tiny_checkpoint, tiny_litert, artifact_cache, tmp_path):
    done = edgebench("run", "--model", str(tiny_checkpoint), "--runner", "litert", "--runner", "litert-lm",
                     "--quant", "litert=int8", "--quant", "litert-lm=int8", "--profile", "quick",
                     "--threads", "2", "--cache", str(artifact_cache), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    records = [r for r in read_jsonl(next(tmp_path.glob("*.jsonl"))) if not r["warmup"]]
    assert {r["status"] for r in records} == {"ok"}
    by_runner = {name: {(r["prompt_id"], r["repeat"]): r for r in records if r["runner"] == name}
                 for name in ("litert", "litert-lm")}
    assert by_runner["litert"].keys() == by_runner["litert-lm"].keys()
    assert {r["artifact_path"] for r in records} == {str(tiny_litert["int8"])}
    for key, raw in by_runner["litert"].items():
        lm = by_runner["litert-lm"][key]
        assert raw["prompt_tokens"] == lm["prompt_tokens"], key
        assert raw["output_token_ids"] == lm["output_token_ids"], key
        if raw["kind"] == "fixed":
            assert raw["new_tokens"] == lm["new_tokens"] == raw["max_new_tokens"]
    assert all(r["native"]["decode_tokens"] >= r["new_tokens"] for r in by_runner["litert-lm"].values())


@pytest.mark.real
def test_default_model_fp32_both_runners_write_the_same_answer(artifact_cache):
    from bench import models, prepare

    artifact = prepare.prepare_artifact(models.get_model("smollm2-135m"), "litert", EXPORTER, "fp32",
                                        artifact_cache).path
    requests = [GenerationRequest(48, messages=CHAT), GenerationRequest(24, text="The capital of France is")]
    raw, lm = (_generate(cls, artifact, requests) for cls in RUNNERS)
    assert raw == lm
    assert raw[0][2] == "eos"  # the chat answer ends at the model's end of turn
