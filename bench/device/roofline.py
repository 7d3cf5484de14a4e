"""The decode roofline: with memory bandwidth B, a token cannot be decoded faster than
B / bytes read per token. Each decoded token reads the weights the runtime streams
(`weights_bytes`, reported by the runner from the file it loads) and the KV cache of the
context so far (`kv_bytes_per_token`, in the runtime's own KV dtype and layout). MBU
(model bandwidth utilization) is the achieved decode speed as a fraction of that bound.
The artifact's size on disk is never used: a folder may hold the weights twice (two
formats) and files no decode step reads."""

from __future__ import annotations


def bytes_per_token(weights_bytes: int, kv_per_token: int, prompt_tokens: int, new_tokens: int) -> float:
    """Mean bytes read per decoded token: the weights plus the KV cache at the mean
    context length during decode."""
    mean_context = prompt_tokens + new_tokens / 2
    return weights_bytes + kv_per_token * mean_context


def roofline_fields(record: dict) -> dict:
    """`decode_roofline_tok_s` and `mbu` for a record whose bandwidth and bytes are known."""
    bandwidth = record.get("bandwidth_gbs")
    weights = record.get("weights_bytes")
    if not bandwidth or not weights:
        return {"decode_roofline_tok_s": None, "mbu": None}
    per_token = bytes_per_token(
        weights, record.get("kv_bytes_per_token") or 0, record.get("prompt_tokens") or 0, record.get("new_tokens") or 0
    )
    roofline = bandwidth * 1e9 / per_token
    achieved = record.get("decode_tok_s")
    return {"decode_roofline_tok_s": round(roofline, 2), "mbu": round(achieved / roofline, 6) if achieved else None}
