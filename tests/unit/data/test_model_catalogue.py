"""The catalogue's listed models: real models of the families, with their public sizes and
KV layouts and no source; a user's own checkpoint folder is recognised as one of them."""

import json

import pytest

from bench.data import files as datafiles
from bench.data import models
from bench.errors import BenchError


def test_the_families_real_models_are_listed_with_their_kv_layouts():
    listed = models.listed_models()
    assert {"llama-3.2-1b", "qwen2.5-0.5b", "qwen3-4b", "gemma-2-2b", "gemma-3-1b", "phi-4-mini"} <= set(listed)
    assert not set(listed) & set(models.catalogue())  # an id means one thing
    assert {m.family for m in listed.values()} == set(models.FAMILIES)
    gemma3 = listed["gemma-3-1b"].kv
    assert (gemma3.layers, gemma3.kv_heads, gemma3.head_dim, gemma3.sliding_window) == (26, 1, 256, 512)


def test_kv_bytes_count_a_sliding_layer_only_up_to_its_window():
    llama = models.listed_models()["llama-3.2-1b"].kv
    assert llama.kv_bytes(1000) == 2 * 8 * 64 * 2 * 16 * 1000  # K and V, f16, 16 layers
    gemma3 = models.listed_models()["gemma-3-1b"].kv
    # 4 global layers hold all 4096 tokens, the 22 sliding ones their last 512.
    assert gemma3.kv_bytes(4096) == 2 * 1 * 256 * 2 * (4 * 4096 + 22 * 512)
    assert gemma3.kv_bytes(300) == 2 * 1 * 256 * 2 * 26 * 300  # inside the window every layer holds all


def test_a_listed_model_is_not_fetched_the_user_points_model_at_their_copy():
    with pytest.raises(BenchError) as refused:
        models.get_model("qwen3-0.6b")
    assert "listed for its sizes only" in str(refused.value) and "point --model" in refused.value.hint


def _checkpoint(tmp_path, **config):
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_a_checkpoint_folder_with_a_listed_models_shape_is_named_and_sized_as_it(tmp_path):
    qwen = dict(model_type="qwen2", hidden_size=896, num_hidden_layers=24, num_key_value_heads=2)
    model = models.get_model(str(_checkpoint(tmp_path / "mine", **qwen)))
    assert (model.name, model.parameters_m, model.kv) == (
        "Qwen2.5-0.5B-Instruct",
        490,
        models.listed_models()["qwen2.5-0.5b"].kv,
    )
    other = models.get_model(str(_checkpoint(tmp_path / "other", **{**qwen, "num_hidden_layers": 2})))
    assert (other.name, other.parameters_m, other.kv) == ("other", 0, None)


def test_a_listed_entry_without_its_kv_layout_is_refused():
    entry = {"id": "x", "name": "X", "license": "MIT", "family": "llama", "parameters_m": 1, "hidden_size": 8}
    with pytest.raises(BenchError, match="missing key 'kv'"):
        datafiles.build(models._Catalogue, {"model": [], "listed": [entry]}, "catalogue.toml")


def test_models_lists_the_listed_ones_apart_with_their_kv_cache_at_the_default_context():
    from tests.support.helpers import edgebench

    shown = edgebench("models")
    assert shown.returncode == 0, shown.stderr
    assert "sizes only" in shown.stdout and "point --model at your own copy" in shown.stdout
    gemma3 = next(line for line in shown.stdout.splitlines() if "gemma-3-1b " in line)
    assert "512 on 22 layers" in gemma3 and "19.0" in gemma3  # 4 global layers x 2048 + 22 x 512 tokens, 1 KB each
