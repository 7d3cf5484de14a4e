"""The decode roofline: with memory bandwidth B, a token cannot be decoded faster than
B / bytes read per token. Each decoded token reads the weights (≈ the artifact's size)
and the KV cache of the context so far. MBU (model bandwidth utilization) is the
achieved decode speed as a fraction of that bound."""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=None)
def kv_bytes_per_token(model_id: str | None) -> int:
    """KV-cache bytes per context token, from the model catalogue (0 when not stated)."""
    from bench.models import catalogue

    model = catalogue().get(model_id or "")
    return model.kv_bytes_per_token if model else 0


def bytes_per_token(artifact_bytes: int, kv_per_token: int, prompt_tokens: int, new_tokens: int) -> float:
    """Mean bytes read per decoded token: the weights plus the KV cache at the mean
    context length during decode."""
    mean_context = prompt_tokens + new_tokens / 2
    return artifact_bytes + kv_per_token * mean_context


def roofline_fields(record: dict) -> dict:
    """`decode_roofline_tok_s` and `mbu` for a record whose bandwidth is known."""
    bandwidth = record.get("bandwidth_gbs")
    size = record.get("artifact_bytes")
    if not bandwidth or not size:
        return {"decode_roofline_tok_s": None, "mbu": None}
    per_token = bytes_per_token(size, kv_bytes_per_token(record.get("model_id")),
                                record.get("prompt_tokens") or 0, record.get("new_tokens") or 0)
    roofline = bandwidth * 1e9 / per_token
    achieved = record.get("decode_tok_s")
    return {"decode_roofline_tok_s": round(roofline, 2),
            "mbu": round(achieved / roofline, 6) if achieved else None}
