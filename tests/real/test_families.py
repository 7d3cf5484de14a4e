"""Model families through every runtime that declares them (FAMILY_SUPPORT in each
runners/*_export.py; a runner without an exporter takes a file of its own format).

Each declared cell is proven on a tiny random model of the family (tests/support/tiny_families.py):
prepare -> the fp32 artifact's greedy tokens equal transformers' own for a chat and a
completion prompt, token for token, with the same prompt token count; each declared
quantization exports and decodes exactly the tokens asked. The parametrization is the
declaration itself, so a declared cell that breaks turns the suite red.

CI runs the cheap runtimes (ONNX Runtime, MLX: seconds per export; llama.cpp through
llama.cpp's own convert_hf_to_gguf.py when the llama-cpp-python sdist is cached) and checks the
ExecuTorch checkpoint conversion on ExecuTorch's eager model. LiteRT and ExecuTorch exports take
tens of seconds to minutes each: their cells run with EDGEBENCH_SLOW_FAMILIES=1.
"""

import hashlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from bench.artifacts import families, prepare
from bench.data import models
from bench.paths import cache_home
from runners import load_class, registrations
from tests.support.helpers import edgebench, read_jsonl

CHAT = ({"role": "user", "content": "What is the capital of France?"},)
TEXT = "The pump at the north well stopped twice this morning, so the technician replaced the"
NEW_TOKENS = 12
# Runners whose typical first export takes minutes (LiteRT, ExecuTorch), not seconds.
SLOW_RUNNERS = tuple(n for n, r in registrations().items() if load_class(r.target).export_cost() > 60)
SLOW = os.environ.get("EDGEBENCH_SLOW_FAMILIES") == "1"
SDISTS = cache_home() / "sdists"
# The fp32 comparison runs each runtime in fp32 throughout: llama.cpp by default keeps K/V in
# f16 and its CPU flash attention computes in f16, either of which moves a near-tie of a random
# model's logits within a dozen tokens (seen on the tiny llama: token 11 of the completion).
EXACT_SETTINGS = {"llama.cpp": {"type_k": "f32", "type_v": "f32", "flash_attn": "off"}}
# LiteRT-LM puts the bundle's start token (here BOS) before every prompt, raw text included
# (runners/litert.py _given_ids): its completion is compared with transformers' on BOS + text.
TEXT_AFTER_BOS = ("litert", "litert-lm")
# LiteRT-LM streams text; its runner re-reads each token id from the text (runners/litert_lm.py),
# so a byte-fragment token comes back as another id: its output is compared as text.
IDS_FROM_TEXT = ("litert-lm",)
# Families whose tiny checkpoint llama.cpp's converter cannot turn into a GGUF (the others get a
# tokenizer of the kind the converter reads: tests/support/tiny_families.py TOKENIZERS).
UNCONVERTIBLE = {
    "qwen2": "convert_hf_to_gguf knows a BPE pre-tokenizer by the hash of its tokens for a fixed text, and "
    "transformers loads any qwen2 tokenizer as Qwen2Tokenizer (Qwen's pre-tokenizer): over any vocabulary but "
    "Qwen's own (not downloadable here) the hash is unknown ('BPE pre-tokenizer was not recognized')",
}


def _declared() -> list[tuple[str, str, tuple[str, ...]]]:
    """(family, runner, quantizations) for every cell some runner declares supported."""
    return [
        (family, runner, cell)
        for family in models.FAMILIES
        for runner, cell in families.support_cells(family).items()
        if isinstance(cell, tuple)
    ]


def _param(family: str, runner: str, *rest):
    marks = [
        pytest.mark.skipif(
            runner in SLOW_RUNNERS and not SLOW,
            reason=f"{runner} exports are slow: EDGEBENCH_SLOW_FAMILIES=1 runs them",
        ),
        pytest.mark.skipif(
            runner == "llama.cpp" and family in UNCONVERTIBLE, reason=f"not proven here: {UNCONVERTIBLE.get(family)}"
        ),
    ]
    return pytest.param(family, runner, *rest, marks=marks, id="-".join((family, runner, *rest)))


def _runner_class(runner: str):
    cls = load_class(registrations()[runner].target)
    probe = cls.probe()
    if not probe.available:
        pytest.skip(f"{runner} is not installed: {probe.reason}")
    return cls


GREEDY_CELLS = [
    _param(f, r)
    for f, r, quants in _declared()
    if "fp32" in quants or load_class(registrations()[r].target).exporter is None
]
QUANTIZED_CELLS = [
    _param(f, r, q)
    for f, r, quants in _declared()
    if load_class(registrations()[r].target).exporter is not None
    for q in quants
    if q != "fp32"
]


@pytest.fixture(scope="session")
def family_checkpoint(tmp_path_factory, default_checkpoint):
    """family -> its tiny checkpoint folder (built once per session)."""
    from tests.support.tiny_families import build_family_checkpoint

    built = {}

    def get(family: str) -> Path:
        if family not in built:
            out = tmp_path_factory.mktemp("families") / f"tiny-{family}"
            built[family] = build_family_checkpoint(family, out, default_checkpoint)
        return built[family]

    return get


@pytest.fixture(scope="session")
def reference(family_checkpoint):
    """(family, prompt kind) -> transformers' prompt ids and greedy ids."""
    from tests.support.reference_logits import transformers_greedy

    seen = {}

    def get(family: str, kind: str) -> tuple[list[int], list[int]]:
        if (family, kind) not in seen:
            checkpoint = family_checkpoint(family)
            if kind == "bos+text":
                seen[family, kind] = _greedy_after_bos(checkpoint, TEXT)
            else:
                prompt = {"messages": CHAT} if kind == "chat" else {"text": TEXT}
                seen[family, kind] = transformers_greedy(checkpoint, NEW_TOKENS, **prompt)
        return seen[family, kind]

    return get


def _greedy_after_bos(checkpoint: Path, text: str) -> tuple[list[int], list[int]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer(text)["input_ids"]]])
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS, do_sample=False)
    return ids[0].tolist(), out[0, ids.shape[1] :].tolist()


@pytest.fixture(scope="session")
def gguf_converter(tmp_path_factory) -> Path:
    """llama.cpp's convert_hf_to_gguf.py with its own gguf-py, from the llama-cpp-python sdist
    set-up caches (the same llama.cpp the wheel was built from)."""
    sdists = sorted(SDISTS.glob("llama_cpp_python-*.tar.gz"))
    if not sdists:
        pytest.skip(
            f"not proven here: no HF->GGUF converter (no llama-cpp-python sdist in {SDISTS}; "
            "scripts/build-llama-bench.sh downloads it)"
        )
    out = tmp_path_factory.mktemp("gguf-converter")
    with tarfile.open(sdists[-1]) as tar:
        wanted = [
            m
            for m in tar.getmembers()
            if "/vendor/llama.cpp/" in m.name
            and any(part in m.name for part in ("/convert_hf_to_gguf.py", "/conversion/", "/gguf-py/"))
        ]
        tar.extractall(out, members=wanted, filter="data")
    return next(out.glob("*/vendor/llama.cpp"))


# llama.cpp sets per-token attributes by the GGUF's general.name: a name holding "phi3" (the
# converter takes the folder's, tiny-phi3) makes it look up Phi-3's SentencePiece tokens, which a
# Phi-4-mini-style BPE vocabulary lacks ("unordered_map::at"). Real Phi-4-mini is named
# "Phi 4 Mini Instruct"; the tiny models get a name no family rule matches.
GGUF_OPTIONS = ("--outtype", "f32", "--model-name", "edgebench tiny test model")


def _gguf(checkpoint: Path, converter: Path, cache: Path) -> Path:
    """The checkpoint as an f32 GGUF made by llama.cpp's own converter, cached by content and options."""
    key = hashlib.sha256(f"{models.fingerprint(checkpoint)} {GGUF_OPTIONS}".encode()).hexdigest()
    path = cache / "families-gguf" / f"{key[:16]}.gguf"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(converter / "gguf-py"), "HF_HUB_OFFLINE": "1"}
        done = subprocess.run(
            [
                sys.executable,
                str(converter / "convert_hf_to_gguf.py"),
                str(checkpoint),
                "--outfile",
                f"{path}.partial",
                *GGUF_OPTIONS,
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        Path(f"{path}.partial").rename(path)
    return path


def _artifact(family: str, runner: str, quantization: str, family_checkpoint, artifact_cache, request) -> Path:
    cls = _runner_class(runner)
    checkpoint = family_checkpoint(family)
    if cls.exporter is None:
        return _gguf(checkpoint, request.getfixturevalue("gguf_converter"), artifact_cache)
    model = models.get_model(str(checkpoint))
    return prepare.prepare_artifact(
        model, runner, cls.exporter, quantization, artifact_cache, progress=lambda progress: None
    ).path


def _generate(runner: str, artifact: Path, requests):
    """[(token ids, text, prompt tokens, chunked)] for each request, on one loaded runner."""
    from runners.base import RunnerOptions, TokenEvent

    cls = _runner_class(runner)
    loaded = cls()
    settings = {**cls.defaults, **EXACT_SETTINGS.get(runner, {})}
    loaded.load(artifact, RunnerOptions(threads=2, context_tokens=1024, settings=settings))
    try:
        results = []
        for request in requests:
            events = [e for e in loaded.generate(request) if isinstance(e, TokenEvent)]
            info = loaded.generation_info()
            results.append(
                ([e.token_id for e in events], "".join(e.text for e in events), info.prompt_tokens, info.chunked)
            )
        return results
    finally:
        loaded.close()


@pytest.mark.parametrize("family,runner", GREEDY_CELLS)
def test_fp32_greedy_tokens_equal_transformers(family, runner, family_checkpoint, reference, artifact_cache, request):
    from runners.base import GenerationRequest

    artifact = _artifact(family, runner, "fp32", family_checkpoint, artifact_cache, request)
    # ignore_eos: a random model may pick an end token early, where transformers stops.
    chat, text = _generate(
        runner,
        artifact,
        [
            GenerationRequest(NEW_TOKENS, messages=CHAT, ignore_eos=True),
            GenerationRequest(NEW_TOKENS, text=TEXT, ignore_eos=True),
        ],
    )
    text_kind = "bos+text" if runner in TEXT_AFTER_BOS else "text"
    for kind, (tokens, streamed, prompt_tokens, chunked) in (("chat", chat), (text_kind, text)):
        prompt, expected = reference(family, kind)
        expected = expected if len(expected) == NEW_TOKENS else expected[:-1]  # ended at eos: banned here
        assert prompt_tokens == len(prompt), f"{kind} prompt: {prompt_tokens} tokens, transformers {len(prompt)}"
        if chunked or runner in IDS_FROM_TEXT:  # ids re-read from streamed text: compare the text
            assert streamed.startswith(_decode(family_checkpoint(family), expected)), f"{kind}: {streamed!r}"
        else:
            assert tokens[: len(expected)] == expected, f"{kind}: {runner} {tokens} vs transformers {expected}"


def _decode(checkpoint: Path, ids: list[int]) -> str:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(checkpoint / "tokenizer.json")).decode(ids, skip_special_tokens=False)


@pytest.mark.parametrize("family,runner,quantization", QUANTIZED_CELLS)
def test_each_declared_quantization_exports_and_decodes_the_tokens_asked(
    family, runner, quantization, family_checkpoint, reference, artifact_cache, request
):
    from runners.base import GenerationRequest

    artifact = _artifact(family, runner, quantization, family_checkpoint, artifact_cache, request)
    [(tokens, _, prompt_tokens, chunked)] = _generate(
        runner, artifact, [GenerationRequest(16, messages=CHAT, ignore_eos=True)]
    )
    assert (len(tokens) == 16 or chunked) and prompt_tokens == len(reference(family, "chat")[0])


def _executorch_families() -> list[str]:
    from runners.executorch_export import FAMILY_SUPPORT

    return [family for family, cell in FAMILY_SUPPORT.items() if isinstance(cell, tuple)]


@pytest.mark.parametrize("family", _executorch_families())
def test_the_executorch_conversion_computes_transformers_logits(family, family_checkpoint):
    """In seconds, for CI (the export cells are slow): ExecuTorch's llama definition, built from
    the converted Meta checkpoint and params.json as export_llm builds it, gives transformers'
    logits. The .pte itself is proven by the export cells above."""
    pytest.importorskip("executorch")
    import json

    import torch
    from executorch.examples.models.llama.llama_transformer import construct_transformer
    from executorch.examples.models.llama.model_args import ModelArgs
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from runners.executorch_export import MAX_CONTEXT_LENGTH, context_limit, meta_params, to_meta_state_dict

    checkpoint = family_checkpoint(family)
    params = meta_params(json.loads((checkpoint / "config.json").read_text()))
    context = context_limit(params, MAX_CONTEXT_LENGTH)
    model = construct_transformer(ModelArgs(max_seq_len=context, max_context_len=context, **params))
    converted = to_meta_state_dict(load_file(checkpoint / "model.safetensors"), params)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert not unexpected and not [key for key in missing if key.endswith((".weight", ".bias"))]
    ids = torch.randint(0, params["vocab_size"], (1, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)(ids).logits[0, -1]
        last = model(ids).reshape(-1)  # the last position's logits
    assert torch.allclose(last, expected, atol=1e-4), f"max |delta| {(last - expected).abs().max():.2e}"


# An unsupported pair: a one-line error before any exporter runs; in a run, a record says why.


def test_prepare_refuses_an_unsupported_family_before_its_exporter_runs(family_checkpoint, tmp_path):
    result = edgebench(
        "prepare",
        "--model",
        str(family_checkpoint("gemma2")),
        "--runner",
        "executorch",
        "--quant",
        "fp32",
        "--cache",
        str(tmp_path),
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "executorch cannot take Gemma 2 (gemma2) at fp32" in result.stderr
    assert "onnxruntime (fp32, int4)" in result.stderr and "litert (fp32, int8)" in result.stderr
    assert not list(tmp_path.glob("*/executorch"))  # nothing exported, nothing half-made


def test_a_run_gives_the_unsupported_runner_an_error_record_and_runs_the_others(
    family_checkpoint, artifact_cache, tmp_path
):
    _runner_class("onnxruntime")
    result = edgebench(
        "run",
        "--model",
        str(family_checkpoint("gemma2")),
        "--runner",
        "executorch",
        "--runner",
        "onnxruntime",
        "--quant",
        "onnxruntime=fp32",
        "--prepare",
        "--profile",
        "quick",
        "--cache",
        str(artifact_cache),
        "--threads",
        "2",
        "--out",
        str(tmp_path),
    )
    # executorch was asked for by name and could not run: the run fails, after running the others.
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    records = read_jsonl(next(tmp_path.glob("*.jsonl")))
    refused = [r for r in records if r["runner"] == "executorch"]
    assert len(refused) == 1 and refused[0]["status"] == "error" and refused[0]["quantization"] == "8da4w"
    assert refused[0]["error"].startswith("executorch cannot take Gemma 2 (gemma2) at 8da4w")
    ran = [r for r in records if r["runner"] == "onnxruntime"]
    assert ran and all(r["status"] == "ok" for r in ran)


def test_the_support_table_shows_every_family_and_why_a_cell_is_empty():
    result = edgebench("models", "--support")
    assert result.returncode == 0, result.stderr
    for family in models.FAMILIES:
        assert f"({family})" in result.stdout
    for family in models.FAMILIES:
        for cell in families.support_cells(family).values():
            if isinstance(cell, str):
                assert " ".join(cell.split()[:6]) in " ".join(result.stdout.split())


@pytest.mark.parametrize("family,runner", [("gemma2", "onnxruntime"), ("gemma3_text", "mlx")])
def test_sliding_window_layers_count_only_up_to_their_window(
    family, runner, family_checkpoint, artifact_cache, request
):
    """The KV bytes at depth (bench.device.roofline.kv_bytes_at) need each runner's share of
    sliding-window layers and their real window, read from the runtime's own model."""
    from runners.base import RunnerOptions
    from tests.support.tiny_families import GEMMA2_WINDOW, GEMMA3_WINDOW

    cls = _runner_class(runner)
    loaded = cls()
    info = loaded.load(
        _artifact(family, runner, "fp32", family_checkpoint, artifact_cache, request),
        RunnerOptions(threads=2, context_tokens=1024, settings=dict(cls.defaults)),
    )
    loaded.close()
    window, sliding = info.kv_window
    assert window == {"gemma2": GEMMA2_WINDOW, "gemma3_text": GEMMA3_WINDOW}[family]
    layers = {"gemma2": (1, 2), "gemma3_text": (5, 6)}[family]  # sliding layers of all
    assert sliding * layers[1] == info.kv_bytes_per_token * layers[0]
