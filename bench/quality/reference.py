"""The quality reference: the fp32 transformers checkpoint `prepare` makes, run by
transformers in fp32 over the evaluation text and the suite's chat prompts.

Computed once per key (the checkpoint's sha256, the text's, the prompts, transformers' and
torch's versions, top-K, the greedy length, the scoring window and RECIPE) and
cached beside the artifacts: <cache>/<model>/reference/<key>/ holds reference.npz (per scored
position: the top-K token ids and log-probs, the log-prob of the rest of the vocabulary and
of the actual next token), greedy.json and manifest.json, written last.

K = 1,024 keeps the file ~6 MB for 1,000 positions where full logits would be ~200 MB, and
holds every token that decides the top-1, the greedy path and nearly all the mass: on the
evaluation text SmolLM2-135M's top 1,024 hold 97.7% of the probability on average (64 would
hold 86.5%, 4,096 99.5%; the manifest keeps the rest bucket's mean and max). The KL figure is a
lower bound because of that bucket (bench.quality.metrics.kl_divergence): divergence among the tokens
inside it is not counted.

The computation runs in its own process (the task `compute`, in bench.workers.child), so the
parent never imports torch.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.artifacts import cache, prepare
from bench.artifacts.cache import MANIFEST
from bench.data import files as datafiles
from bench.data.models import Model
from bench.errors import BenchError
from bench.quality import metrics as quality
from bench.workers.protocol import Orders
from bench.workers.session import run_task

TOP_K = 1024
GREEDY_TOKENS = 32
# What the reference holds, as a number: bump it when a change here changes what it writes.
RECIPE = 1
# This module's source sha256 when the key still held it: what recipe 1 was cached under.
LEGACY_CODE_SHA256 = "1de1f2bdfcf07246d9413275126b2bdb265639d780de76ec01aa653ccc46d960"
LOG_TAIL_LINES = 15


@dataclass(frozen=True)
class EvalText:
    path: Path
    text: str
    sha256: str


def eval_text() -> EvalText:
    """The evaluation text shipped in profiles/quality/eval.txt."""
    path = datafiles.packaged_dir("quality") / "eval.txt"
    raw = path.read_bytes()
    return EvalText(path, raw.decode("utf-8"), hashlib.sha256(raw).hexdigest())


@dataclass(frozen=True)
class Reference:
    folder: Path
    manifest: dict
    built: bool  # False: found in the cache

    def arrays(self) -> dict[str, np.ndarray]:
        with np.load(self.folder / "reference.npz") as data:
            return dict(data)

    def greedy(self) -> dict:
        return json.loads((self.folder / "greedy.json").read_text())


def _versions() -> dict:
    return {name: importlib.metadata.version(name) for name in ("transformers", "torch")}


def reference_key(
    checkpoint_sha256: str,
    text: EvalText,
    prompts: list[dict],
    n_ctx: int | None,
    top_k: int,
    greedy_tokens: int,
    legacy: bool = False,
) -> str:
    """The cache key; `legacy`: the key the same reference had when keys held this module's
    source instead of RECIPE."""
    made_by = {"code": LEGACY_CODE_SHA256} if legacy else {"recipe": RECIPE}
    material = json.dumps(
        {
            "checkpoint": checkpoint_sha256,
            "text": text.sha256,
            "prompts": prompts,
            "window": n_ctx,
            "top_k": top_k,
            "greedy_tokens": greedy_tokens,
            **_versions(),
            **made_by,
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def _adopt_legacy(folder: Path, legacy: Path) -> None:
    """Give a reference cached under its legacy key the current key (folder and manifest)."""
    if (folder / MANIFEST).is_file() or not (legacy / MANIFEST).is_file():
        return
    try:
        legacy.rename(folder)
    except OSError:  # another process adopted it first
        return
    manifest = json.loads((folder / MANIFEST).read_text()) | {"key": folder.name}
    (folder / f"{MANIFEST}.tmp").write_text(json.dumps(manifest, indent=2))
    (folder / f"{MANIFEST}.tmp").replace(folder / MANIFEST)


def ensure(
    model: Model,
    root: Path,
    text: EvalText,
    prompts: list[dict],
    n_ctx: int | None = None,
    threads: int | None = None,
    top_k: int = TOP_K,
    greedy_tokens: int = GREEDY_TOKENS,
    on_compute=lambda: None,
) -> Reference:
    """The cached reference, computed first if missing. `prompts`: [{"id", "messages"}].
    n_ctx: the scoring window (None: the whole text in one)."""
    checkpoint = prepared_checkpoint(model, root)
    key = reference_key(checkpoint.sha256, text, prompts, n_ctx, top_k, greedy_tokens)
    folder = root / model.id / "reference" / key
    if RECIPE == 1:
        _adopt_legacy(
            folder,
            folder.with_name(reference_key(checkpoint.sha256, text, prompts, n_ctx, top_k, greedy_tokens, legacy=True)),
        )
    if (folder / MANIFEST).is_file():
        return Reference(folder, json.loads((folder / MANIFEST).read_text()), built=False)
    on_compute()
    job = {
        "checkpoint": str(checkpoint.path),
        "text": text.text,
        "prompts": prompts,
        "n_ctx": n_ctx,
        "top_k": top_k,
        "greedy_tokens": greedy_tokens,
        "threads": threads,
    }
    describe = {
        "model_id": model.id,
        "checkpoint": str(checkpoint.path),
        "checkpoint_sha256": checkpoint.sha256,
        "eval_text": text.path.name,
        "eval_sha256": text.sha256,
        "key": key,
        **_versions(),
    }
    return _compute(job, folder, describe)


def prepared_checkpoint(model: Model, root: Path) -> cache.Prepared:
    """The checkpoint the prepared artifacts were exported from, found as `run` finds them
    (prepare.find_artifact): never made here, since making it is `prepare`'s minutes of work."""
    found = prepare.find_checkpoint(model, root)
    if found is None:
        raise BenchError(
            f"no prepared checkpoint of {model.id}: the quality reference is that fp32 checkpoint",
            f"make it with: edgebench prepare --model {model.id}",
        )
    return found


def _compute(job: dict, folder: Path, describe: dict) -> Reference:
    """Run the reference process into a private folder, moved into place when complete."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.monotonic()
    try:
        with (partial / "reference.log").open("w+b") as log:
            ended = run_task(
                Orders("bench.quality.reference:compute", job | {"out": str(partial)}),
                log,
                tail_lines=LOG_TAIL_LINES,
                env=env,
            )
        if not ended.ok:
            tail = "\n".join(ended.tail)
            raise BenchError(
                f"computing the quality reference failed (exit {ended.code}); its last lines:\n{tail}",
                "fix the cause above and run again; nothing was cached",
            )
        (partial / "reference.log").unlink()
        manifest = {**describe, **ended.result, "seconds": round(time.monotonic() - started, 1)}
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2))
        try:
            partial.rename(folder)
        except OSError:  # another run finished the same reference first: same key, same content
            if not (folder / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return Reference(folder, manifest, built=True)


# The reference process: transformers in fp32.


def _score_text(model, token_ids: list[int], n_ctx: int | None, top_k: int) -> tuple[dict, list[quality.Window]]:
    """The compact reference of every scored target, window by window (bench.quality.metrics.windows)."""
    import torch

    plan = quality.windows(len(token_ids), n_ctx or len(token_ids))
    parts = []
    for w in plan:
        with torch.no_grad():
            logits = model(torch.tensor([token_ids[w.start : w.end]])).logits[0].float().numpy()
        parts.append(quality.reference_rows(logits[w.rows], np.asarray(token_ids[w.first_target : w.end]), top_k))
    arrays = {
        "token_ids": np.asarray(token_ids, dtype=np.int32),
        "windows": np.asarray([[w.start, w.end, w.first_target] for w in plan], dtype=np.int64),
        "topk_ids": np.concatenate([c.topk_ids for c, _ in parts]).astype(np.int32),
        "topk_logp": np.concatenate([c.topk_logp for c, _ in parts]).astype(np.float32),
        "rest_logp": np.concatenate([c.rest_logp for c, _ in parts]).astype(np.float32),
        "target_logp": np.concatenate([t for _, t in parts]).astype(np.float32),
    }
    return arrays, plan


def _greedy(model, tokenizer, prompts: list[dict], n: int) -> dict:
    """Per chat prompt: the template's prompt ids (add_generation_prompt=True, as the runners
    render the artifact's chat_template.jinja) and the greedy tokens, end of turn stripped."""
    import torch

    stop = model.generation_config.eos_token_id
    stop = set(stop if isinstance(stop, list) else [] if stop is None else [stop])
    found = {}
    for prompt in prompts:
        ids = tokenizer.apply_chat_template(
            prompt["messages"], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False)
        tokens = out[0, ids.shape[1] :].tolist()
        ended = bool(tokens) and tokens[-1] in stop
        found[prompt["id"]] = {
            "prompt_ids": ids[0].tolist(),
            "tokens": tokens[:-1] if ended else tokens,
            "stopped_at_end_of_turn": ended,
        }
    return found


def compute(job: dict, _channel) -> dict:
    """The task: the reference files written into job["out"]; returns what the manifest adds."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(job["out"])
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    tokenizer = AutoTokenizer.from_pretrained(job["checkpoint"])
    model = AutoModelForCausalLM.from_pretrained(job["checkpoint"], dtype=torch.float32).eval()
    # The tokenizer's own special tokens: BOS only where the model's tokenizer adds one.
    token_ids = tokenizer(job["text"])["input_ids"]
    arrays, plan = _score_text(model, token_ids, job["n_ctx"], job["top_k"])
    np.savez_compressed(out / "reference.npz", **arrays)
    (out / "greedy.json").write_text(json.dumps(_greedy(model, tokenizer, job["prompts"], job["greedy_tokens"])))
    rest_mass = np.exp(arrays["rest_logp"].astype(np.float64))
    return {
        "tokens": len(token_ids),
        "tokens_scored": int(arrays["target_logp"].size),
        "n_ctx": job["n_ctx"],
        "windows": len(plan),
        "top_k": job["top_k"],
        "greedy_tokens": job["greedy_tokens"],
        "bos_added": bool(tokenizer.bos_token_id is not None and token_ids[:1] == [tokenizer.bos_token_id]),
        "perplexity": quality.perplexity(arrays["target_logp"].astype(np.float64)),
        "rest_mass_mean": float(rest_mass.mean()),
        "rest_mass_max": float(rest_mass.max()),
    }
