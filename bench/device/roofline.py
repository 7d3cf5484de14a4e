"""The decode roofline: with memory bandwidth B, a token cannot be decoded faster than
B / bytes read per token. Each decoded token reads the weights the runtime streams
(`weights_bytes`, reported by the runner from the file it loads) and the KV cache of the
context so far (`kv_bytes_per_token`, in the runtime's own KV dtype and layout; a depth
sweep's history counts, and sliding-window layers only up to their window). MBU
(model bandwidth utilization) is the achieved decode speed as a fraction of that bound.
The artifact's size on disk is never used: a folder may hold the weights twice (two
formats) and files no decode step reads."""

from __future__ import annotations


def kv_bytes_at(context: float, kv_per_token: int, window: list | None = None) -> float:
    """The KV cache's bytes at `context` tokens. `window` [tokens, bytes per token]: the
    sliding-window layers' share of `kv_per_token`, which holds that many tokens at most."""
    if not window:
        return kv_per_token * context
    tokens, sliding = window
    return (kv_per_token - sliding) * context + sliding * min(context, tokens)


def bytes_per_token(
    weights_bytes: int,
    kv_per_token: int,
    prompt_tokens: int,
    new_tokens: int,
    depth: int = 0,
    window: list | None = None,
) -> float:
    """Mean bytes read per decoded token: the weights plus the KV cache at the mean
    context length during decode (history, prompt, half the new tokens)."""
    return weights_bytes + kv_bytes_at(depth + prompt_tokens + new_tokens / 2, kv_per_token, window)


def kv_fields(record: dict, window: list | None) -> dict:
    """`kv_bytes`: the KV cache's bytes when the generation ended (history + prompt + new
    tokens), where the runtime reports its bytes per token."""
    per_token = record.get("kv_bytes_per_token")
    if not per_token or record.get("prompt_tokens") is None:
        return {"kv_bytes": None}
    context = (record.get("depth") or 0) + record["prompt_tokens"] + (record.get("new_tokens") or 0)
    return {"kv_bytes": round(kv_bytes_at(context, per_token, window))}


def roofline_fields(record: dict, window: list | None = None) -> dict:
    """`decode_roofline_tok_s` and `mbu` for a record whose bandwidth and bytes are known."""
    bandwidth = record.get("bandwidth_gbs")
    weights = record.get("weights_bytes")
    if not bandwidth or not weights:
        return {"decode_roofline_tok_s": None, "mbu": None}
    per_token = bytes_per_token(
        weights,
        record.get("kv_bytes_per_token") or 0,
        record.get("prompt_tokens") or 0,
        record.get("new_tokens") or 0,
        record.get("depth") or 0,
        window,
    )
    roofline = bandwidth * 1e9 / per_token
    achieved = record.get("decode_tok_s")
    return {"decode_roofline_tok_s": round(roofline, 2), "mbu": round(achieved / roofline, 6) if achieved else None}
